{%- if auth == "issuer" -%}
//! Authentication without HTTP: signing keys, access tokens, refresh tokens and password
//! hashing. The extractors and endpoints that use them live in `http`.

pub mod claims;
pub mod keys;
pub mod passwords;
pub mod refresh;
pub mod tokens;

pub use claims::{AccessClaims, InvalidToken};
pub use passwords::{Passwords, Saturated, Verdict};
pub use tokens::Tokens;
{%- else -%}
//! Authentication without HTTP: access tokens issued elsewhere, checked against the issuer's
//! published keys. The extractors that use them live in `http`.

pub mod claims;
pub mod remote;

pub use claims::{AccessClaims, InvalidToken};
pub use remote::Tokens;
{%- endif %}

//! Authentication without HTTP: access tokens and their claims, and what checks them. The
//! extractors and endpoints that use them live in `http`.

pub mod claims;
{%- if auth == "issuer" %}
mod issuer;
pub mod keys;
pub mod passwords;
pub mod refresh;
mod sessions;
pub mod tokens;
mod verified;

pub use claims::{AccessClaims, InvalidToken};
pub use issuer::{Auth, AuthConfig, SignInLimits};
pub use passwords::{NewPassword, Passwords, Saturated, Verdict};
pub use tokens::Tokens;
{%- else %}
pub mod remote;
mod verified;
mod verifier;

pub use claims::{AccessClaims, InvalidToken};
pub use remote::Tokens;
pub use verifier::{Auth, AuthConfig};
{%- endif %}

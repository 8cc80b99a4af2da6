//! Authentication without HTTP: signing keys, access tokens, refresh tokens and password
//! hashing. The extractors and endpoints that use them live in `http`.

pub mod keys;
pub mod passwords;
pub mod refresh;
pub mod tokens;

pub use passwords::{Passwords, Saturated, Verdict};
pub use tokens::{AccessClaims, InvalidToken, Tokens};

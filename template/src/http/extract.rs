//! Extractors whose rejections are [`ApiError`]s, so malformed requests get problem+json like
//! every other error, plus the `If-Match` precondition used for optimistic concurrency.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::IntoParams;
use validator::Validate;

use super::error::ApiError;
use crate::domain::version::Versioned;

/// JSON body in, JSON body out.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonDataError(err) => Self::Unprocessable(err.body_text()),
            JsonRejection::JsonSyntaxError(err) => Self::BadRequest(err.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            other => Self::BadRequest(other.body_text()),
        }
    }
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Query string parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// A JSON object body that has passed its `validator` rules; invalid fields get 422 with
/// details.
#[derive(Debug, Clone, Copy, Default)]
pub struct Valid<T>(pub T);

/// A body read as a JSON object only. serde also reads a struct from an array of its fields in
/// order (`["a title"]`), a shape the API's document does not describe; this refuses it.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

impl<S, T> FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(Object(value)) = Json::<Object<T>>::from_request(request, state).await?;
        value.validate()?;
        Ok(Self(value))
    }
}

/// The `If-Match` precondition of a write. Versions are strong entity tags (`"3"`); a weak
/// or foreign tag can never match, as strong comparison requires (RFC 9110, section 13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header.
    Absent,
    /// `If-Match: *`: any current version will do.
    Any,
    /// The versions named; the write applies if the resource has one of them.
    Versions(Vec<i32>),
}

impl IfMatch {
    pub fn is_present(&self) -> bool {
        *self != Self::Absent
    }

    /// The versions the write must find, `None` meaning any.
    pub fn expected(&self) -> Option<&[i32]> {
        match self {
            Self::Versions(versions) => Some(versions),
            Self::Absent | Self::Any => None,
        }
    }

    /// Like [`IfMatch::expected`], but 428 when the client did not say which version it edits.
    pub fn required(&self) -> Result<Option<&[i32]>, ApiError> {
        match self {
            Self::Absent => Err(ApiError::PreconditionRequired),
            other => Ok(other.expected()),
        }
    }

    /// The response to a guarded write: a precondition on a missing resource fails with 412
    /// rather than 404, as RFC 9110 requires.
    pub fn outcome<T>(&self, outcome: Versioned<T>, not_found: &'static str) -> Result<T, ApiError> {
        match outcome {
            Versioned::Applied(value) => Ok(value),
            Versioned::NotFound if self.is_present() => Err(ApiError::PreconditionFailed { current: None }),
            Versioned::NotFound => Err(ApiError::NotFound(not_found)),
            Versioned::Stale { current } => Err(ApiError::PreconditionFailed { current: Some(current) }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let lines = parts
            .headers
            .get_all(header::IF_MATCH)
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Option<Vec<_>>>();
        match lines {
            Some(lines) if lines.is_empty() => Ok(Self::Absent),
            Some(lines) => parse_if_match(&lines.join(",")).map_err(|()| invalid_if_match()),
            None => Err(invalid_if_match()),
        }
    }
}

fn invalid_if_match() -> ApiError {
    ApiError::BadRequest(
        "If-Match must be * or a list of entity tags, each in double quotes, as ETag gives them".to_owned(),
    )
}

/// `*`, or a list of entity tags, exactly as RFC 9110 writes them (and as [`IfMatchHeader`]
/// documents): anything else is refused rather than guessed at.
fn parse_if_match(value: &str) -> Result<IfMatch, ()> {
    const OWS: [char; 2] = [' ', '\t'];
    let mut rest = value.trim_matches(OWS);
    if rest == "*" {
        return Ok(IfMatch::Any);
    }
    let mut versions = Vec::new();
    loop {
        let (weak, tag) = rest.strip_prefix("W/").map_or((false, rest), |tag| (true, tag));
        // An entity tag is quoted, and its characters exclude the quote: a comma inside one
        // does not separate tags.
        let (inner, after) = tag.strip_prefix('"').and_then(|tag| tag.split_once('"')).ok_or(())?;
        if !inner.bytes().all(|byte| byte == b'!' || (b'#'..=b'~').contains(&byte)) {
            return Err(());
        }
        // Entity tags compare as text: only the exact form this service writes is a version.
        if let Ok(version) = inner.parse::<i32>()
            && !weak
            && version.to_string() == inner
        {
            versions.push(version);
        }
        match after.trim_start_matches(OWS) {
            "" => return Ok(IfMatch::Versions(versions)),
            more => rest = more.strip_prefix(',').ok_or(())?.trim_start_matches(OWS),
        }
    }
}

/// `If-Match` on a write that requires it, as the OpenAPI document describes it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// ETag of the version being changed, or `*`.
    #[param(rename = "If-Match", example = json!("\"1\""), pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)]
    pub if_match: String,
}

/// `If-Match` on a write that may go unguarded, as the OpenAPI document describes it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OptionalIfMatchHeader {
    /// When given, the write applies only if this is still the current version.
    #[param(rename = "If-Match", nullable = false, example = json!("\"1\""), pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#)]
    pub if_match: Option<String>,
}

/// The `ETag` of a resource at `version`; strong, since versions change on every write.
pub fn etag(version: i32) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, format!("\"{version}\""))]
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    async fn if_match(values: &[&str]) -> Result<IfMatch, ApiError> {
        let mut request = Request::builder();
        for value in values {
            request = request.header(header::IF_MATCH, *value);
        }
        let (mut parts, ()) = request.body(()).expect("request").into_parts();
        IfMatch::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn if_match_reads_strong_tags_from_every_header_line() {
        assert_eq!(if_match(&[]).await.ok(), Some(IfMatch::Absent));
        assert_eq!(if_match(&["*"]).await.ok(), Some(IfMatch::Any));
        assert_eq!(if_match(&["\"3\""]).await.ok(), Some(IfMatch::Versions(vec![3])));
        assert_eq!(
            if_match(&["\"1\", \"2\"", "\"5\""]).await.ok(),
            Some(IfMatch::Versions(vec![1, 2, 5]))
        );
        // Weak and foreign tags can never match, so they name no version.
        assert_eq!(
            if_match(&["W/\"3\", \"abc\""]).await.ok(),
            Some(IfMatch::Versions(vec![]))
        );
        // A comma inside a tag is part of it.
        assert_eq!(
            if_match(&["W/\"a,b\" ,\t\"7\""]).await.ok(),
            Some(IfMatch::Versions(vec![7]))
        );
        // Tags compare as text: another spelling of a version is another tag.
        assert_eq!(
            if_match(&["\"03\", \"+3\""]).await.ok(),
            Some(IfMatch::Versions(vec![]))
        );
        // Anything outside RFC 9110's grammar is refused, `*` in a list included.
        for malformed in [
            "3",
            "null",
            "",
            "\"a b\"",
            "*, \"3\"",
            "\"3\",,\"4\"",
            "\"3\" \"4\"",
            "\"3\",",
        ] {
            assert!(
                matches!(if_match(&[malformed]).await, Err(ApiError::BadRequest(_))),
                "{malformed:?} was accepted"
            );
        }
        assert!(matches!(if_match(&["*", "\"3\""]).await, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn a_precondition_decides_between_404_412_and_428() {
        let versions = IfMatch::Versions(vec![2]);
        assert_eq!(versions.required().ok().flatten(), Some(&[2][..]));
        assert!(matches!(
            IfMatch::Absent.required(),
            Err(ApiError::PreconditionRequired)
        ));
        assert_eq!(IfMatch::Any.required().ok(), Some(None));

        assert_eq!(versions.outcome(Versioned::Applied(7), "gone").ok(), Some(7));
        let stale = versions.outcome(Versioned::<()>::Stale { current: 4 }, "gone");
        assert!(matches!(stale, Err(ApiError::PreconditionFailed { current: Some(4) })));
        let missing = IfMatch::Any.outcome(Versioned::<()>::NotFound, "gone");
        assert!(matches!(missing, Err(ApiError::PreconditionFailed { current: None })));
        let unguarded = IfMatch::Absent.outcome(Versioned::<()>::NotFound, "gone");
        assert!(matches!(unguarded, Err(ApiError::NotFound("gone"))));
    }
}

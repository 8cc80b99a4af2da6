//! The one error type handlers return, rendered as RFC 9457 `application/problem+json`.
//! Internal causes are logged with the request's span and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};
use utoipa::{Modify, ToSchema};
use validator::{ValidationErrors, ValidationErrorsKind};

use crate::db::DbError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document; every error response of the API has this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code and title say what kind of problem this is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The reason phrase of the status code.
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "project not found")]
    pub detail: Option<String>,
    /// For validation failures: what is wrong with each field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every error response is a [`Problem`]: routes document an error by its status and what it
/// means there, and this gives each such response its `application/problem+json` body, once
/// for the whole document.
pub struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, openapi: &mut OpenApi) {
        for (_, operation) in operations(openapi) {
            for (status, response) in &mut operation.responses.responses {
                let is_error = status.starts_with('4') || status.starts_with('5');
                if let RefOr::T(response) = response
                    && is_error
                    && response.content.is_empty()
                {
                    let body = Content::new(Some(Ref::from_schema_name("Problem")));
                    response.content.insert(PROBLEM_JSON.to_owned(), body.into());
                }
            }
        }
    }
}

/// Which operations can get a shared response.
#[derive(Clone, Copy)]
enum Reach {
    /// Every operation of the API: the rate limits and load shedding stand before each.
    Api,
    /// Those with parameters or a body, which the extractors may fail to read.
    Input,
    /// Those with a body.
    Body,
}

/// What the extractors and the middleware answer on the API's routes whatever the handler:
/// status, name under `components/responses`, description, and where it applies.
const SHARED: [(&str, &str, &str, Reach); 6] = [
    (
        "400",
        "BadRequest",
        "The request cannot be read: a malformed path or query parameter, header or JSON body",
        Reach::Input,
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the service accepts",
        Reach::Body,
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json`",
        Reach::Body,
    ),
    (
        "422",
        "UnprocessableContent",
        "The body is JSON but not the request described: see `errors`, or `detail`",
        Reach::Body,
    ),
    (
        "429",
        "TooManyRequests",
        "Over a rate limit for this address or account; retry after `Retry-After` seconds",
        Reach::Api,
    ),
    (
        "503",
        "Unavailable",
        "The service is saturated or its database is unavailable; retry shortly",
        Reach::Api,
    ),
];

/// The responses in [`SHARED`], defined once under `components/responses` and referenced
/// from every operation of the API they apply to, unless it documents that status itself.
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description, _) in SHARED {
            let mut response = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, Content::new(Some(Ref::from_schema_name("Problem"))));
            if status == "429" {
                let seconds = Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)));
                response = response.header("Retry-After", seconds);
            }
            components.responses.insert(name.to_owned(), response.build().into());
        }
        for (path, operation) in operations(openapi) {
            if !path.starts_with("/api/") {
                continue;
            }
            let has_body = operation.request_body.is_some();
            let has_input = has_body || operation.parameters.as_ref().is_some_and(|list| !list.is_empty());
            for (status, name, _, reach) in SHARED {
                let applies = match reach {
                    Reach::Api => true,
                    Reach::Input => has_input,
                    Reach::Body => has_body,
                };
                if applies {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| Ref::from_response_name(name).into());
                }
            }
        }
    }
}

/// Every operation of `openapi` with its path.
fn operations(openapi: &mut OpenApi) -> impl Iterator<Item = (&String, &mut Operation)> {
    openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        .map(move |operation| (path, operation))
    })
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the request body, e.g. `name` or `items[2].title`.
    #[schema(example = "name")]
    pub field: String,
    /// A stable, machine-readable reason such as `length` or `range`.
    #[schema(example = "length")]
    pub code: String,
    #[schema(example = "must be 1 to 100 characters")]
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<Option<String>>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (syntax, path or query parameters).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that do not hold. Carries `WWW-Authenticate`;
    /// `invalid_token` says a bearer token was presented and refused (RFC 6750).
    #[error("{detail}")]
    Unauthorized { detail: &'static str, invalid_token: bool },
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 429: over a rate limit; retry after `retry_after` seconds.
    #[error("too many requests; retry in {retry_after} s")]
    TooManyRequests { retry_after: u32 },
    /// 404: the addressed resource does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// 409: the request conflicts with existing data, such as a duplicate name.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names a version the resource does not have (`current`), or the
    /// resource does not exist (`None`).
    #[error("{}", precondition_failed(*current))]
    PreconditionFailed { current: Option<i32> },
    /// 428: the write needs `If-Match` with the resource's `ETag`.
    #[error("send If-Match with the ETag from your last read of this resource")]
    PreconditionRequired,
    /// 413: the body is larger than the configured limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected a request with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: the body is well-formed but some fields are invalid.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// 422: the body is well-formed but cannot be processed, e.g. it refers to a missing record.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the service or a dependency is saturated or down; when `retry_after` is set, the
    /// client may retry after that many seconds.
    #[error("{detail}")]
    Unavailable {
        detail: &'static str,
        retry_after: Option<u32>,
    },
    /// 500: a bug or an unexpected failure; the cause is logged, not sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn precondition_failed(current: Option<i32>) -> String {
    match current {
        Some(version) => {
            format!("the resource has changed since it was read; fetch it again (current version {version})")
        }
        None => "the resource does not exist".to_owned(),
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut problem = Problem::new(status, self.to_string());
        let mut retry_after = None;
        let mut challenge = None;
        match self {
            Self::Unauthorized { invalid_token, .. } => {
                challenge = Some(if invalid_token {
                    r#"Bearer error="invalid_token""#
                } else {
                    "Bearer"
                });
            }
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                problem.detail = Some("an unexpected error occurred".to_owned());
            }
            Self::Unavailable {
                retry_after: seconds, ..
            } => {
                // The request line already records the 503; under overload a warning per
                // request would multiply the log volume.
                tracing::debug!(detail = problem.detail.as_deref(), "service unavailable");
                retry_after = seconds;
            }
            Self::TooManyRequests { retry_after: seconds } => retry_after = Some(seconds),
            Self::Validation(errors) => problem.errors = errors,
            _ => {}
        }
        let mut response = problem.into_response();
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Conflict(message) => Self::Conflict(message.to_owned()),
            DbError::MissingReference(message) => Self::Unprocessable(message.to_owned()),
            DbError::Unavailable => Self::Unavailable {
                detail: "the database is busy; retry shortly",
                retry_after: Some(1),
            },
            DbError::Timeout => Self::Unavailable {
                detail: "the database did not answer in time",
                retry_after: Some(1),
            },
            DbError::InvalidValue => Self::Unprocessable("a value in the request cannot be stored".to_owned()),
            DbError::Other(err) => Self::Internal(err.into()),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        let mut fields = Vec::new();
        flatten(&errors, "", &mut fields);
        fields.sort_by(|a, b| (&a.field, &a.code).cmp(&(&b.field, &b.code)));
        Self::Validation(fields)
    }
}

/// Collects nested validation errors with their paths (`a.b`, `items[2].title`).
fn flatten(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => out.extend(list.iter().map(|error| {
                FieldError {
                    field: path.clone(),
                    code: error.code.to_string(),
                    message: error
                        .message
                        .as_ref()
                        .map_or_else(|| format!("is invalid ({})", error.code), ToString::to_string),
                }
            })),
            ValidationErrorsKind::Struct(inner) => flatten(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_failures_map_to_client_or_retry_statuses() {
        let cases = [
            (DbError::Conflict("taken"), StatusCode::CONFLICT),
            (DbError::MissingReference("missing"), StatusCode::UNPROCESSABLE_ENTITY),
            (DbError::InvalidValue, StatusCode::UNPROCESSABLE_ENTITY),
            (DbError::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (DbError::Timeout, StatusCode::SERVICE_UNAVAILABLE),
            (
                DbError::Other(sqlx::Error::RowNotFound),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (db, status) in cases {
            let response = ApiError::from(db).into_response();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            let retries = response.headers().contains_key(header::RETRY_AFTER);
            assert_eq!(retries, status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
        }
    }

    #[test]
    fn nested_validation_errors_are_flattened_with_paths_in_order() {
        let mut inner = ValidationErrors::new();
        inner.add("title", validator::ValidationError::new("length"));
        let mut outer = ValidationErrors::new();
        outer.add(
            "name",
            validator::ValidationError::new("blank").with_message("must not be blank".into()),
        );
        outer.errors_mut().insert(
            "items".into(),
            ValidationErrorsKind::List([(2, Box::new(inner))].into()),
        );

        let ApiError::Validation(fields) = ApiError::from(outer) else {
            panic!("not a validation error")
        };

        let summary: Vec<(&str, &str, &str)> = fields
            .iter()
            .map(|f| (f.field.as_str(), f.code.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("items[2].title", "length", "is invalid (length)"),
                ("name", "blank", "must not be blank")
            ]
        );
    }

    #[test]
    fn internal_causes_stay_out_of_the_response() {
        let response = ApiError::Internal(anyhow::anyhow!("password=hunter2 leaked")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_text(response);
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains("an unexpected error occurred"), "{body}");
    }

    /// The body of a response built from in-memory bytes.
    fn body_text(response: Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

//! The REST API's errors as GraphQL errors: the same conditions, told by `extensions.code`
//! (`UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, `CONFLICT`, `BAD_USER_INPUT`,
//! `PRECONDITION_FAILED`, `INTERNAL`, ...). Internal causes are logged here, never sent.

use async_graphql::{Error, ErrorExtensions, Value};

use crate::http::error::{ApiError, FieldError};

/// What a resolver returns when it fails.
pub type Result<T> = std::result::Result<T, Error>;

/// Converts `err`, logging an internal cause with the request's span.
pub fn from_api(err: ApiError) -> Error {
    let message = err.to_string();
    let (code, message) = match err {
        ApiError::Unauthorized { .. } => ("UNAUTHENTICATED", message),
        ApiError::Forbidden(_) => ("FORBIDDEN", message),
        // A guarded write to a record that is not there, or not the caller's, is a failed
        // precondition over HTTP (RFC 9110); here it is a miss like any other.
        ApiError::NotFound(_) | ApiError::PreconditionFailed { current: None } => ("NOT_FOUND", message),
        ApiError::PreconditionFailed { current: Some(version) } => {
            return Error::new(message).extend_with(|_, extensions| {
                extensions.set("code", "PRECONDITION_FAILED");
                extensions.set("currentVersion", version);
            });
        }
        ApiError::Conflict(_) => ("CONFLICT", message),
        ApiError::Validation(fields) => {
            return Error::new(message).extend_with(|_, extensions| {
                extensions.set("code", "BAD_USER_INPUT");
                extensions.set("fields", fields_value(&fields));
            });
        }
        ApiError::BadRequest(_)
        | ApiError::Unprocessable(_)
        | ApiError::PreconditionRequired
        | ApiError::PayloadTooLarge
        | ApiError::UnsupportedMediaType => ("BAD_USER_INPUT", message),
        ApiError::TooManyRequests { .. } => ("TOO_MANY_REQUESTS", message),
        ApiError::Unavailable { .. } => ("UNAVAILABLE", message),
        ApiError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "graphql resolver failed");
            ("INTERNAL", "an unexpected error occurred".to_owned())
        }
    };
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

/// `[{field, code, message}]`, with field paths as GraphQL names them (`input.projectId`).
fn fields_value(fields: &[FieldError]) -> Value {
    Value::List(
        fields
            .iter()
            .map(|field| {
                let mut object = async_graphql::indexmap::IndexMap::new();
                object.insert(
                    async_graphql::Name::new("field"),
                    Value::from(format!("input.{}", camel_case(&field.field))),
                );
                object.insert(async_graphql::Name::new("code"), Value::from(field.code.clone()));
                object.insert(async_graphql::Name::new("message"), Value::from(field.message.clone()));
                Value::Object(object)
            })
            .collect(),
    )
}

/// `project_id` as `projectId`; the REST bodies name fields in snake case.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(err: &Error) -> Option<String> {
        let value = err.extensions.as_ref()?.get("code")?;
        match value {
            Value::String(code) => Some(code.clone()),
            _ => None,
        }
    }

    #[test]
    fn every_condition_has_its_code_and_internal_causes_stay_out() {
        let cases = [
            (
                ApiError::Unauthorized {
                    detail: "no token",
                    invalid_token: false,
                },
                "UNAUTHENTICATED",
            ),
            (ApiError::Forbidden("no"), "FORBIDDEN"),
            (ApiError::NotFound("project not found"), "NOT_FOUND"),
            (ApiError::PreconditionFailed { current: None }, "NOT_FOUND"),
            (ApiError::PreconditionFailed { current: Some(3) }, "PRECONDITION_FAILED"),
            (ApiError::Conflict("taken".to_owned()), "CONFLICT"),
            (ApiError::Validation(Vec::new()), "BAD_USER_INPUT"),
            (ApiError::Unprocessable("missing project".to_owned()), "BAD_USER_INPUT"),
            (ApiError::Internal(anyhow::anyhow!("password=hunter2")), "INTERNAL"),
        ];
        for (err, expected) in cases {
            let err = from_api(err);
            assert_eq!(code(&err).as_deref(), Some(expected), "{}", err.message);
            assert!(!err.message.contains("hunter2"), "{}", err.message);
        }
    }

    #[test]
    fn invalid_fields_are_named_as_the_schema_names_them() {
        let err = from_api(ApiError::Validation(vec![FieldError {
            field: "project_id".to_owned(),
            code: "required".to_owned(),
            message: "is required".to_owned(),
        }]));
        let fields = err.extensions.as_ref().and_then(|extensions| extensions.get("fields"));
        let text = fields.map(ToString::to_string).unwrap_or_default();
        assert!(text.contains("input.projectId"), "{text}");
    }
}

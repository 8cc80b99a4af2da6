//! Field rules and helpers shared by request bodies; the rules plug into `validator` through
//! `#[validate(custom(function = ...))]`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use validator::ValidationError;

/// [`single_line`] as a JSON Schema pattern, so that the document promises what the rule
/// enforces: no control character (Unicode `Cc`), and at least one character that is neither
/// that nor whitespace (what `str::trim` removes).
const SINGLE_LINE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*\
    [^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]\
    [^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// The schema of a [`single_line`] field of 1 to `max` characters.
pub fn single_line_schema(max: usize, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(SINGLE_LINE))
        .examples([example])
        .build()
}

/// A name or title: not blank, and one line without control characters.
pub fn single_line(value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new("blank").with_message("must not be blank".into()));
    }
    if value.chars().any(char::is_control) {
        return Err(
            ValidationError::new("single_line").with_message("must be one line without control characters".into())
        );
    }
    Ok(())
}

/// Free text: anything PostgreSQL can store, which excludes the NUL character.
pub fn no_nul(value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::new("nul").with_message("must not contain the NUL character".into()));
    }
    Ok(())
}

/// For optional fields of a partial update that cannot be cleared: an absent field stays
/// `None`, and `null` is refused instead of being silently ignored.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)?
        .map(Some)
        .ok_or_else(|| D::Error::custom("null is not allowed here; omit the field to keep its value"))
}

/// For `Option<Option<T>>` fields with `#[serde(default)]`: an absent field stays `None`,
/// while `null` becomes `Some(None)`, so a partial update can clear a value.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_multi_line_values_are_refused() {
        let code = |value| single_line(value).err().map(|err| err.code);
        assert_eq!(code("Website relaunch"), None);
        assert_eq!(code("   ").as_deref(), Some("blank"));
        assert_eq!(code("two\nlines").as_deref(), Some("single_line"));
    }

    #[test]
    fn null_and_absent_are_told_apart() {
        #[derive(Deserialize)]
        struct Patch {
            #[serde(default, deserialize_with = "present")]
            note: Option<Option<String>>,
        }
        let parse = |json: &str| serde_json::from_str::<Patch>(json).map(|patch| patch.note).ok();
        assert_eq!(parse("{}"), Some(None));
        assert_eq!(parse(r#"{"note":null}"#), Some(Some(None)));
        assert_eq!(parse(r#"{"note":"x"}"#), Some(Some(Some("x".to_owned()))));
    }

    #[test]
    fn nul_is_the_only_character_free_text_refuses() {
        assert!(no_nul("two\nlines\tand tabs").is_ok());
        assert_eq!(no_nul("a\0b").err().map(|err| err.code).as_deref(), Some("nul"));
    }

    #[test]
    fn null_is_refused_where_a_field_cannot_be_cleared() {
        #[derive(Debug, Deserialize)]
        struct Patch {
            #[serde(default, deserialize_with = "not_null")]
            title: Option<String>,
        }
        let parse = |json: &str| serde_json::from_str::<Patch>(json);
        assert_eq!(parse("{}").ok().map(|patch| patch.title), Some(None));
        assert_eq!(
            parse(r#"{"title":"x"}"#).ok().map(|patch| patch.title),
            Some(Some("x".to_owned()))
        );
        let err = parse(r#"{"title":null}"#).expect_err("null refused").to_string();
        assert!(err.contains("null is not allowed"), "{err}");
    }
}

//! Pages on the wire: a list of items plus an opaque cursor. The cursor is base64url JSON of
//! the sort it belongs to and the last position; clients must not parse it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::domain::page::{self, Position, SortKind};

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to fetch the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Converts a domain page, binding its cursor to `sort` so it cannot be replayed with
    /// another order.
    pub fn from_domain<D>(page: page::Page<D>, sort: &str, item: impl Fn(D) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(item).collect(),
            next_cursor: page.next.map(|position| encode(sort, position)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    sort: String,
    position: Position,
}

/// The cursor of `position` in a list sorted by `sort`.
pub fn encode(sort: &str, position: Position) -> String {
    let cursor = Cursor {
        sort: sort.to_owned(),
        position,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
}

/// Reads a cursor issued for `sort`, whose column has type `kind`.
pub fn decode(token: &str, sort: &str, kind: SortKind) -> Result<Position, ApiError> {
    let invalid = || ApiError::BadRequest("cursor is invalid; use next_cursor from a previous page".to_owned());
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if cursor.sort != sort {
        return Err(ApiError::BadRequest(format!(
            "cursor belongs to sort={}; repeat that sort or drop the cursor",
            cursor.sort
        )));
    }
    if cursor.position.value.kind() != kind {
        return Err(invalid());
    }
    Ok(cursor.position)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::page::SortValue;

    #[test]
    fn a_cursor_round_trips_only_with_its_own_sort() {
        let position = Position {
            value: SortValue::Text("alpha".into()),
            id: Uuid::now_v7(),
        };
        let token = encode("name", position.clone());

        assert_eq!(decode(&token, "name", SortKind::Text).ok(), Some(position));
        assert!(matches!(
            decode(&token, "-name", SortKind::Text),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode(&token, "name", SortKind::Time),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode("not a cursor", "name", SortKind::Text),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn a_domain_page_gets_a_cursor_only_when_more_follow() {
        let position = Position {
            value: SortValue::Text("b".into()),
            id: Uuid::now_v7(),
        };
        let more = page::Page {
            items: vec![1, 2],
            next: Some(position.clone()),
        };
        let last = page::Page {
            items: vec![3],
            next: None,
        };

        let more = Page::from_domain(more, "name", |n| n * 10);
        let last = Page::from_domain(last, "name", |n| n * 10);

        assert_eq!(more.items, [10, 20]);
        let cursor = more.next_cursor.expect("a cursor");
        assert_eq!(decode(&cursor, "name", SortKind::Text).ok(), Some(position));
        assert_eq!(last.items, [30]);
        assert!(last.next_cursor.is_none());
    }
}

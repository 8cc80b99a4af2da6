//! Keyset pagination: pages are addressed by the position of the last item seen, so deep pages
//! cost the same as the first and concurrent inserts never shift or repeat items.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A page size within `1..=PageSize::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    pub const DEFAULT: u32 = 20;
    pub const MAX: u32 = 100;

    /// Clamps what a client asked for instead of refusing it: a page size is a hint.
    pub fn clamped(requested: Option<u32>) -> Self {
        Self(requested.unwrap_or(Self::DEFAULT).clamp(1, Self::MAX))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Asc,
    Desc,
}

/// The value of the sort column at a position, tagged with its type so that text which looks
/// like a timestamp stays text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortValue {
    #[serde(with = "time::serde::rfc3339")]
    Time(OffsetDateTime),
    Text(String),
}

/// The type of a sort column, so that a position can be checked against the sort it is used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    Text,
    Time,
}

impl SortValue {
    pub fn kind(&self) -> SortKind {
        match self {
            Self::Time(_) => SortKind::Time,
            Self::Text(_) => SortKind::Text,
        }
    }
}

/// Where a page ended: the sort value of its last item, with the id breaking ties.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub value: SortValue,
    pub id: Uuid,
}

/// One page of items and, when more follow, the position to continue after.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched one row more than `size`: that extra row only
    /// tells that another page exists.
    pub fn from_overfetch(mut rows: Vec<T>, size: PageSize, position_of: impl Fn(&T) -> Position) -> Self {
        let size = size.get() as usize;
        let next = if rows.len() > size {
            rows.truncate(size);
            rows.last().map(position_of)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_clamped_to_its_bounds() {
        assert_eq!(PageSize::clamped(None).get(), PageSize::DEFAULT);
        assert_eq!(PageSize::clamped(Some(0)).get(), 1);
        assert_eq!(PageSize::clamped(Some(7)).get(), 7);
        assert_eq!(PageSize::clamped(Some(10_000)).get(), PageSize::MAX);
    }

    #[test]
    fn an_overfetched_row_becomes_the_next_position() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let position = |id: &Uuid| Position {
            value: SortValue::Text(id.to_string()),
            id: *id,
        };

        let page = Page::from_overfetch(ids.clone(), PageSize::clamped(Some(2)), position);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next, Some(position(&ids[1])));

        let last = Page::from_overfetch(ids.clone(), PageSize::clamped(Some(3)), position);
        assert_eq!(last.items, ids);
        assert_eq!(last.next, None);
    }

    #[test]
    fn a_position_survives_a_round_trip_through_json() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid timestamp");
        for value in [SortValue::Time(at), SortValue::Text("2023-11-14T22:13:20Z".into())] {
            let position = Position {
                value,
                id: Uuid::now_v7(),
            };
            let json = serde_json::to_string(&position).expect("serializable");
            let back: Position = serde_json::from_str(&json).expect("deserializable");
            assert_eq!(back, position);
        }
    }
}

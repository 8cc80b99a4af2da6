//! Keyset pagination in SQL: a row-value comparison with the last position seen and an
//! `ORDER BY` on the same columns, so one index on `(column, id)` serves every page.

use sqlx::{Postgres, QueryBuilder};

use crate::domain::page::{Direction, PageSize, Position, SortValue};

/// Appends `AND (column, id) > (value, id)`, or `<` when descending, if `after` is set.
/// `column` must come from an allowlist, never from a request.
pub fn push_after(
    query: &mut QueryBuilder<Postgres>,
    column: &'static str,
    direction: Direction,
    after: Option<&Position>,
) {
    let Some(position) = after else { return };
    let operator = match direction {
        Direction::Asc => ">",
        Direction::Desc => "<",
    };
    query.push(format_args!(" AND ({column}, id) {operator} ("));
    match &position.value {
        SortValue::Text(text) => query.push_bind(text.clone()),
        SortValue::Time(at) => query.push_bind(*at),
    };
    query.push(", ").push_bind(position.id).push(")");
}

/// Appends the `ORDER BY` and a `LIMIT` one row past the page size: the extra row only tells
/// that another page follows.
pub fn push_order_and_limit(
    query: &mut QueryBuilder<Postgres>,
    column: &'static str,
    direction: Direction,
    size: PageSize,
) {
    let direction = keyword(direction);
    query
        .push(format_args!(" ORDER BY {column} {direction}, id {direction} LIMIT "))
        .push_bind(i64::from(size.get()) + 1);
}

/// The SQL keyword of a sort direction.
pub fn keyword(direction: Direction) -> &'static str {
    match direction {
        Direction::Asc => "ASC",
        Direction::Desc => "DESC",
    }
}

//! Projects: named containers of tasks, owned by the account that created them. An owner's
//! project names are unique regardless of letter case.

use time::OffsetDateTime;
use uuid::Uuid;

use super::page::{Direction, PageSize, Position, SortKind, SortValue};

/// A stored project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Incremented on every change; clients send it back in `If-Match` to update safely.
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A project about to be created; its fields were validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProject {
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
}

/// A partial update: `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

impl ProjectChanges {
    /// Whether the update would change nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none()
    }
}

/// Columns a project list may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectSort {
    Name,
    CreatedAt,
}

impl ProjectSort {
    /// The type of the column, which a position used with this sort must match.
    pub fn kind(self) -> SortKind {
        match self {
            Self::Name => SortKind::Text,
            Self::CreatedAt => SortKind::Time,
        }
    }
}

/// Which projects to list and in what order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectQuery {
    pub sort: ProjectSort,
    pub direction: Direction,
    pub after: Option<Position>,
    pub size: PageSize,
}

impl Project {
    /// The position of this project in a list sorted by `sort`.
    pub fn position(&self, sort: ProjectSort) -> Position {
        let value = match sort {
            ProjectSort::Name => SortValue::Text(self.name.clone()),
            ProjectSort::CreatedAt => SortValue::Time(self.created_at),
        };
        Position { value, id: self.id }
    }
}

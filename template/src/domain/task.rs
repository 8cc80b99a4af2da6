//! Tasks: units of work inside a project, moving through a fixed set of statuses.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::page::{Direction, PageSize, Position, SortKind, SortValue};

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub status: TaskStatus,
    pub due_at: Option<OffsetDateTime>,
    /// Incremented on every change; clients send it back in `If-Match` to update safely.
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Where a task stands. Stored as the PostgreSQL enum `task_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Todo,
    InProgress,
    Done,
}

impl TaskStatus {
    pub const ALL: [Self; 3] = [Self::Todo, Self::InProgress, Self::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::InProgress => "in_progress",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A status string outside [`TaskStatus::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown task status {0:?}")]
pub struct UnknownStatus(pub String);

/// A task about to be created; its fields were validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub project_id: Uuid,
    pub title: String,
    pub status: TaskStatus,
    pub due_at: Option<OffsetDateTime>,
}

/// A partial update: `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChanges {
    pub project_id: Option<Uuid>,
    pub title: Option<String>,
    pub status: Option<TaskStatus>,
    pub due_at: Option<Option<OffsetDateTime>>,
}

impl TaskChanges {
    /// Whether the update would change nothing.
    pub fn is_empty(&self) -> bool {
        self.project_id.is_none() && self.title.is_none() && self.status.is_none() && self.due_at.is_none()
    }
}

/// Columns a task list may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskSort {
    Title,
    CreatedAt,
}

impl TaskSort {
    /// The type of the column, which a position used with this sort must match.
    pub fn kind(self) -> SortKind {
        match self {
            Self::Title => SortKind::Text,
            Self::CreatedAt => SortKind::Time,
        }
    }
}

/// Which tasks to list and in what order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskQuery {
    pub project_id: Option<Uuid>,
    pub status: Option<TaskStatus>,
    pub sort: TaskSort,
    pub direction: Direction,
    pub after: Option<Position>,
    pub size: PageSize,
}

impl Task {
    /// The position of this task in a list sorted by `sort`.
    pub fn position(&self, sort: TaskSort) -> Position {
        let value = match sort {
            TaskSort::Title => SortValue::Text(self.title.clone()),
            TaskSort::CreatedAt => SortValue::Time(self.created_at),
        };
        Position { value, id: self.id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_from_its_own_name() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>().ok(), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert!("archived".parse::<TaskStatus>().is_err());
    }
}

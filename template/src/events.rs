//! The changes the example resource announces: to webhook endpoints, which subscribe to some
//! of them, and to realtime clients, which hear those of the projects they joined.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened to a project or one of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "project.created")]
    ProjectCreated,
    #[serde(rename = "project.updated")]
    ProjectUpdated,
    #[serde(rename = "project.deleted")]
    ProjectDeleted,
    #[serde(rename = "task.created")]
    TaskCreated,
    #[serde(rename = "task.updated")]
    TaskUpdated,
    #[serde(rename = "task.deleted")]
    TaskDeleted,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::ProjectCreated,
        Self::ProjectUpdated,
        Self::ProjectDeleted,
        Self::TaskCreated,
        Self::TaskUpdated,
        Self::TaskDeleted,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProjectCreated => "project.created",
            Self::ProjectUpdated => "project.updated",
            Self::ProjectDeleted => "project.deleted",
            Self::TaskCreated => "task.created",
            Self::TaskUpdated => "task.updated",
            Self::TaskDeleted => "task.deleted",
        }
    }
}

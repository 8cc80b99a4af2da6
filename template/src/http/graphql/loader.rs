//! Pages of tasks per project, batched: the `tasks` of every project in a list are asked for
//! one by one, and read together in one statement per distinct page (see
//! [`crate::db::tasks::list_per_project`]). One loader per request, bound to its caller's scope.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use super::error::from_api;
use crate::AppState;
use crate::db;
use crate::domain::page::Page;
use crate::domain::scope::Scope;
use crate::domain::task::{Task, TaskQuery};

/// A page `query` describes of project `project_id`'s tasks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskPageKey {
    pub project_id: Uuid,
    pub query: TaskQuery,
}

pub struct TaskPages {
    pub state: AppState,
    pub scope: Scope,
}

impl Loader<TaskPageKey> for TaskPages {
    type Value = Page<Task>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[TaskPageKey]) -> Result<HashMap<TaskPageKey, Page<Task>>, Self::Error> {
        // Projects asking for the same page (order, filters, size, cursor) share a statement.
        let mut groups: HashMap<&TaskQuery, Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups.entry(&key.query).or_default().push(key.project_id);
        }
        let mut conn = self.state.db.acquire().await.map_err(|err| from_api(err.into()))?;
        let mut pages = HashMap::with_capacity(keys.len());
        for (query, projects) in groups {
            let found = db::tasks::list_per_project(&mut conn, self.scope, &projects, query)
                .await
                .map_err(|err| from_api(err.into()))?;
            pages.extend(found.into_iter().map(|(project_id, page)| {
                let key = TaskPageKey {
                    project_id,
                    query: query.clone(),
                };
                (key, page)
            }));
        }
        conn.release();
        Ok(pages)
    }
}

//! Tasks in the schema: the `Task` type, the `task` and `tasks` queries and the mutations,
//! each a call to the operation the REST route makes, and the page of a project's tasks that
//! [`super::loader`] batches.

use async_graphql::connection::Connection;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::{Result, from_api};
use super::loader::{TaskPageKey, TaskPages};
use super::{at, caller, clamp_to_u32, connection, page_size, valid};
use crate::domain::page::Page;
use crate::domain::task as domain;
use crate::http::tasks::{self as rest, ListTasks};

pub struct Task(pub rest::Task);

/// A task.
#[Object]
impl Task {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn project_id(&self) -> Uuid {
        self.0.project_id
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn status(&self) -> TaskStatus {
        self.0.status.into()
    }

    async fn due_at(&self) -> Option<OffsetDateTime> {
        self.0.due_at
    }

    /// Changes on every update; pass it to `updateTask` and `deleteTask`.
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[graphql(remote = "rest::TaskStatus")]
pub enum TaskStatus {
    #[default]
    Todo,
    InProgress,
    Done,
}

/// Sort orders of tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[graphql(remote = "rest::TaskOrder")]
pub enum TaskOrder {
    Title,
    TitleDesc,
    CreatedAt,
    /// Newest first.
    #[default]
    CreatedAtDesc,
}

/// A new task.
#[derive(Debug, InputObject)]
pub struct CreateTaskInput {
    /// A project you may see.
    pub project_id: Uuid,
    /// 1 to 200 characters on one line.
    pub title: String,
    /// Defaults to `TODO`.
    pub status: Option<TaskStatus>,
    pub due_at: Option<OffsetDateTime>,
}

/// Changes to a task; omitted fields stay as they are, `null` clears the due date.
#[derive(Debug, InputObject)]
pub struct UpdateTaskInput {
    /// Moves the task to another project you may see.
    pub project_id: Option<Uuid>,
    pub title: Option<String>,
    pub status: Option<TaskStatus>,
    pub due_at: MaybeUndefined<OffsetDateTime>,
}

#[derive(Default)]
pub struct TaskQueries;

#[Object]
impl TaskQueries {
    /// A task; `null` with a `NOT_FOUND` error when it does not exist or is not yours.
    async fn task(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Task>> {
        let (state, user) = caller(ctx)?;
        let task = rest::get(state, user, id).await.map_err(from_api)?;
        Ok(Some(Task(task)))
    }

    /// The tasks you may see, of one project or all of them.
    #[graphql(complexity = "page_size(first) * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Items per page, 1 to 100; values outside are clamped. Defaults to 20.")] first: Option<i32>,
        #[graphql(desc = "`endCursor` of the previous page.")] after: Option<String>,
        #[graphql(default, desc = "Defaults to newest first.")] order_by: TaskOrder,
        #[graphql(desc = "Only tasks of this project.")] project_id: Option<Uuid>,
        #[graphql(desc = "Only tasks with this status.")] status: Option<TaskStatus>,
    ) -> Result<Connection<String, Task>> {
        let (state, user) = caller(ctx)?;
        let (order, query) = task_query(first, after, order_by, status, project_id)?;
        let page = rest::list(state, user, &query).await.map_err(from_api)?;
        Ok(connection(
            page,
            order.as_str(),
            |task| task.position(query.sort),
            |task| Task(task.into()),
        ))
    }
}

#[derive(Default)]
pub struct TaskMutations;

#[Object]
impl TaskMutations {
    async fn create_task(&self, ctx: &Context<'_>, input: CreateTaskInput) -> Result<Task> {
        let (state, user) = caller(ctx)?;
        let body = rest::CreateTask {
            project_id: input.project_id,
            title: input.title,
            status: input.status.map(Into::into).unwrap_or_default(),
            due_at: input.due_at,
        };
        rest::create(state, user, valid(body)?)
            .await
            .map(Task)
            .map_err(from_api)
    }

    /// Applies `input` if the task is still at `version`; otherwise `PRECONDITION_FAILED`
    /// with the current version in `extensions.currentVersion`.
    async fn update_task(&self, ctx: &Context<'_>, id: Uuid, version: i32, input: UpdateTaskInput) -> Result<Task> {
        let (state, user) = caller(ctx)?;
        let body = rest::UpdateTask {
            project_id: input.project_id,
            title: input.title,
            status: input.status.map(Into::into),
            due_at: super::present(input.due_at),
        };
        rest::update(state, user, id, &at(Some(version)), valid(body)?)
            .await
            .map(Task)
            .map_err(from_api)
    }

    /// Deletes the task, only at `version` when given; returns its id.
    async fn delete_task(&self, ctx: &Context<'_>, id: Uuid, version: Option<i32>) -> Result<Uuid> {
        let (state, user) = caller(ctx)?;
        rest::delete(state, user, id, &at(version)).await.map_err(from_api)?;
        Ok(id)
    }
}

/// A page of project `project_id`'s tasks, through the request's [`TaskPages`] loader.
pub async fn task_page(
    ctx: &Context<'_>,
    project_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
    order_by: TaskOrder,
    status: Option<TaskStatus>,
) -> Result<Connection<String, Task>> {
    caller(ctx)?;
    let (order, query) = task_query(first, after, order_by, status, None)?;
    let sort = query.sort;
    let loader = ctx.data_unchecked::<DataLoader<TaskPages>>();
    let page = loader
        .load_one(TaskPageKey { project_id, query })
        .await?
        .unwrap_or(Page {
            items: Vec::new(),
            next: None,
        });
    Ok(connection(
        page,
        order.as_str(),
        |task| task.position(sort),
        |task| Task(task.into()),
    ))
}

/// The arguments as the REST route's query would carry them, checked the same way.
fn task_query(
    first: Option<i32>,
    after: Option<String>,
    order_by: TaskOrder,
    status: Option<TaskStatus>,
    project_id: Option<Uuid>,
) -> Result<(rest::TaskOrder, domain::TaskQuery)> {
    let order = rest::TaskOrder::from(order_by);
    let query = ListTasks {
        project_id,
        status: status.map(Into::into),
        limit: first.map(clamp_to_u32),
        cursor: after,
        sort: order,
    }
    .into_domain()
    .map_err(from_api)?;
    Ok((order, query))
}

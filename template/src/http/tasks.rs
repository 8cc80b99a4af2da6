//! `/api/v1/tasks`: tasks belong to a project, which is chosen in the body and may change, so a
//! task that points at a missing project, or at another account's, is refused with 422. A
//! task is reachable by whoever owns its project (and administrators).
//! Each route is a thin handler over an operation on validated input (`list`, `create`, `get`,
//! `update`, `delete`, at the end), which other interfaces{% if graphql %} (GraphQL){% endif %} call as well.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use validator::Validate;

use super::authn::CurrentUser;
use super::error::ApiError;
use super::extract::{IfMatch, IfMatchHeader, Json, OptionalIfMatchHeader, Path, Query, Valid, etag};
use super::pagination::{self, Page};
use crate::AppState;
use crate::db;
use crate::domain::page::{self, Direction, PageSize};
use crate::domain::task::{self as domain, TaskSort};
{%- if realtime or jobs %}
use crate::events::EventType;
{%- endif %}
{%- if jobs %}
use crate::webhooks;
{%- endif %}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, update_task, delete_task))
}

/// A task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    #[schema(example = "Draft the landing page")]
    pub title: String,
    pub status: TaskStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
    /// Changes on every update; also sent as the `ETag` header.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<domain::Task> for Task {
    fn from(task: domain::Task) -> Self {
        Self {
            id: task.id,
            project_id: task.project_id,
            title: task.title,
            status: task.status.into(),
            due_at: task.due_at,
            version: task.version,
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Todo,
    InProgress,
    Done,
}

impl From<domain::TaskStatus> for TaskStatus {
    fn from(status: domain::TaskStatus) -> Self {
        match status {
            domain::TaskStatus::Todo => Self::Todo,
            domain::TaskStatus::InProgress => Self::InProgress,
            domain::TaskStatus::Done => Self::Done,
        }
    }
}

impl From<TaskStatus> for domain::TaskStatus {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Todo => Self::Todo,
            TaskStatus::InProgress => Self::InProgress,
            TaskStatus::Done => Self::Done,
        }
    }
}

/// A new task.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub project_id: Uuid,
    #[validate(
        custom(function = "super::validation::single_line"),
        length(min = 1, max = 200, message = "must be 1 to 200 characters")
    )]
    #[schema(schema_with = title_schema)]
    pub title: String,
    /// Defaults to `todo`.
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
}

fn title_schema() -> utoipa::openapi::Object {
    super::validation::single_line_schema(200, "Draft the landing page")
}

impl From<CreateTask> for domain::NewTask {
    fn from(body: CreateTask) -> Self {
        Self {
            project_id: body.project_id,
            title: body.title.trim().to_owned(),
            status: body.status.into(),
            due_at: body.due_at,
        }
    }
}

/// Changes to a task; omitted fields stay as they are, `null` clears the due date.
#[derive(Debug, Clone, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateTask {
    /// Moves the task to another project.
    #[serde(default, deserialize_with = "super::validation::not_null")]
    #[schema(nullable = false)]
    pub project_id: Option<Uuid>,
    #[serde(default, deserialize_with = "super::validation::not_null")]
    #[validate(
        custom(function = "super::validation::single_line"),
        length(min = 1, max = 200, message = "must be 1 to 200 characters")
    )]
    #[schema(schema_with = title_schema)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "super::validation::not_null")]
    #[schema(nullable = false)]
    pub status: Option<TaskStatus>,
    #[serde(default, deserialize_with = "rfc3339_present")]
    #[schema(value_type = Option<OffsetDateTime>)]
    pub due_at: Option<Option<OffsetDateTime>>,
}

/// [`super::validation::present`] for RFC 3339 timestamps.
fn rfc3339_present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    time::serde::rfc3339::option::deserialize(deserializer).map(Some)
}

impl From<UpdateTask> for domain::TaskChanges {
    fn from(body: UpdateTask) -> Self {
        Self {
            project_id: body.project_id,
            title: body.title.map(|title| title.trim().to_owned()),
            status: body.status.map(Into::into),
            due_at: body.due_at,
        }
    }
}

/// Sort orders; a leading `-` sorts descending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum TaskOrder {
    #[serde(rename = "title")]
    Title,
    #[serde(rename = "-title")]
    TitleDesc,
    #[serde(rename = "created_at")]
    CreatedAt,
    #[default]
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
}

impl TaskOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::TitleDesc => "-title",
            Self::CreatedAt => "created_at",
            Self::CreatedAtDesc => "-created_at",
        }
    }

    fn split(self) -> (TaskSort, Direction) {
        match self {
            Self::Title => (TaskSort::Title, Direction::Asc),
            Self::TitleDesc => (TaskSort::Title, Direction::Desc),
            Self::CreatedAt => (TaskSort::CreatedAt, Direction::Asc),
            Self::CreatedAtDesc => (TaskSort::CreatedAt, Direction::Desc),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// Only tasks of this project.
    pub project_id: Option<Uuid>,
    /// Only tasks with this status.
    #[param(inline)]
    pub status: Option<TaskStatus>,
    /// Items per page, 1 to 100; values outside are clamped. Defaults to 20.
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]+$", min_length = 1)]
    pub cursor: Option<String>,
    /// Defaults to `-created_at` (newest first).
    #[param(inline)]
    #[serde(default)]
    pub sort: TaskOrder,
}

impl ListTasks {
    pub fn into_domain(self) -> Result<domain::TaskQuery, ApiError> {
        let (sort, direction) = self.sort.split();
        // A cursor carries only a position, so it is also bound to the filters by the client
        // repeating them; changing filters mid-walk simply continues from that position.
        let after = self
            .cursor
            .map(|token| pagination::decode(&token, self.sort.as_str(), sort.kind()))
            .transpose()?;
        Ok(domain::TaskQuery {
            project_id: self.project_id,
            status: self.status.map(Into::into),
            sort,
            direction,
            after,
            size: PageSize::clamped(self.limit),
        })
    }
}

const NOT_FOUND: &str = "task not found";

/// List tasks
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", operation_id = "listTasks",
    security(("bearer" = [])),
    params(ListTasks),
    responses(
        (status = 200, description = "A page of tasks", body = Page<Task>),
        (status = 400, description = "Invalid query parameters or cursor"),
        (status = 401, description = "No valid access token"),
    ))]
async fn list_tasks(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<ListTasks>,
) -> Result<Json<Page<Task>>, ApiError> {
    let order = query.sort;
    let page = list(&state, &user, &query.into_domain()?).await?;
    Ok(Json(Page::from_domain(page, order.as_str(), Task::from)))
}

/// Create a task
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", operation_id = "createTask",
    security(("bearer" = [])),
    request_body = CreateTask,
    responses(
        (status = 201, description = "Created", body = Task,
            headers(("Location" = String, description = "URL of the new task"), ("ETag" = String, description = "Its version"))),
        (status = 401, description = "No valid access token"),
        (status = 422, description = "Invalid fields, or the project does not exist"),
    ))]
async fn create_task(
    State(state): State<AppState>,
    user: CurrentUser,
    Valid(body): Valid<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let task = create(&state, &user, body).await?;
    let location = format!("/api/v1/tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        etag(task.version),
        [(header::LOCATION, location)],
        Json(task),
    ))
}

/// Get a task
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", operation_id = "getTask",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "Its version"))),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such task"),
    ))]
async fn get_task(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    let task = get(&state, &user, id).await?;
    Ok((etag(task.version), Json(task)))
}

/// Update a task
///
/// Needs `If-Match` with the `ETag` of the version being changed, so concurrent edits are
/// detected instead of lost.
#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "tasks", operation_id = "updateTask",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Task id"),
        IfMatchHeader,
    ),
    request_body = UpdateTask,
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String, description = "Its new version"))),
        (status = 401, description = "No valid access token"),
        (status = 412, description = "The task changed since it was read, or does not exist"),
        (status = 422, description = "Invalid fields, or the project does not exist"),
        (status = 428, description = "If-Match is missing"),
    ))]
async fn update_task(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Valid(body): Valid<UpdateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let task = update(&state, &user, id, &if_match, body).await?;
    Ok((etag(task.version), Json(task)))
}

/// Delete a task
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks", operation_id = "deleteTask",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Task id"),
        OptionalIfMatchHeader,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such task"),
        (status = 412, description = "The task changed since it was read"),
    ))]
async fn delete_task(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    delete(&state, &user, id, &if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

// The operations behind the routes, on validated input, for every interface that offers them.

/// A page of the tasks `user` may see.
pub async fn list(
    state: &AppState,
    user: &CurrentUser,
    query: &domain::TaskQuery,
) -> Result<page::Page<domain::Task>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let page = db::tasks::list(&mut conn, user.scope(), query).await?;
    conn.release();
    Ok(page)
}

/// Adds a task to a project `user` may see.
pub async fn create(state: &AppState, user: &CurrentUser, body: CreateTask) -> Result<Task, ApiError> {
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    let mut conn = state.db.begin().await?;
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
    let task = Task::from(db::tasks::insert(&mut conn, user.scope(), &body.into()).await?);
{%- if jobs %}
    webhooks::announce(&mut conn, task.project_id, EventType::TaskCreated, &task).await?;
    db::commit(conn).await?;
{%- endif %}
{%- if realtime %}
    state
        .realtime
        .announce(EventType::TaskCreated, task.project_id, &task)
        .await;
{%- endif %}
    Ok(task)
}

/// The task `id`, if `user` may see its project.
pub async fn get(state: &AppState, user: &CurrentUser, id: Uuid) -> Result<Task, ApiError> {
    let mut conn = state.db.acquire().await?;
    let task = db::tasks::find(&mut conn, user.scope(), id).await?;
    conn.release();
    task.map(Task::from).ok_or(ApiError::NotFound(NOT_FOUND))
}

/// Applies `body` to task `id` if `if_match` names its current version.
pub async fn update(
    state: &AppState,
    user: &CurrentUser,
    id: Uuid,
    if_match: &IfMatch,
    body: UpdateTask,
) -> Result<Task, ApiError> {
    let expected = if_match.required()?;
    let changes = domain::TaskChanges::from(body);
    if changes.is_empty() {
        return Err(ApiError::Unprocessable("send at least one field to change".to_owned()));
    }
{%- if jobs or realtime %}
    let mut conn = state.db.begin().await?;
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
{%- if realtime %}
    // A task moving to another project leaves the old project's room too, which hears of it.
    let moved_from = match changes.project_id {
        Some(_) => db::tasks::find(&mut conn, user.scope(), id)
            .await?
            .map(|task| task.project_id),
        None => None,
    };
{%- endif %}
    let outcome = db::tasks::update(&mut conn, user.scope(), id, expected, &changes).await?;
    let task = Task::from(if_match.outcome(outcome, NOT_FOUND)?);
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    webhooks::announce(&mut conn, task.project_id, EventType::TaskUpdated, &task).await?;
{%- endif %}
{%- if jobs or realtime %}
    db::commit(conn).await?;
{%- endif %}
{%- if realtime %}
    state
        .realtime
        .announce(EventType::TaskUpdated, task.project_id, &task)
        .await;
    if let Some(old) = moved_from.filter(|old| *old != task.project_id) {
        state.realtime.announce(EventType::TaskUpdated, old, &task).await;
    }
{%- endif %}
    Ok(task)
}

/// Deletes task `id`, if `if_match` allows.
pub async fn delete(state: &AppState, user: &CurrentUser, id: Uuid, if_match: &IfMatch) -> Result<(), ApiError> {
{%- if jobs or realtime %}
    // Read first, while the task is there to be announced; a refused delete rolls back.
    let mut conn = state.db.begin().await?;
    let task = db::tasks::find(&mut conn, user.scope(), id).await?.map(Task::from);
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    if let Some(task) = &task {
        webhooks::announce(&mut conn, task.project_id, EventType::TaskDeleted, task).await?;
    }
{%- endif %}
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
    let outcome = db::tasks::delete(&mut conn, user.scope(), id, if_match.expected()).await?;
    if_match.outcome(outcome, NOT_FOUND)?;
{%- if jobs or realtime %}
    db::commit(conn).await?;
{%- endif %}
{%- if realtime %}
    if let Some(task) = &task {
        state
            .realtime
            .announce(EventType::TaskDeleted, task.project_id, task)
            .await;
    }
{%- endif %}
    Ok(())
}

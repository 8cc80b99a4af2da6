//! `/api/v1/projects`: request and response bodies, and the handlers that turn them into
//! domain values and back. Every route needs an access token; an account reaches its own
//! projects, administrators (`resources:any`) everyone's, and anyone else's is "not found".
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
use crate::domain::project::{self as domain, ProjectSort};
{%- if redis %}
use crate::domain::scope::Scope;
{%- endif %}
{%- if realtime or jobs %}
use crate::events::EventType;
{%- endif %}
{%- if jobs %}
use crate::webhooks;
{%- endif %}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    /// The account that created it.
    pub owner_id: Uuid,
    #[schema(example = "Website relaunch")]
    pub name: String,
    pub description: Option<String>,
    /// Changes on every update; also sent as the `ETag` header.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<domain::Project> for Project {
    fn from(project: domain::Project) -> Self {
        Self {
            id: project.id,
            owner_id: project.owner_id,
            name: project.name,
            description: project.description,
            version: project.version,
            created_at: project.created_at,
            updated_at: project.updated_at,
        }
    }
}

/// A new project.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    #[validate(
        custom(function = "super::validation::single_line"),
        length(min = 1, max = 100, message = "must be 1 to 100 characters")
    )]
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[validate(
        custom(function = "super::validation::no_nul"),
        length(max = 2000, message = "must be at most 2000 characters")
    )]
    #[schema(max_length = 2000, pattern = "^[^\\u0000]*$")]
    pub description: Option<String>,
}

fn name_schema() -> utoipa::openapi::Object {
    let mut schema = super::validation::single_line_schema(100, "Website relaunch");
    schema.description = Some("Unique regardless of letter case.".to_owned());
    schema
}

impl CreateProject {
    fn into_domain(self, owner_id: Uuid) -> domain::NewProject {
        domain::NewProject {
            owner_id,
            name: self.name.trim().to_owned(),
            description: self.description,
        }
    }
}

/// Changes to a project; omitted fields stay as they are, `null` clears a description.
#[derive(Debug, Clone, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateProject {
    #[serde(default, deserialize_with = "super::validation::not_null")]
    #[validate(
        custom(function = "super::validation::single_line"),
        length(min = 1, max = 100, message = "must be 1 to 100 characters")
    )]
    #[schema(schema_with = name_schema)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::validation::present")]
    #[validate(
        custom(function = "super::validation::no_nul"),
        length(max = 2000, message = "must be at most 2000 characters")
    )]
    #[schema(value_type = Option<String>, max_length = 2000, pattern = "^[^\\u0000]*$")]
    pub description: Option<Option<String>>,
}

impl From<UpdateProject> for domain::ProjectChanges {
    fn from(body: UpdateProject) -> Self {
        Self {
            name: body.name.map(|name| name.trim().to_owned()),
            description: body.description,
        }
    }
}

/// Sort orders; a leading `-` sorts descending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum ProjectOrder {
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "-name")]
    NameDesc,
    #[serde(rename = "created_at")]
    CreatedAt,
    #[default]
    #[serde(rename = "-created_at")]
    CreatedAtDesc,
}

impl ProjectOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::NameDesc => "-name",
            Self::CreatedAt => "created_at",
            Self::CreatedAtDesc => "-created_at",
        }
    }

    fn split(self) -> (ProjectSort, Direction) {
        match self {
            Self::Name => (ProjectSort::Name, Direction::Asc),
            Self::NameDesc => (ProjectSort::Name, Direction::Desc),
            Self::CreatedAt => (ProjectSort::CreatedAt, Direction::Asc),
            Self::CreatedAtDesc => (ProjectSort::CreatedAt, Direction::Desc),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListProjects {
    /// Items per page, 1 to 100; values outside are clamped. Defaults to 20.
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]+$", min_length = 1)]
    pub cursor: Option<String>,
    /// Defaults to `-created_at` (newest first).
    #[param(inline)]
    #[serde(default)]
    pub sort: ProjectOrder,
}

impl ListProjects {
    pub fn into_domain(self) -> Result<domain::ProjectQuery, ApiError> {
        let (sort, direction) = self.sort.split();
        let after = self
            .cursor
            .map(|token| pagination::decode(&token, self.sort.as_str(), sort.kind()))
            .transpose()?;
        Ok(domain::ProjectQuery {
            sort,
            direction,
            after,
            size: PageSize::clamped(self.limit),
        })
    }
}

const NOT_FOUND: &str = "project not found";

/// List projects
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", operation_id = "listProjects",
    security(("bearer" = [])),
    params(ListProjects),
    responses(
        (status = 200, description = "A page of projects", body = Page<Project>),
        (status = 400, description = "Invalid query parameters or cursor"),
        (status = 401, description = "No valid access token"),
    ))]
async fn list_projects(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<ListProjects>,
) -> Result<Json<Page<Project>>, ApiError> {
    let order = query.sort;
    let page = list(&state, &user, &query.into_domain()?).await?;
    Ok(Json(Page::from_domain(page, order.as_str(), Project::from)))
}

/// Create a project
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", operation_id = "createProject",
    security(("bearer" = [])),
    request_body = CreateProject,
    responses(
        (status = 201, description = "Created", body = Project,
            headers(("Location" = String, description = "URL of the new project"), ("ETag" = String, description = "Its version"))),
        (status = 401, description = "No valid access token"),
        (status = 409, description = "A project with this name exists"),
        (status = 422, description = "Invalid fields"),
    ))]
async fn create_project(
    State(state): State<AppState>,
    user: CurrentUser,
    Valid(body): Valid<CreateProject>,
) -> Result<impl IntoResponse, ApiError> {
    let project = create(&state, &user, body).await?;
    let location = format!("/api/v1/projects/{}", project.id);
    Ok((
        StatusCode::CREATED,
        etag(project.version),
        [(header::LOCATION, location)],
        Json(project),
    ))
}

/// Get a project
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects", operation_id = "getProject",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses(
        (status = 200, description = "The project", body = Project, headers(("ETag" = String, description = "Its version"))),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such project"),
    ))]
async fn get_project(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    let project = get(&state, &user, id).await?;
    Ok((etag(project.version), Json(project)))
}

/// Update a project
///
/// Needs `If-Match` with the `ETag` of the version being changed, so concurrent edits are
/// detected instead of lost.
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", operation_id = "updateProject",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Project id"),
        IfMatchHeader,
    ),
    request_body = UpdateProject,
    responses(
        (status = 200, description = "The updated project", body = Project, headers(("ETag" = String, description = "Its new version"))),
        (status = 401, description = "No valid access token"),
        (status = 409, description = "A project with this name exists"),
        (status = 412, description = "The project changed since it was read, or does not exist"),
        (status = 422, description = "Invalid fields"),
        (status = 428, description = "If-Match is missing"),
    ))]
async fn update_project(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Valid(body): Valid<UpdateProject>,
) -> Result<impl IntoResponse, ApiError> {
    let project = update(&state, &user, id, &if_match, body).await?;
    Ok((etag(project.version), Json(project)))
}

/// Delete a project and its tasks
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects", operation_id = "deleteProject",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Project id"),
        OptionalIfMatchHeader,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such project"),
        (status = 412, description = "The project changed since it was read"),
    ))]
async fn delete_project(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    delete(&state, &user, id, &if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

// The operations behind the routes, on validated input, for every interface that offers them.

/// A page of the projects `user` may see.
pub async fn list(
    state: &AppState,
    user: &CurrentUser,
    query: &domain::ProjectQuery,
) -> Result<page::Page<domain::Project>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let page = db::projects::list(&mut conn, user.scope(), query).await?;
    conn.release();
    Ok(page)
}

/// Adds a project owned by `user`.
pub async fn create(state: &AppState, user: &CurrentUser, body: CreateProject) -> Result<Project, ApiError> {
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    let mut conn = state.db.begin().await?;
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
    let project = Project::from(db::projects::insert(&mut conn, &body.into_domain(user.id)).await?);
{%- if jobs %}
    webhooks::announce(&mut conn, project.id, EventType::ProjectCreated, &project).await?;
    db::commit(conn).await?;
{%- endif %}
    Ok(project)
}

/// The project `id`, if `user` may see it.
pub async fn get(state: &AppState, user: &CurrentUser, id: Uuid) -> Result<Project, ApiError> {
{%- if redis %}
    // Cached whoever asked, so the scope is checked here, on the cached owner, just as the
    // query would: another account's project is not found either way.
    state
        .project_cache
        .get_or_load(id, async || {
            let mut conn = state.db.acquire().await?;
            let project = db::projects::find(&mut conn, Scope::Any, id).await?;
            conn.release();
            Ok::<_, ApiError>(project.map(Project::from))
        })
        .await?
        .filter(|project| user.scope().includes(project.owner_id))
        .ok_or(ApiError::NotFound(NOT_FOUND))
{%- else %}
    let mut conn = state.db.acquire().await?;
    let project = db::projects::find(&mut conn, user.scope(), id).await?;
    conn.release();
    project.map(Project::from).ok_or(ApiError::NotFound(NOT_FOUND))
{%- endif %}
}

/// Applies `body` to project `id` if `if_match` names its current version.
pub async fn update(
    state: &AppState,
    user: &CurrentUser,
    id: Uuid,
    if_match: &IfMatch,
    body: UpdateProject,
) -> Result<Project, ApiError> {
    let expected = if_match.required()?;
    let changes = domain::ProjectChanges::from(body);
    if changes.is_empty() {
        return Err(ApiError::Unprocessable("send at least one field to change".to_owned()));
    }
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    let mut conn = state.db.begin().await?;
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
    let outcome = db::projects::update(&mut conn, user.scope(), id, expected, &changes).await?;
    let project = Project::from(if_match.outcome(outcome, NOT_FOUND)?);
{%- if jobs %}
    webhooks::announce(&mut conn, project.id, EventType::ProjectUpdated, &project).await?;
    db::commit(conn).await?;
{%- endif %}
{%- if redis %}
    state.project_cache.invalidate(id).await;
{%- endif %}
{%- if realtime %}
    state
        .realtime
        .announce(EventType::ProjectUpdated, project.id, &project)
        .await;
{%- endif %}
    Ok(project)
}

/// Deletes project `id` and its tasks, if `if_match` allows.
pub async fn delete(state: &AppState, user: &CurrentUser, id: Uuid, if_match: &IfMatch) -> Result<(), ApiError> {
{%- if jobs or realtime %}
    // Read first, while the project is there to be announced; a refused delete rolls back.
    let mut conn = state.db.begin().await?;
    let project = db::projects::find(&mut conn, user.scope(), id)
        .await?
        .map(Project::from);
{%- if jobs %}
    // The change and the deliveries it causes commit together.
    if let Some(project) = &project {
        webhooks::announce(&mut conn, id, EventType::ProjectDeleted, project).await?;
    }
{%- endif %}
{%- else %}
    let mut conn = state.db.acquire().await?;
{%- endif %}
    let outcome = db::projects::delete(&mut conn, user.scope(), id, if_match.expected()).await?;
    if_match.outcome(outcome, NOT_FOUND)?;
{%- if jobs or realtime %}
    db::commit(conn).await?;
{%- endif %}
{%- if redis %}
    state.project_cache.invalidate(id).await;
{%- endif %}
{%- if realtime %}
    if let Some(project) = &project {
        state.realtime.announce(EventType::ProjectDeleted, id, project).await;
    }
{%- endif %}
    Ok(())
}

//! Projects in the schema: the `Project` type with its tasks, the `project` and `projects`
//! queries and the mutations, each a call to the operation the REST route makes.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::{Result, from_api};
use super::tasks::{Task, TaskOrder, TaskStatus, task_page};
use super::{at, caller, clamp_to_u32, connection, page_size, valid};
use crate::http::projects::{self as rest, ListProjects};

pub struct Project(pub rest::Project);

/// A project.
#[Object]
impl Project {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    /// The account that created it.
    async fn owner_id(&self) -> Uuid {
        self.0.owner_id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// Changes on every update; pass it to `updateProject` and `deleteProject`.
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }

    /// The project's tasks. Asked for on a list of projects, the tasks of all of them are
    /// read in one statement.
    #[graphql(complexity = "page_size(first) * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Items per page, 1 to 100; values outside are clamped. Defaults to 20.")] first: Option<i32>,
        #[graphql(desc = "`endCursor` of the previous page.")] after: Option<String>,
        #[graphql(default, desc = "Defaults to newest first.")] order_by: TaskOrder,
        #[graphql(desc = "Only tasks with this status.")] status: Option<TaskStatus>,
    ) -> Result<Connection<String, Task>> {
        task_page(ctx, self.0.id, first, after, order_by, status).await
    }
}

/// Sort orders of projects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[graphql(remote = "rest::ProjectOrder")]
pub enum ProjectOrder {
    Name,
    NameDesc,
    CreatedAt,
    /// Newest first.
    #[default]
    CreatedAtDesc,
}

/// A new project.
#[derive(Debug, InputObject)]
pub struct CreateProjectInput {
    /// 1 to 100 characters on one line, unique among the owner's projects regardless of case.
    pub name: String,
    /// At most 2000 characters.
    pub description: Option<String>,
}

/// Changes to a project; omitted fields stay as they are, `null` clears the description.
#[derive(Debug, InputObject)]
pub struct UpdateProjectInput {
    pub name: Option<String>,
    pub description: MaybeUndefined<String>,
}

#[derive(Default)]
pub struct ProjectQueries;

#[Object]
impl ProjectQueries {
    /// A project; `null` with a `NOT_FOUND` error when it does not exist or is not yours.
    async fn project(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Project>> {
        let (state, user) = caller(ctx)?;
        let project = rest::get(state, user, id).await.map_err(from_api)?;
        Ok(Some(Project(project)))
    }

    /// The projects you may see: your own, or everyone's with `resources:any`.
    #[graphql(complexity = "page_size(first) * child_complexity")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Items per page, 1 to 100; values outside are clamped. Defaults to 20.")] first: Option<i32>,
        #[graphql(desc = "`endCursor` of the previous page.")] after: Option<String>,
        #[graphql(default, desc = "Defaults to newest first.")] order_by: ProjectOrder,
    ) -> Result<Connection<String, Project>> {
        let (state, user) = caller(ctx)?;
        let order = rest::ProjectOrder::from(order_by);
        let query = ListProjects {
            limit: first.map(clamp_to_u32),
            cursor: after,
            sort: order,
        }
        .into_domain()
        .map_err(from_api)?;
        let page = rest::list(state, user, &query).await.map_err(from_api)?;
        Ok(connection(
            page,
            order.as_str(),
            |project| project.position(query.sort),
            |project| Project(project.into()),
        ))
    }
}

#[derive(Default)]
pub struct ProjectMutations;

#[Object]
impl ProjectMutations {
    async fn create_project(&self, ctx: &Context<'_>, input: CreateProjectInput) -> Result<Project> {
        let (state, user) = caller(ctx)?;
        let body = rest::CreateProject {
            name: input.name,
            description: input.description,
        };
        rest::create(state, user, valid(body)?)
            .await
            .map(Project)
            .map_err(from_api)
    }

    /// Applies `input` if the project is still at `version`; otherwise `PRECONDITION_FAILED`
    /// with the current version in `extensions.currentVersion`.
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        version: i32,
        input: UpdateProjectInput,
    ) -> Result<Project> {
        let (state, user) = caller(ctx)?;
        let body = rest::UpdateProject {
            name: input.name,
            description: super::present(input.description),
        };
        rest::update(state, user, id, &at(Some(version)), valid(body)?)
            .await
            .map(Project)
            .map_err(from_api)
    }

    /// Deletes the project and its tasks, only at `version` when given; returns its id.
    async fn delete_project(&self, ctx: &Context<'_>, id: Uuid, version: Option<i32>) -> Result<Uuid> {
        let (state, user) = caller(ctx)?;
        rest::delete(state, user, id, &at(version)).await.map_err(from_api)?;
        Ok(id)
    }
}

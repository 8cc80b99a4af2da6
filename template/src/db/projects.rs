//! Queries on `projects`. Every query but `insert` takes a [`Scope`] and filters by it: with
//! `$1` the project and `$2` the owner, NULL meaning anyone's.

use sqlx::{PgConnection, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::DbError;
use super::keyset::{push_after, push_order_and_limit};
use super::versioned::{self, Table};
use crate::domain::page::Page;
use crate::domain::project::{NewProject, Project, ProjectChanges, ProjectQuery, ProjectSort};
use crate::domain::scope::Scope;
use crate::domain::version::Versioned;

const TABLE: Table = Table {
    name: "projects",
    owned_by: "owner_id = $2",
};

/// Messages for the constraints a client can run into.
const CONSTRAINTS: &[(&str, &str)] = &[("projects_owner_id_name_key", "a project with this name already exists")];

/// The selected columns; a macro so that `concat!` builds each query as a `&'static str`.
macro_rules! columns {
    () => {
        "id, owner_id, name, description, version, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: Uuid,
    owner_id: Uuid,
    name: String,
    description: Option<String>,
    version: i32,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ProjectRow> for Project {
    fn from(row: ProjectRow) -> Self {
        Self {
            id: row.id,
            owner_id: row.owner_id,
            name: row.name,
            description: row.description,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn classify(err: sqlx::Error) -> DbError {
    DbError::classify(err, CONSTRAINTS)
}

pub async fn insert(conn: &mut PgConnection, new: &NewProject) -> Result<Project, DbError> {
    sqlx::query_as::<_, ProjectRow>(concat!(
        "INSERT INTO projects (id, owner_id, name, description) VALUES ($1, $2, $3, $4) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(new.owner_id)
    .bind(&new.name)
    .bind(&new.description)
    .fetch_one(&mut *conn)
    .await
    .map(Project::from)
    .map_err(classify)
}

pub async fn find(conn: &mut PgConnection, scope: Scope, id: Uuid) -> Result<Option<Project>, DbError> {
    sqlx::query_as::<_, ProjectRow>(concat!(
        "SELECT ",
        columns!(),
        " FROM projects WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)"
    ))
    .bind(id)
    .bind(scope.owner())
    .fetch_optional(&mut *conn)
    .await
    .map(|row| row.map(Project::from))
    .map_err(classify)
}

pub async fn list(conn: &mut PgConnection, scope: Scope, query: &ProjectQuery) -> Result<Page<Project>, DbError> {
    let column = match query.sort {
        ProjectSort::Name => "name",
        ProjectSort::CreatedAt => "created_at",
    };
    let mut sql = QueryBuilder::new(concat!("SELECT ", columns!(), " FROM projects WHERE true"));
    if let Some(owner) = scope.owner() {
        sql.push(" AND owner_id = ").push_bind(owner);
    }
    push_after(&mut sql, column, query.direction, query.after.as_ref());
    push_order_and_limit(&mut sql, column, query.direction, query.size);
    let rows = sql
        .build_query_as::<ProjectRow>()
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    let projects = rows.into_iter().map(Project::from).collect();
    Ok(Page::from_overfetch(projects, query.size, |project| {
        project.position(query.sort)
    }))
}

/// Applies `changes` if its version is one of `expected` (any version when `None`).
pub async fn update(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
    expected: Option<&[i32]>,
    changes: &ProjectChanges,
) -> Result<Versioned<Project>, DbError> {
    let updated = sqlx::query_as::<_, ProjectRow>(concat!(
        "UPDATE projects SET \
             name = COALESCE($4, name), \
             description = CASE WHEN $5 THEN $6 ELSE description END, \
             version = version + 1, \
             updated_at = now() \
         WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2) AND ($3::int4[] IS NULL OR version = ANY($3)) \
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(scope.owner())
    .bind(expected)
    .bind(&changes.name)
    .bind(changes.description.is_some())
    .bind(changes.description.clone().flatten())
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    if let Some(row) = updated {
        return Ok(Versioned::Applied(row.into()));
    }
    Ok(Versioned::missed(
        versioned::current_version(conn, TABLE, id, scope.owner())
            .await
            .map_err(classify)?,
    ))
}

/// Deletes the project and, by cascade, its tasks, if its version is one of `expected`.
pub async fn delete(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
    expected: Option<&[i32]>,
) -> Result<Versioned<()>, DbError> {
    versioned::delete(conn, TABLE, id, scope.owner(), expected)
        .await
        .map_err(classify)
}

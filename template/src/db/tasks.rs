//! Queries on `tasks`. The status column is the PostgreSQL enum `task_status`; it crosses the
//! wire as text and is cast on both sides, which keeps sqlx out of the domain types. A task
//! belongs to whoever owns its project: every query takes a [`Scope`] and filters by it, with
//! `$1` the task and `$2` the owner, NULL meaning anyone's.

use std::collections::HashMap;

use sqlx::{PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::DbError;
use super::keyset::{self, push_after, push_order_and_limit};
use super::versioned::{self, Table};
use crate::domain::page::Page;
use crate::domain::scope::Scope;
use crate::domain::task::{NewTask, Task, TaskChanges, TaskQuery, TaskSort, TaskStatus};
use crate::domain::version::Versioned;

/// Holds for a task whose project `$2` owns.
macro_rules! owned {
    () => {
        "project_id IN (SELECT id FROM projects WHERE owner_id = $2)"
    };
}

const TABLE: Table = Table {
    name: "tasks",
    owned_by: owned!(),
};

/// A project that does not exist and one the caller may not see are told apart by nobody.
const NO_SUCH_PROJECT: &str = "project_id refers to a project that does not exist";

/// Messages for the constraints a client can run into.
const CONSTRAINTS: &[(&str, &str)] = &[("tasks_project_id_fkey", NO_SUCH_PROJECT)];

/// The selected columns; a macro so that `concat!` builds each query as a `&'static str`.
macro_rules! columns {
    () => {
        "id, project_id, title, status::text AS status, due_at, version, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: Uuid,
    project_id: Uuid,
    title: String,
    status: String,
    due_at: Option<OffsetDateTime>,
    version: i32,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<TaskRow> for Task {
    type Error = DbError;

    fn try_from(row: TaskRow) -> Result<Self, DbError> {
        let status = row
            .status
            .parse()
            .map_err(|err| DbError::Other(sqlx::Error::Decode(Box::new(err))))?;
        Ok(Self {
            id: row.id,
            project_id: row.project_id,
            title: row.title,
            status,
            due_at: row.due_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn classify(err: sqlx::Error) -> DbError {
    DbError::classify(err, CONSTRAINTS)
}

/// Adds a task to a project the caller may see.
pub async fn insert(conn: &mut PgConnection, scope: Scope, new: &NewTask) -> Result<Task, DbError> {
    let row = sqlx::query_as::<_, TaskRow>(concat!(
        "INSERT INTO tasks (id, project_id, title, status, due_at) \
         SELECT $1, id, $4, $5::task_status, $6 FROM projects \
         WHERE id = $3 AND ($2::uuid IS NULL OR owner_id = $2) \
         RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(scope.owner())
    .bind(new.project_id)
    .bind(&new.title)
    .bind(new.status.as_str())
    .bind(new.due_at)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.ok_or(DbError::MissingReference(NO_SUCH_PROJECT))?.try_into()
}

pub async fn find(conn: &mut PgConnection, scope: Scope, id: Uuid) -> Result<Option<Task>, DbError> {
    let row = sqlx::query_as::<_, TaskRow>(concat!(
        "SELECT ",
        columns!(),
        " FROM tasks WHERE id = $1 AND ($2::uuid IS NULL OR ",
        owned!(),
        ")"
    ))
    .bind(id)
    .bind(scope.owner())
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    row.map(Task::try_from).transpose()
}

pub async fn list(conn: &mut PgConnection, scope: Scope, query: &TaskQuery) -> Result<Page<Task>, DbError> {
    let column = sort_column(query.sort);
    let mut sql = QueryBuilder::new(concat!("SELECT ", columns!(), " FROM tasks WHERE true"));
    if let Some(owner) = scope.owner() {
        sql.push(" AND project_id IN (SELECT id FROM projects WHERE owner_id = ")
            .push_bind(owner)
            .push(")");
    }
    if let Some(project_id) = query.project_id {
        sql.push(" AND project_id = ").push_bind(project_id);
    }
    push_page(&mut sql, column, query);
    let rows = sql
        .build_query_as::<TaskRow>()
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    let tasks = rows.into_iter().map(Task::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(tasks, query.size, |task| {
        task.position(query.sort)
    }))
}

/// The page `query` asks for in each of `projects` the caller may see, in one statement:
/// lists of projects with their tasks need not ask once per project. `query.project_id` is
/// ignored; a project left out of the answer has no tasks to show.
pub async fn list_per_project(
    conn: &mut PgConnection,
    scope: Scope,
    projects: &[Uuid],
    query: &TaskQuery,
) -> Result<HashMap<Uuid, Page<Task>>, DbError> {
    let column = sort_column(query.sort);
    let mut sql = QueryBuilder::new(concat!(
        "SELECT t.* FROM projects p CROSS JOIN LATERAL (SELECT ",
        columns!(),
        " FROM tasks WHERE project_id = p.id"
    ));
    push_page(&mut sql, column, query);
    sql.push(") t WHERE p.id = ANY(").push_bind(projects).push(")");
    if let Some(owner) = scope.owner() {
        sql.push(" AND p.owner_id = ").push_bind(owner);
    }
    // Each project's rows in its own order, so they can be cut into pages as they come.
    let direction = keyset::keyword(query.direction);
    sql.push(format_args!(
        " ORDER BY t.project_id, t.{column} {direction}, t.id {direction}"
    ));
    let rows = sql
        .build_query_as::<TaskRow>()
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
    let mut per_project: HashMap<Uuid, Vec<Task>> = HashMap::new();
    for row in rows {
        let task = Task::try_from(row)?;
        per_project.entry(task.project_id).or_default().push(task);
    }
    Ok(per_project
        .into_iter()
        .map(|(project, tasks)| {
            let page = Page::from_overfetch(tasks, query.size, |task| task.position(query.sort));
            (project, page)
        })
        .collect())
}

fn sort_column(sort: TaskSort) -> &'static str {
    match sort {
        TaskSort::Title => "title",
        TaskSort::CreatedAt => "created_at",
    }
}

/// The status filter, the position to continue after, the order and the limit of `query`.
fn push_page(sql: &mut QueryBuilder<Postgres>, column: &'static str, query: &TaskQuery) {
    if let Some(status) = query.status {
        sql.push(" AND status = ")
            .push_bind(status.as_str())
            .push("::task_status");
    }
    push_after(sql, column, query.direction, query.after.as_ref());
    push_order_and_limit(sql, column, query.direction, query.size);
}

/// Applies `changes` if its version is one of `expected` (any version when `None`). A task
/// moves only to a project the caller may see.
pub async fn update(
    conn: &mut PgConnection,
    scope: Scope,
    id: Uuid,
    expected: Option<&[i32]>,
    changes: &TaskChanges,
) -> Result<Versioned<Task>, DbError> {
    let updated = sqlx::query_as::<_, TaskRow>(concat!(
        "UPDATE tasks SET \
             project_id = COALESCE($4, project_id), \
             title = COALESCE($5, title), \
             status = COALESCE($6::task_status, status), \
             due_at = CASE WHEN $7 THEN $8 ELSE due_at END, \
             version = version + 1, \
             updated_at = now() \
         WHERE id = $1 AND ($3::int4[] IS NULL OR version = ANY($3)) \
           AND ($2::uuid IS NULL OR (",
        owned!(),
        " AND ($4::uuid IS NULL OR $4 IN (SELECT id FROM projects WHERE owner_id = $2)))) \
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(scope.owner())
    .bind(expected)
    .bind(changes.project_id)
    .bind(&changes.title)
    .bind(changes.status.map(TaskStatus::as_str))
    .bind(changes.due_at.is_some())
    .bind(changes.due_at.flatten())
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    if let Some(row) = updated {
        return Ok(Versioned::Applied(row.try_into()?));
    }
    let current = versioned::current_version(conn, TABLE, id, scope.owner())
        .await
        .map_err(classify)?;
    let version_matched = current.is_some_and(|current| expected.is_none_or(|expected| expected.contains(&current)));
    if version_matched && changes.project_id.is_some() {
        // The task is visible and current, so the project it was to move to is not.
        return Err(DbError::MissingReference(NO_SUCH_PROJECT));
    }
    Ok(Versioned::missed(current))
}

/// Deletes the task if its version is one of `expected` (any version when `None`).
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

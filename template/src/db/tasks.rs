//! Queries on `tasks`. The status column is the PostgreSQL enum `task_status`; it crosses the
//! wire as text and is cast on both sides, which keeps sqlx out of the domain types.

use sqlx::{PgConnection, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::DbError;
use super::keyset::{push_after, push_order_and_limit};
use super::versioned::{self, Versioned};
use crate::domain::page::Page;
use crate::domain::task::{NewTask, Task, TaskChanges, TaskQuery, TaskSort, TaskStatus};

const TABLE: &str = "tasks";

/// Messages for the constraints a client can run into.
const CONSTRAINTS: &[(&str, &str)] = &[(
    "tasks_project_id_fkey",
    "project_id refers to a project that does not exist",
)];

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

pub async fn insert(conn: &mut PgConnection, new: &NewTask) -> Result<Task, DbError> {
    let row = sqlx::query_as::<_, TaskRow>(concat!(
        "INSERT INTO tasks (id, project_id, title, status, due_at) \
         VALUES ($1, $2, $3, $4::task_status, $5) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(new.project_id)
    .bind(&new.title)
    .bind(new.status.as_str())
    .bind(new.due_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(classify)?;
    row.try_into()
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<Task>, DbError> {
    let row = sqlx::query_as::<_, TaskRow>(concat!("SELECT ", columns!(), " FROM tasks WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(classify)?;
    row.map(Task::try_from).transpose()
}

pub async fn list(conn: &mut PgConnection, query: &TaskQuery) -> Result<Page<Task>, DbError> {
    let column = match query.sort {
        TaskSort::Title => "title",
        TaskSort::CreatedAt => "created_at",
    };
    let mut sql = QueryBuilder::new(concat!("SELECT ", columns!(), " FROM tasks WHERE true"));
    if let Some(project_id) = query.project_id {
        sql.push(" AND project_id = ").push_bind(project_id);
    }
    if let Some(status) = query.status {
        sql.push(" AND status = ")
            .push_bind(status.as_str())
            .push("::task_status");
    }
    push_after(&mut sql, column, query.direction, query.after.as_ref());
    push_order_and_limit(&mut sql, column, query.direction, query.size);
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

/// Applies `changes` if its version is one of `expected` (any version when `None`).
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    expected: Option<&[i32]>,
    changes: &TaskChanges,
) -> Result<Versioned<Task>, DbError> {
    let updated = sqlx::query_as::<_, TaskRow>(concat!(
        "UPDATE tasks SET \
             project_id = COALESCE($3, project_id), \
             title = COALESCE($4, title), \
             status = COALESCE($5::task_status, status), \
             due_at = CASE WHEN $6 THEN $7 ELSE due_at END, \
             version = version + 1, \
             updated_at = now() \
         WHERE id = $1 AND ($2::int4[] IS NULL OR version = ANY($2)) \
         RETURNING ",
        columns!()
    ))
    .bind(id)
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
    Ok(Versioned::missed(
        versioned::current_version(conn, TABLE, id).await.map_err(classify)?,
    ))
}

/// Deletes the task if its version is one of `expected` (any version when `None`).
pub async fn delete(conn: &mut PgConnection, id: Uuid, expected: Option<&[i32]>) -> Result<Versioned<()>, DbError> {
    versioned::delete(conn, TABLE, id, expected).await.map_err(classify)
}

//! What can go wrong in a query, in terms the HTTP layer can answer: constraint violations
//! become client errors with a message; pool exhaustion, lost connections and timeouts become
//! "try again".

use sqlx::error::ErrorKind;

/// A failed query, classified.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique constraint refused the write.
    #[error("{0}")]
    Conflict(&'static str),
    /// A foreign key named a row that does not exist.
    #[error("{0}")]
    MissingReference(&'static str),
    /// PostgreSQL cannot serve now: no connection became free within the pool's acquire
    /// timeout, or the connection failed (a restart, a crash, a failover, the network).
    #[error("no database connection available")]
    Unavailable,
    /// The statement ran past `statement_timeout`.
    #[error("database statement timed out")]
    Timeout,
    /// PostgreSQL refused a value the request carried: text it cannot store, a date or number
    /// out of its range, a string too long for its column.
    #[error("a value cannot be stored")]
    InvalidValue,
    /// Anything else: a bug or an outage, logged and answered with 500.
    #[error(transparent)]
    Other(sqlx::Error),
}

/// PostgreSQL's SQLSTATE for a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATEs of a server going away or not there yet: administrator shutdown, crash
/// shutdown, "the database system is starting up", too many connections. Class 08,
/// connection exceptions, is matched by its prefix.
const SERVER_GONE: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// SQLSTATEs for values a client sent that PostgreSQL cannot store: string too long, numeric
/// or datetime out of range, character not in the encoding (NUL). Other data exceptions, such
/// as a failed cast, are bugs of the service and stay 500.
const INVALID_VALUES: [&str; 4] = ["22001", "22003", "22008", "22021"];

impl DbError {
    /// Classifies `err`, explaining known constraints with the messages in `constraints`
    /// (pairs of constraint name and message).
    pub fn classify(err: sqlx::Error, constraints: &[(&str, &'static str)]) -> Self {
        let classified = match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Some(Self::Unavailable),
            sqlx::Error::Database(db) => {
                let explained = db
                    .constraint()
                    .and_then(|name| constraints.iter().find(|(known, _)| *known == name))
                    .map(|(_, message)| *message);
                match (db.kind(), db.code().as_deref()) {
                    (ErrorKind::UniqueViolation, _) => {
                        Some(Self::Conflict(explained.unwrap_or("conflicts with an existing record")))
                    }
                    (ErrorKind::ForeignKeyViolation, _) => Some(Self::MissingReference(
                        explained.unwrap_or("refers to a record that does not exist"),
                    )),
                    (_, Some(QUERY_CANCELED)) => Some(Self::Timeout),
                    (_, Some(code)) if SERVER_GONE.contains(&code) || code.starts_with("08") => Some(Self::Unavailable),
                    (_, Some(code)) if INVALID_VALUES.contains(&code) => Some(Self::InvalidValue),
                    _ => None,
                }
            }
            _ => None,
        };
        classified.unwrap_or(Self::Other(err))
    }
}

impl DbError {
    /// Classifies the failure of a statement that writes no constrained column (a read, or a
    /// write that names no unique or foreign key): only outages and bad values are known.
    /// There is deliberately no `From<sqlx::Error>`, so that a write cannot skip its
    /// constraints' messages by accident.
    pub fn unconstrained(err: sqlx::Error) -> Self {
        Self::classify(err, &[])
    }
}

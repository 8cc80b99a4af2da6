//! Optimistic concurrency: a write applies only while the row still has the version the
//! client last read, so two clients editing at once cannot silently overwrite each other.

/// The outcome of a write guarded by an expected version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    /// The write happened; holds what the row became.
    Applied(T),
    /// No row has that id.
    NotFound,
    /// The row changed since the client read it; holds its version now.
    Stale { current: i32 },
}

impl<T> Versioned<T> {
    /// Decides the outcome of a guarded write from its result and, when it touched nothing,
    /// the row's version now (`None` when the row does not exist).
    pub fn from_parts(written: Option<T>, current: Option<i32>) -> Self {
        match (written, current) {
            (Some(row), _) => Self::Applied(row),
            (None, Some(current)) => Self::Stale { current },
            (None, None) => Self::NotFound,
        }
    }
}

//! Optimistic concurrency: a write names the versions of a record it was based on, and either
//! applies or finds the record gone or changed since. Records that take part carry a version
//! that every write increments.

/// The outcome of a write guarded by expected versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    /// The write happened; holds what the record became.
    Applied(T),
    /// No such record, or not one the caller may see.
    NotFound,
    /// The record changed since the client read it; holds its version now.
    Stale { current: i32 },
}

impl<T> Versioned<T> {
    /// The outcome of a guarded write that touched nothing, given the record's version now
    /// (`None` when it does not exist).
    pub fn missed(current: Option<i32>) -> Self {
        current.map_or(Self::NotFound, |current| Self::Stale { current })
    }
}

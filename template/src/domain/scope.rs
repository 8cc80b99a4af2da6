//! Object-level authorization: whose records a caller may see and change. Queries take a
//! [`Scope`] and filter by it themselves, so a handler that forgets a check still cannot reach
//! another account's rows.

use uuid::Uuid;

/// The permission to read and change records whoever owns them.
pub const RESOURCES_ANY: &str = "resources:any";

/// The records a query may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only those this account owns.
    OwnedBy(Uuid),
    /// Everyone's: administrators, through [`RESOURCES_ANY`].
    Any,
}

impl Scope {
    /// The owner to filter on, `None` for anyone's; queries bind it as a nullable parameter.
    pub fn owner(self) -> Option<Uuid> {
        match self {
            Self::OwnedBy(owner) => Some(owner),
            Self::Any => None,
        }
    }

    /// Whether a record of `owner` is in scope, for records read without a query (cached).
    pub fn includes(self, owner: Uuid) -> bool {
        self.owner().is_none_or(|only| only == owner)
    }
}

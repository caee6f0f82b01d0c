//! Project membership roles (product spec §1.1).

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A user's role in one project (`project_members.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectRole {
    Read,
    ReadWrite,
    Admin,
}

impl ProjectRole {
    /// Every role, weakest first.
    pub const ALL: [ProjectRole; 3] = [ProjectRole::Read, ProjectRole::ReadWrite, ProjectRole::Admin];

    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Read => "read",
            ProjectRole::ReadWrite => "read_write",
            ProjectRole::Admin => "admin",
        }
    }

    /// Whether a member with this role may start runs by labelling (product spec §1.4).
    pub fn may_trigger_runs(self) -> bool {
        matches!(self, ProjectRole::ReadWrite | ProjectRole::Admin)
    }
}

/// The text was not a project role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown project role {0:?} (expected read, read_write or admin)")]
pub struct UnknownProjectRole(pub String);

impl FromStr for ProjectRole {
    type Err = UnknownProjectRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectRole::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownProjectRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_writers_and_admins_trigger() {
        assert!(!ProjectRole::Read.may_trigger_runs());
        assert!(ProjectRole::ReadWrite.may_trigger_runs());
        assert!(ProjectRole::Admin.may_trigger_runs());
        assert_eq!("read_write".parse(), Ok(ProjectRole::ReadWrite));
        assert!("owner".parse::<ProjectRole>().is_err());
    }
}

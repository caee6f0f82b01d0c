//! Run statuses and the transitions between them (product spec §5.1).

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// `agent_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 5] = [RunStatus::Pending, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Canceled];

    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// Terminal statuses are final: nothing moves a run out of them.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }

    /// Whether `self -> to` is a legal transition: claim (`pending -> running`), job outcome
    /// (`running -> succeeded|failed`), and cancellation of any live run.
    pub fn can_move_to(self, to: RunStatus) -> bool {
        use RunStatus::*;
        matches!((self, to), (Pending, Running) | (Running, Succeeded) | (Running, Failed) | (Pending, Canceled) | (Running, Canceled))
    }
}

/// The text was not a run status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status {0:?}")]
pub struct UnknownRunStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownRunStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRunStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_status() -> impl Strategy<Value = RunStatus> {
        proptest::sample::select(RunStatus::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn terminal_is_final(from in any_status(), to in any_status()) {
            if from.is_terminal() {
                prop_assert!(!from.can_move_to(to));
            }
        }

        #[test]
        fn no_self_loops(s in any_status()) {
            prop_assert!(!s.can_move_to(s));
        }
    }

    #[test]
    fn the_main_path_is_legal() {
        assert!(RunStatus::Pending.can_move_to(RunStatus::Running));
        assert!(RunStatus::Running.can_move_to(RunStatus::Succeeded));
        assert!(RunStatus::Running.can_move_to(RunStatus::Canceled));
        assert!(!RunStatus::Succeeded.can_move_to(RunStatus::Running));
        assert!(!RunStatus::Running.can_move_to(RunStatus::Pending));
    }
}

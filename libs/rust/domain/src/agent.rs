//! System agents: the eight roles every installation starts with (product spec §3.3).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of the eight system agent roles seeded into `agents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemAgent {
    Dev,
    Reviewer,
    Qa,
    Pm,
    Sa,
    Em,
    Sre,
    Km,
}

impl SystemAgent {
    /// Every system agent, in the order the spec lists them.
    pub const ALL: [SystemAgent; 8] = [
        SystemAgent::Dev,
        SystemAgent::Reviewer,
        SystemAgent::Qa,
        SystemAgent::Pm,
        SystemAgent::Sa,
        SystemAgent::Em,
        SystemAgent::Sre,
        SystemAgent::Km,
    ];

    /// The stable key stored in `agents.agent_key`.
    pub fn key(self) -> &'static str {
        match self {
            SystemAgent::Dev => "dev",
            SystemAgent::Reviewer => "reviewer",
            SystemAgent::Qa => "qa",
            SystemAgent::Pm => "pm",
            SystemAgent::Sa => "sa",
            SystemAgent::Em => "em",
            SystemAgent::Sre => "sre",
            SystemAgent::Km => "km",
        }
    }

    /// Display name, also used as the git author name of the agent's commits.
    pub fn display_name(self) -> &'static str {
        match self {
            SystemAgent::Dev => "AI Developer",
            SystemAgent::Reviewer => "AI Reviewer",
            SystemAgent::Qa => "AI QA",
            SystemAgent::Pm => "AI Product Manager",
            SystemAgent::Sa => "AI Solution Architect",
            SystemAgent::Em => "AI Engineering Manager",
            SystemAgent::Sre => "AI SRE",
            SystemAgent::Km => "AI Knowledge Manager",
        }
    }
}

impl fmt::Display for SystemAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The text was not the key of a system agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent key {0:?}")]
pub struct UnknownAgent(pub String);

impl FromStr for SystemAgent {
    type Err = UnknownAgent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        SystemAgent::ALL.into_iter().find(|a| a.key() == key).ok_or_else(|| UnknownAgent(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_unique() {
        let mut keys: Vec<_> = SystemAgent::ALL.iter().map(|a| a.key()).collect();
        for a in SystemAgent::ALL {
            assert_eq!(a.key().parse::<SystemAgent>(), Ok(a));
        }
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn parse_is_trimmed_and_case_insensitive_but_rejects_unknown() {
        assert_eq!(" Dev ".parse::<SystemAgent>(), Ok(SystemAgent::Dev));
        assert!("developer".parse::<SystemAgent>().is_err());
    }
}

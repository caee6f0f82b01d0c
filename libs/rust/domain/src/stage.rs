//! The one stage vocabulary of the platform (product spec §2.1, §3.1). A [`Stage`] has a key
//! (`doc_audit`: the spelling of trigger kinds in the database, JSON and `services.yaml`) and a
//! slug (`doc-audit`: the spelling of labels and prompt seeds); a [`TriggerKind`] is a stage plus
//! whether it is the `:revise` variant, written `dev` or `dev_revise`. Nothing else in the code
//! spells stages or checks for `_revise`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A stage of the delivery flow, plus the platform's own `deploy` (push to `main`), which has no
/// label and runs no agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Intake,
    Vision,
    Prd,
    Arch,
    Design,
    Plan,
    Dev,
    Qa,
    Release,
    Postdeploy,
    Ops,
    DocAudit,
    SelfImprove,
    Rethink,
    AiRepair,
    Deploy,
}

/// The stages off the main path, in catalog order.
const EXTRAS: [Stage; 5] = [Stage::DocAudit, Stage::SelfImprove, Stage::Rethink, Stage::AiRepair, Stage::Deploy];

/// Every stage: the main path, then the extras.
fn all() -> impl Iterator<Item = Stage> {
    Stage::MAIN_PATH.into_iter().chain(EXTRAS)
}

impl Stage {
    /// The main path `intake → … → ops` (spec §3.1).
    pub const MAIN_PATH: [Stage; 11] = [
        Stage::Intake,
        Stage::Vision,
        Stage::Prd,
        Stage::Arch,
        Stage::Design,
        Stage::Plan,
        Stage::Dev,
        Stage::Qa,
        Stage::Release,
        Stage::Postdeploy,
        Stage::Ops,
    ];

    /// Stages that a `run:*` label triggers, in catalog order.
    pub fn labelled() -> impl Iterator<Item = Stage> {
        all().filter(|s| *s != Stage::Deploy)
    }

    /// Stages with a `:revise` variant.
    pub fn revisable_stages() -> impl Iterator<Item = Stage> {
        all().filter(|s| s.revisable())
    }

    /// The key: `dev`, `doc_audit`, `ai_repair`, `deploy`.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Intake => "intake",
            Stage::Vision => "vision",
            Stage::Prd => "prd",
            Stage::Arch => "arch",
            Stage::Design => "design",
            Stage::Plan => "plan",
            Stage::Dev => "dev",
            Stage::Qa => "qa",
            Stage::Release => "release",
            Stage::Postdeploy => "postdeploy",
            Stage::Ops => "ops",
            Stage::DocAudit => "doc_audit",
            Stage::SelfImprove => "self_improve",
            Stage::Rethink => "rethink",
            Stage::AiRepair => "ai_repair",
            Stage::Deploy => "deploy",
        }
    }

    /// The slug of labels and prompt seeds: `dev`, `doc-audit`, `ai-repair`.
    pub fn slug(self) -> &'static str {
        match self {
            Stage::DocAudit => "doc-audit",
            Stage::SelfImprove => "self-improve",
            Stage::AiRepair => "ai-repair",
            other => other.key(),
        }
    }

    /// Whether the stage has a `:revise` variant (all labelled stages but rethink and ai-repair).
    pub fn revisable(self) -> bool {
        !matches!(self, Stage::Rethink | Stage::AiRepair | Stage::Deploy)
    }

    /// Whether a `run:*` label triggers the stage (every stage but the platform's deploy).
    pub fn is_labelled(self) -> bool {
        self != Stage::Deploy
    }

    /// The default agent of the stage (spec §2.1).
    pub fn default_agent(self) -> &'static str {
        match self {
            Stage::Intake | Stage::Vision | Stage::Prd => "pm",
            Stage::Arch | Stage::Design => "sa",
            Stage::Plan | Stage::Release | Stage::Rethink => "em",
            Stage::DocAudit | Stage::SelfImprove => "km",
            Stage::Qa => "qa",
            Stage::Postdeploy | Stage::Ops | Stage::AiRepair => "sre",
            Stage::Dev | Stage::Deploy => "dev",
        }
    }

    /// The stage with this key or slug (`doc_audit` or `doc-audit`).
    pub fn parse(s: &str) -> Option<Stage> {
        all().find(|st| st.key() == s || st.slug() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Stage::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown stage {s:?}")))
    }
}

/// A trigger kind: a stage, as work or as its `:revise` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TriggerKind {
    pub stage: Stage,
    pub revise: bool,
}

/// The text was not a trigger kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger kind {0:?} (expected e.g. dev, dev_revise, intake, doc_audit, rethink, ai_repair)")]
pub struct UnknownTriggerKind(pub String);

impl TriggerKind {
    /// The platform's deploy run (push to `main`).
    pub const DEPLOY: TriggerKind = TriggerKind { stage: Stage::Deploy, revise: false };

    /// The work kind of a stage (`dev`).
    pub const fn work(stage: Stage) -> Self {
        Self { stage, revise: false }
    }

    /// The revise kind of a stage (`dev_revise`), if the stage has one.
    pub fn revise_of(stage: Stage) -> Option<Self> {
        stage.revisable().then_some(Self { stage, revise: true })
    }

    /// A kind from its spelling (`dev`, `dev_revise`, `doc_audit`; the slug `doc-audit` too).
    pub fn parse(s: &str) -> Result<Self, UnknownTriggerKind> {
        let unknown = || UnknownTriggerKind(s.to_string());
        let (base, revise) = match s.strip_suffix("_revise") {
            Some(base) => (base, true),
            None => (s, false),
        };
        let stage = Stage::parse(base).ok_or_else(unknown)?;
        if revise && !stage.revisable() {
            return Err(unknown());
        }
        Ok(Self { stage, revise })
    }

    /// A kind as the spec reads stored values: unknown or empty normalises to `dev` (§2.1).
    pub fn parse_or_dev(s: &str) -> Self {
        Self::parse(s.trim()).unwrap_or(Self::work(Stage::Dev))
    }

    /// Whether a `run:*` label can name the kind (every kind but `deploy`).
    pub fn is_labelled(self) -> bool {
        self.stage.is_labelled()
    }
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stage.key())?;
        if self.revise {
            f.write_str("_revise")?;
        }
        Ok(())
    }
}

impl FromStr for TriggerKind {
    type Err = UnknownTriggerKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for TriggerKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TriggerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TriggerKind::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether `kind` is a trigger kind a label can start (`dev`, `dev_revise`, `rethink`, ...), as
/// `services.yaml spec.webhookRuntime.triggerModes` keys must be.
pub fn is_trigger_kind(kind: &str) -> bool {
    kind == kind.trim() && TriggerKind::parse(kind).is_ok_and(|k| k.is_labelled() && !kind.contains('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_kinds() {
        for k in ["dev", "dev_revise", "self_improve_revise", "rethink", "ai_repair", "doc_audit"] {
            assert!(is_trigger_kind(k), "{k}");
        }
        for k in ["rethink_revise", "ai_repair_revise", "debug", "", "dev-revise", "deploy", "doc-audit"] {
            assert!(!is_trigger_kind(k), "{k}");
        }
    }

    #[test]
    fn kinds_round_trip_through_their_spelling() {
        for stage in Stage::labelled().chain([Stage::Deploy]) {
            let work = TriggerKind::work(stage);
            assert_eq!(TriggerKind::parse(&work.to_string()), Ok(work));
            if let Some(rev) = TriggerKind::revise_of(stage) {
                assert_eq!(rev.to_string(), format!("{}_revise", stage.key()));
                assert_eq!(TriggerKind::parse(&rev.to_string()), Ok(rev));
            }
            assert_eq!(Stage::parse(stage.slug()), Some(stage));
            assert_eq!(serde_json::to_value(work).unwrap_or_default(), serde_json::json!(work.to_string()));
        }
        assert_eq!(TriggerKind::parse("doc-audit"), Ok(TriggerKind::work(Stage::DocAudit)));
        assert!(TriggerKind::revise_of(Stage::Rethink).is_none());
        assert_eq!(TriggerKind::parse_or_dev("run:debug"), TriggerKind::work(Stage::Dev));
        assert!(serde_json::from_value::<TriggerKind>(serde_json::json!("dev-ops")).is_err());
    }

    #[test]
    fn stages_have_their_default_agents() {
        assert_eq!(Stage::Design.default_agent(), "sa");
        assert_eq!(Stage::Qa.default_agent(), "qa");
        assert_eq!(Stage::DocAudit.default_agent(), "km");
        assert_eq!(Stage::labelled().count(), 15);
        assert_eq!(Stage::revisable_stages().count(), 13);
    }
}

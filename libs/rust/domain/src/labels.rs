//! The label taxonomy (product spec §2): `run:*` triggers and their kinds and agents, the
//! non-trigger classes (`state:*`, `need:*`), `mode:discussion`, model and reasoning labels.
//! Names are configurable; matching is trim + lowercase.

use crate::stage::{Stage, TriggerKind};
use std::collections::BTreeMap;

/// Normalises a label for matching.
pub fn norm(label: &str) -> String {
    label.trim().to_lowercase()
}

/// One stage trigger: the kind a `run:*` label stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLabel {
    /// Trigger kind, e.g. `dev`, `dev_revise`, `doc_audit`, `ai_repair`.
    pub kind: TriggerKind,
}

impl RunLabel {
    /// The stage the kind belongs to (`dev` for `dev_revise`).
    pub fn stage(&self) -> Stage {
        self.kind.stage
    }

    /// Whether this is a `:revise` label.
    pub fn revise(&self) -> bool {
        self.kind.revise
    }
}

/// The configurable label names.
#[derive(Debug, Clone)]
pub struct LabelCatalog {
    /// Normalised label name -> trigger.
    run: BTreeMap<String, RunLabel>,
    /// Stage -> its `:revise` label (display form).
    revise_by_stage: BTreeMap<Stage, String>,
    /// Stage -> its work label (display form).
    work_by_stage: BTreeMap<Stage, String>,
    pub mode_discussion: String,
    pub need_reviewer: String,
    pub need_input: String,
    pub state_in_review: String,
    state_prefix: String,
    need_prefix: String,
    /// Normalised label -> model id.
    models: BTreeMap<String, String>,
    /// Normalised label -> reasoning effort.
    reasoning: BTreeMap<String, String>,
}

/// Default model labels (label -> model id).
pub const MODEL_LABELS: [(&str, &str); 7] = [
    ("[ai-model-gpt-5.4]", "gpt-5.4"),
    ("[ai-model-gpt-5.3-codex]", "gpt-5.3-codex"),
    ("[ai-model-gpt-5.3-codex-spark]", "gpt-5.3-codex-spark"),
    ("[ai-model-gpt-5.2-codex]", "gpt-5.2-codex"),
    ("[ai-model-gpt-5.2]", "gpt-5.2"),
    ("[ai-model-gpt-5.1-codex-max]", "gpt-5.1-codex-max"),
    ("[ai-model-gpt-5.1-codex-mini]", "gpt-5.1-codex-mini"),
];

/// Default reasoning labels (label -> effort).
pub const REASONING_LABELS: [(&str, &str); 4] = [
    ("[ai-reasoning-low]", "low"),
    ("[ai-reasoning-medium]", "medium"),
    ("[ai-reasoning-high]", "high"),
    ("[ai-reasoning-extra-high]", "xhigh"),
];

impl Default for LabelCatalog {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new())
    }
}

/// The setting name that renames a label, e.g. `RUN_DEV_LABEL`, `RUN_DOC_AUDIT_REVISE_LABEL`.
pub fn setting_for_run_label(kind: TriggerKind) -> String {
    format!("RUN_{}{}_LABEL", kind.stage.key().to_uppercase(), if kind.revise { "_REVISE" } else { "" })
}

/// Every setting that renames a label (without the `CODEXK8S_` prefix).
pub fn setting_names() -> Vec<String> {
    let kinds = Stage::labelled().flat_map(|s| [Some(TriggerKind::work(s)), TriggerKind::revise_of(s)]).flatten();
    let mut keys: Vec<String> = kinds.map(setting_for_run_label).collect();
    keys.extend(["MODE_DISCUSSION_LABEL", "NEED_REVIEWER_LABEL", "NEED_INPUT_LABEL", "STATE_IN_REVIEW_LABEL"].map(String::from));
    keys
}

impl LabelCatalog {
    /// The default names with some renamed; `overrides` maps setting names (without the
    /// `CODEXK8S_` prefix: `RUN_DEV_LABEL`, `MODE_DISCUSSION_LABEL`, `NEED_REVIEWER_LABEL`,
    /// `NEED_INPUT_LABEL`, `STATE_IN_REVIEW_LABEL`, `RUN_RETHINK_LABEL`, `RUN_AI_REPAIR_LABEL`)
    /// to label names.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Self {
        let pick =
            |key: &str, default: String| overrides.get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).unwrap_or(default);
        let mut run = BTreeMap::new();
        let mut revise_by_stage = BTreeMap::new();
        let mut work_by_stage = BTreeMap::new();
        for stage in Stage::labelled() {
            let work = TriggerKind::work(stage);
            let label = pick(&setting_for_run_label(work), format!("run:{}", stage.slug()));
            run.insert(norm(&label), RunLabel { kind: work });
            work_by_stage.insert(stage, label);
            if let Some(revise) = TriggerKind::revise_of(stage) {
                let label = pick(&setting_for_run_label(revise), format!("run:{}:revise", stage.slug()));
                run.insert(norm(&label), RunLabel { kind: revise });
                revise_by_stage.insert(stage, label);
            }
        }
        Self {
            run,
            revise_by_stage,
            work_by_stage,
            mode_discussion: pick("MODE_DISCUSSION_LABEL", "mode:discussion".into()),
            need_reviewer: pick("NEED_REVIEWER_LABEL", "need:reviewer".into()),
            need_input: pick("NEED_INPUT_LABEL", "need:input".into()),
            state_in_review: pick("STATE_IN_REVIEW_LABEL", "state:in-review".into()),
            state_prefix: "state:".into(),
            need_prefix: "need:".into(),
            models: MODEL_LABELS.iter().map(|(l, m)| (norm(l), m.to_string())).collect(),
            reasoning: REASONING_LABELS.iter().map(|(l, r)| (norm(l), r.to_string())).collect(),
        }
    }

    /// The trigger a label stands for, if it is a `run:*` label.
    pub fn run_label(&self, label: &str) -> Option<&RunLabel> {
        self.run.get(&norm(label))
    }

    /// The `:revise` label of a stage (none for rethink and ai-repair).
    pub fn revise_label(&self, stage: Stage) -> Option<&str> {
        self.revise_by_stage.get(&stage).map(String::as_str)
    }

    /// The work label of a stage.
    pub fn work_label(&self, stage: Stage) -> Option<&str> {
        self.work_by_stage.get(&stage).map(String::as_str)
    }

    /// Every `:revise` label, for "use one of" hints.
    pub fn revise_labels(&self) -> Vec<String> {
        let mut by_key: Vec<(&str, &String)> = self.revise_by_stage.iter().map(|(s, l)| (s.key(), l)).collect();
        by_key.sort();
        by_key.into_iter().map(|(_, l)| l.clone()).collect()
    }

    /// Whether `label` is `mode:discussion`.
    pub fn is_discussion(&self, label: &str) -> bool {
        norm(label) == norm(&self.mode_discussion)
    }

    /// Whether `label` is `need:reviewer`.
    pub fn is_need_reviewer(&self, label: &str) -> bool {
        norm(label) == norm(&self.need_reviewer)
    }

    /// Whether the label belongs to a class that never triggers (`state:*`, `need:*`, model,
    /// reasoning).
    pub fn is_non_trigger_class(&self, label: &str) -> bool {
        let n = norm(label);
        n.starts_with(&self.state_prefix)
            || n.starts_with(&self.need_prefix)
            || self.models.contains_key(&n)
            || self.reasoning.contains_key(&n)
    }

    /// The `run:*` labels among `labels`, in their given order, de-duplicated.
    pub fn run_labels<'a>(&self, labels: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in labels {
            if self.run_label(l).is_some() && !out.iter().any(|o| norm(o) == norm(l)) {
                out.push(l.trim().to_string());
            }
        }
        out
    }

    /// Model id of a model label.
    pub fn model(&self, label: &str) -> Option<&str> {
        self.models.get(&norm(label)).map(String::as_str)
    }

    /// Reasoning effort of a reasoning label.
    pub fn reasoning(&self, label: &str) -> Option<&str> {
        self.reasoning.get(&norm(label)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_map_to_kinds() {
        let c = LabelCatalog::default();
        let kind = |l: &str| c.run_label(l).unwrap().kind.to_string();
        assert_eq!(kind("run:dev"), "dev");
        assert_eq!(kind(" RUN:Dev:Revise "), "dev_revise");
        assert_eq!(kind("run:doc-audit"), "doc_audit");
        assert_eq!(kind("run:self-improve:revise"), "self_improve_revise");
        assert_eq!(kind("run:ai-repair"), "ai_repair");
        assert!(c.run_label("run:rethink:revise").is_none());
        assert!(c.run_label("run:debug").is_none());
        assert!(c.is_non_trigger_class("state:in-review") && c.is_non_trigger_class("need:input"));
        assert_eq!(c.model("[ai-model-gpt-5.2]"), Some("gpt-5.2"));
        assert_eq!(c.reasoning("[AI-reasoning-extra-high]"), Some("xhigh"));
    }

    #[test]
    fn names_are_configurable() {
        let mut o = BTreeMap::new();
        o.insert("RUN_DEV_LABEL".to_string(), "ai:build".to_string());
        o.insert("MODE_DISCUSSION_LABEL".to_string(), "ai:talk".to_string());
        let c = LabelCatalog::with_overrides(&o);
        assert_eq!(c.run_label("ai:build").unwrap().kind, TriggerKind::work(Stage::Dev));
        assert!(c.run_label("run:dev").is_none());
        assert!(c.is_discussion("AI:Talk"));
        assert_eq!(c.work_label(Stage::Dev), Some("ai:build"));
    }
}

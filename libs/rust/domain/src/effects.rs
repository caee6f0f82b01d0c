//! Owed GitHub side effects in the typed form they are stored in (`github_side_effects`): the
//! decisions of ingest (comments, labels, reactions, the status comment's first phase) and the
//! status reports of the worker and the agent runner. Stored as JSON tagged by `kind` (the same
//! value as the row's `kind` column) and decoded back into [`OwedEffect`], so the executor
//! matches on the enum and a misspelt field fails loudly instead of being dropped.

use crate::comments::{Locale, Phase, StatusState};
use crate::forge::ReactionContent;
use crate::policy::{CommentTemplate, Effect, ReactionTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a reaction is put on (the issue or pull request number is the row's target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "subject", rename_all = "snake_case")]
pub enum ReactionSubject {
    /// The issue or pull request itself.
    Issue,
    /// A comment on it.
    IssueComment { comment_id: i64 },
}

/// One side effect owed on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwedEffect {
    /// A comment rendered from a template in the run's locale.
    IssueComment {
        #[serde(flatten)]
        template: CommentTemplate,
        /// Rows written before the locale was stored read as the platform's default, `ru`.
        #[serde(default)]
        locale: Locale,
    },
    /// Labels to add.
    AddLabels { labels: Vec<String> },
    /// A label to remove (a next-step transition moves the stage label).
    RemoveLabel { label: String },
    /// An emoji reaction.
    Reaction {
        #[serde(flatten)]
        subject: ReactionSubject,
        content: ReactionContent,
    },
    /// A report merged into the run's one status comment.
    StatusComment {
        phase: Phase,
        #[serde(default)]
        locale: Locale,
        /// The facts the report carries (empty for the first, `created`, report).
        #[serde(default)]
        state: Box<StatusState>,
    },
}

/// A stored effect this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("owed side effect of kind {kind:?} cannot be read: {message}")]
pub struct EffectDecodeError {
    pub kind: String,
    pub message: String,
}

impl OwedEffect {
    /// The `kind` column's value.
    pub fn kind(&self) -> &'static str {
        match self {
            OwedEffect::IssueComment { .. } => "issue_comment",
            OwedEffect::AddLabels { .. } => "add_labels",
            OwedEffect::RemoveLabel { .. } => "remove_label",
            OwedEffect::Reaction { .. } => "reaction",
            OwedEffect::StatusComment { .. } => "status_comment",
        }
    }

    /// A policy decision's effect as owed on its target number, with comments in `locale`.
    pub fn from_decision(effect: &Effect, locale: Locale) -> (i64, OwedEffect) {
        match effect {
            Effect::Comment { target, template } => (*target, OwedEffect::IssueComment { template: template.clone(), locale }),
            Effect::AddLabel { target, label } => (*target, OwedEffect::AddLabels { labels: vec![label.clone()] }),
            Effect::Reaction { target, content } => match target {
                ReactionTarget::Issue(n) => (*n, OwedEffect::Reaction { subject: ReactionSubject::Issue, content: *content }),
                ReactionTarget::IssueComment { issue, comment } => {
                    (*issue, OwedEffect::Reaction { subject: ReactionSubject::IssueComment { comment_id: *comment }, content: *content })
                }
            },
            Effect::StatusComment { target } => {
                (*target, OwedEffect::StatusComment { phase: Phase::Created, locale, state: Box::default() })
            }
        }
    }

    /// A status report merged into the run's status comment.
    pub fn status_report(state: StatusState, locale: Locale) -> OwedEffect {
        OwedEffect::StatusComment { phase: state.phase.unwrap_or(Phase::Created), locale, state: Box::new(state) }
    }

    /// The stored payload (tagged with `kind`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a stored row back. Rows written before the payload carried its `kind` get it from
    /// the row's column.
    pub fn decode(kind: &str, payload: &Value) -> Result<OwedEffect, EffectDecodeError> {
        let mut v = payload.clone();
        if let Some(o) = v.as_object_mut() {
            o.entry("kind").or_insert_with(|| Value::String(kind.to_string()));
        }
        let effect: OwedEffect =
            serde_json::from_value(v).map_err(|e| EffectDecodeError { kind: kind.to_string(), message: e.to_string() })?;
        if effect.kind() != kind {
            return Err(EffectDecodeError { kind: kind.to_string(), message: format!("the payload is a {:?} effect", effect.kind()) });
        }
        Ok(effect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_decision_effect_is_stored_and_read_back_as_itself() {
        let decided = [
            Effect::Comment { target: 3, template: CommentTemplate::TriggerConflict { labels: vec!["run:dev".into(), "run:qa".into()] } },
            Effect::Comment {
                target: 3,
                template: CommentTemplate::TriggerWarning { reason: "sender_not_allowed".into(), suggested: vec!["run:dev".into()] },
            },
            Effect::AddLabel { target: 4, label: "need:input".into() },
            Effect::Reaction { target: ReactionTarget::Issue(5), content: ReactionContent::Eyes },
            Effect::Reaction { target: ReactionTarget::IssueComment { issue: 5, comment: 99 }, content: ReactionContent::Eyes },
            Effect::StatusComment { target: 6 },
        ];
        for e in &decided {
            let (_, owed) = OwedEffect::from_decision(e, Locale::En);
            let stored = owed.to_value();
            assert_eq!(stored["kind"], owed.kind());
            assert_eq!(OwedEffect::decode(owed.kind(), &stored), Ok(owed.clone()), "{stored}");
        }
    }

    #[test]
    fn stored_payloads_keep_their_documented_fields() {
        let (_, c) = OwedEffect::from_decision(
            &Effect::Comment {
                target: 3,
                template: CommentTemplate::TriggerWarning { reason: "sender_not_allowed".into(), suggested: vec!["run:dev".into()] },
            },
            Locale::Ru,
        );
        assert_eq!(
            c.to_value(),
            json!({"kind": "issue_comment", "template": "trigger_warning", "reason": "sender_not_allowed", "suggested_labels": ["run:dev"], "locale": "ru"})
        );
        let (_, r) = OwedEffect::from_decision(
            &Effect::Reaction { target: ReactionTarget::IssueComment { issue: 5, comment: 99 }, content: ReactionContent::Eyes },
            Locale::Ru,
        );
        assert_eq!(r.to_value(), json!({"kind": "reaction", "subject": "issue_comment", "comment_id": 99, "content": "eyes"}));
    }

    #[test]
    fn rows_stored_before_the_tag_are_read_through_their_column() {
        let old = json!({"template": "trigger_conflict", "labels": ["run:plan", "run:dev"], "locale": "ru"});
        assert!(matches!(OwedEffect::decode("issue_comment", &old), Ok(OwedEffect::IssueComment { locale: Locale::Ru, .. })));
        let created = json!({"phase": "created", "locale": "ru"});
        assert!(matches!(OwedEffect::decode("status_comment", &created), Ok(OwedEffect::StatusComment { phase: Phase::Created, .. })));
        let report = json!({"phase": "finished", "locale": "en", "state": {"phase": "finished", "run_status": "failed"}});
        let Ok(OwedEffect::StatusComment { state, .. }) = OwedEffect::decode("status_comment", &report) else { panic!("not a report") };
        assert_eq!(state.run_status, Some(crate::run::RunStatus::Failed));
    }

    #[test]
    fn unknown_kinds_and_misspelt_fields_are_refused() {
        assert!(OwedEffect::decode("add_label", &json!({"label": "x"})).is_err());
        assert_eq!(OwedEffect::decode("remove_label", &json!({"label": "x"})), Ok(OwedEffect::RemoveLabel { label: "x".into() }));
        assert!(OwedEffect::decode("add_labels", &json!({"label": ["x"]})).is_err(), "a misspelt field is not dropped");
        assert!(OwedEffect::decode("reaction", &json!({"subject": "issue", "content": "party"})).is_err());
        let e = OwedEffect::decode("add_labels", &json!({"kind": "reaction", "subject": "issue", "content": "eyes"})).unwrap_err();
        assert!(e.message.contains("reaction"), "{e}");
    }
}

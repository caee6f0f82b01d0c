//! Model and reasoning resolution per run (product spec §2.3): the first level that carries a
//! label of the group decides; two different labels of one group at that level fail the run.

use crate::labels::LabelCatalog;

/// Labels visible to one run, by level.
#[derive(Debug, Clone, Default)]
pub struct ProfileLabels {
    pub pull_request: Vec<String>,
    pub issue: Vec<String>,
    /// Labels of the latest earlier run of the same repository/issue/PR.
    pub last_run_issue: Vec<String>,
    pub last_run_pull_request: Vec<String>,
}

/// A resolved value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: String,
    /// `pull_request_label`, `issue_label`, `last_run_context` or `agent_default`.
    pub source: &'static str,
}

/// The run cannot start: a precondition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("conflicting model labels on the {level}: {labels:?}; keep one")]
    DuplicateModel { level: &'static str, labels: Vec<String> },
    #[error("conflicting reasoning labels on the {level}: {labels:?}; keep one")]
    DuplicateReasoning { level: &'static str, labels: Vec<String> },
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<&'a str>;

fn pick(levels: &[(&'static str, &'static str, &[String])], lookup: Lookup<'_>) -> Result<Option<Resolved>, (&'static str, Vec<String>)> {
    for (level, source, labels) in levels {
        let mut found: Vec<(String, String)> = labels.iter().filter_map(|l| lookup(l).map(|v| (l.clone(), v.to_string()))).collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        found.dedup_by(|a, b| a.1 == b.1);
        match found.len() {
            0 => continue,
            1 => return Ok(Some(Resolved { value: found.remove(0).1, source })),
            _ => return Err((level, found.into_iter().map(|f| f.0).collect())),
        }
    }
    Ok(None)
}

/// Resolves (model, reasoning). Review-driven revise runs look at the issue before the PR.
pub fn resolve(
    catalog: &LabelCatalog,
    labels: &ProfileLabels,
    review_driven: bool,
    default_model: &str,
    default_reasoning: &str,
) -> Result<(Resolved, Resolved), ProfileError> {
    let pr = ("pull request", "pull_request_label", labels.pull_request.as_slice());
    let issue = ("issue", "issue_label", labels.issue.as_slice());
    let hist_issue = ("previous run's issue", "last_run_context", labels.last_run_issue.as_slice());
    let hist_pr = ("previous run's pull request", "last_run_context", labels.last_run_pull_request.as_slice());
    let levels = if review_driven { [issue, pr, hist_issue, hist_pr] } else { [pr, issue, hist_issue, hist_pr] };
    let model = pick(&levels, &|l| catalog.model(l))
        .map_err(|(level, labels)| ProfileError::DuplicateModel { level, labels })?
        .unwrap_or(Resolved { value: default_model.to_string(), source: "agent_default" });
    let reasoning = pick(&levels, &|l| catalog.reasoning(l))
        .map_err(|(level, labels)| ProfileError::DuplicateReasoning { level, labels })?
        .unwrap_or(Resolved { value: default_reasoning.to_string(), source: "agent_default" });
    Ok((model, reasoning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_level_with_a_label_decides() {
        let c = LabelCatalog::default();
        let labels = ProfileLabels {
            pull_request: v(&["[ai-model-gpt-5.2]"]),
            issue: v(&["[ai-model-gpt-5.4]", "[ai-reasoning-low]"]),
            ..Default::default()
        };
        let (m, r) = resolve(&c, &labels, false, "gpt-5.4", "high").unwrap();
        assert_eq!((m.value.as_str(), m.source), ("gpt-5.2", "pull_request_label"));
        assert_eq!((r.value.as_str(), r.source), ("low", "issue_label"));
        let (m, _) = resolve(&c, &labels, true, "gpt-5.4", "high").unwrap();
        assert_eq!((m.value.as_str(), m.source), ("gpt-5.4", "issue_label"), "review-driven revise reads the issue first");
        let (m, r) = resolve(
            &c,
            &ProfileLabels { last_run_issue: v(&["[ai-reasoning-extra-high]"]), ..Default::default() },
            false,
            "gpt-5.4",
            "high",
        )
        .unwrap();
        assert_eq!((m.value.as_str(), m.source, r.value.as_str(), r.source), ("gpt-5.4", "agent_default", "xhigh", "last_run_context"));
    }

    #[test]
    fn two_labels_of_one_group_at_the_deciding_level_fail() {
        let c = LabelCatalog::default();
        let labels = ProfileLabels { issue: v(&["[ai-model-gpt-5.4]", "[ai-model-gpt-5.2]"]), ..Default::default() };
        assert!(matches!(resolve(&c, &labels, false, "m", "r"), Err(ProfileError::DuplicateModel { level: "issue", .. })));
        // A deciding level above hides the conflict below.
        let labels = ProfileLabels { pull_request: v(&["[ai-model-gpt-5.2]"]), ..labels };
        assert!(resolve(&c, &labels, false, "m", "r").is_ok());
        let labels = ProfileLabels { pull_request: v(&["[ai-reasoning-low]", "[ai-reasoning-high]"]), ..Default::default() };
        assert!(matches!(resolve(&c, &labels, false, "m", "r"), Err(ProfileError::DuplicateReasoning { .. })));
    }
}

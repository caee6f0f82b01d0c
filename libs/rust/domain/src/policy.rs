//! The trigger policy (product spec §1.4, §2, §4.2): from one delivery and what the platform
//! already knows about the repository, sender and history, decide whether a run starts, which
//! one, what GitHub side effects are owed, and which cleanups are requested. Pure: no I/O.

use crate::forge::ReactionContent;
use crate::labels::{LabelCatalog, norm};
use crate::project::ProjectRole;
use crate::stage::{Stage, TriggerKind};
use crate::webhook::Event;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// How a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeMode {
    FullEnv,
    CodeOnly,
}

impl RuntimeMode {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeMode::FullEnv => "full-env",
            RuntimeMode::CodeOnly => "code-only",
        }
    }

    /// The mode with this wire value.
    pub fn parse(s: &str) -> Option<Self> {
        [RuntimeMode::FullEnv, RuntimeMode::CodeOnly].into_iter().find(|m| m.as_str() == s)
    }
}

/// Why a run got its runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeSource {
    /// `services.yaml spec.webhookRuntime`.
    ServicesYaml,
    /// Discussion runs are always code-only.
    Discussion,
    /// The platform's own push to `main`.
    PushMain,
    /// Late-stage routing (spec §2.6).
    Routing,
}

/// What a run's pod may do in the cluster (spec §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessProfile {
    /// The dev/qa/release lineage until merge.
    Candidate,
    /// postdeploy and ops in production.
    ProductionReadonly,
}

impl AccessProfile {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessProfile::Candidate => "candidate",
            AccessProfile::ProductionReadonly => "production-readonly",
        }
    }

    /// The profile with this wire value.
    pub fn parse(s: &str) -> Option<Self> {
        [AccessProfile::Candidate, AccessProfile::ProductionReadonly].into_iter().find(|p| p.as_str() == s)
    }

    /// The service account of a run pod with this profile.
    pub fn service_account(self) -> &'static str {
        match self {
            AccessProfile::Candidate => "codex-runner",
            AccessProfile::ProductionReadonly => "codex-runner-readonly",
        }
    }
}

/// `services.yaml spec.webhookRuntime`, reduced to what ingest needs.
#[derive(Debug, Clone)]
pub struct RuntimePolicy {
    pub default_mode: RuntimeMode,
    pub trigger_modes: BTreeMap<TriggerKind, RuntimeMode>,
}

impl Default for RuntimePolicy {
    fn default() -> Self {
        Self { default_mode: RuntimeMode::FullEnv, trigger_modes: BTreeMap::new() }
    }
}

impl RuntimePolicy {
    /// Mode of a trigger kind.
    pub fn mode(&self, kind: TriggerKind) -> RuntimeMode {
        self.trigger_modes.get(&kind).copied().unwrap_or(self.default_mode)
    }
}

/// Settings of the policy.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub labels: LabelCatalog,
    /// The bot account's login: its comments never trigger discussion runs.
    pub bot_login: String,
    pub runtime: RuntimePolicy,
    /// Namespace of the platform in production (push deploys, postdeploy/ops, ai-repair).
    pub platform_namespace: String,
}

/// The registered repository a delivery is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub project_id: Uuid,
    pub repository_id: Uuid,
    pub default_ref: String,
    /// The repository of the platform itself (push to main deploys it).
    pub platform: bool,
}

/// What the platform knows about the sender (product spec §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderStanding {
    /// No `users` row has this GitHub login.
    Unknown,
    Owner,
    PlatformAdmin,
    Member(ProjectRole),
    /// A known user without membership in the repository's project.
    NotMember,
}

/// The candidate lineage of an issue: its latest run with an open PR (product spec §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub pr_number: i64,
    pub build_ref: String,
    pub namespace: Option<String>,
}

/// What earlier runs tell about the issue or pull request of the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// A discussion run of this issue is pending or running.
    pub live_discussion_run: bool,
    /// Distinct issue numbers of earlier runs of this pull request.
    pub pr_linked_issues: Vec<i64>,
    /// Stage of the latest earlier run touching this pull request with a stage kind.
    pub pr_last_run_stage: Option<Stage>,
    /// Labels of the linked issue as stored with its latest run.
    pub linked_issue_labels: Option<Vec<String>>,
    /// Stage of the latest run of the linked issue.
    pub linked_issue_last_stage: Option<Stage>,
    /// Lineage of the issue for late stages.
    pub candidate: Option<Candidate>,
}

/// Why a delivery starts no run (product spec §4.4 and §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    Ping,
    IssueEventNotTriggerLabel,
    IssueTriggerLabelConflict,
    DiscussionModeTriggerLabelConflict,
    DiscussionRunAlreadyLive,
    RepositoryNotBoundForIssueLabel,
    RepositoryNotBoundForPullRequest,
    RepositoryNotBoundForPushMain,
    PullRequestReviewStageLabelConflict,
    PullRequestReviewStageNotResolved,
    PullRequestReviewStageAmbiguous,
    IssueTriggerCandidateNotFound,
    IssueCommentNotDiscussion,
    IssueCommentFromBot,
    SenderLoginMissing,
    SenderTypeNotPermitted(String),
    SenderNotAllowed,
    SenderNotProjectMember,
    SenderRoleReadNotPermitted,
}

impl IgnoreReason {
    /// The stable reason code.
    pub fn code(&self) -> String {
        match self {
            IgnoreReason::Ping => "ping".into(),
            IgnoreReason::IssueEventNotTriggerLabel => "issue_event_not_trigger_label".into(),
            IgnoreReason::IssueTriggerLabelConflict => "issue_trigger_label_conflict".into(),
            IgnoreReason::DiscussionModeTriggerLabelConflict => "discussion_mode_trigger_label_conflict".into(),
            IgnoreReason::DiscussionRunAlreadyLive => "discussion_run_already_live".into(),
            IgnoreReason::RepositoryNotBoundForIssueLabel => "repository_not_bound_for_issue_label".into(),
            IgnoreReason::RepositoryNotBoundForPullRequest => "repository_not_bound_for_pull_request".into(),
            IgnoreReason::RepositoryNotBoundForPushMain => "repository_not_bound_for_push_main".into(),
            IgnoreReason::PullRequestReviewStageLabelConflict => "pull_request_review_stage_label_conflict".into(),
            IgnoreReason::PullRequestReviewStageNotResolved => "pull_request_review_stage_not_resolved".into(),
            IgnoreReason::PullRequestReviewStageAmbiguous => "pull_request_review_stage_ambiguous".into(),
            IgnoreReason::IssueTriggerCandidateNotFound => "issue_trigger_candidate_not_found".into(),
            IgnoreReason::IssueCommentNotDiscussion => "issue_comment_not_discussion".into(),
            IgnoreReason::IssueCommentFromBot => "issue_comment_from_bot".into(),
            IgnoreReason::SenderLoginMissing => "sender_login_missing".into(),
            IgnoreReason::SenderTypeNotPermitted(t) => format!("sender_type_{}_not_permitted", norm(t)),
            IgnoreReason::SenderNotAllowed => "sender_not_allowed".into(),
            IgnoreReason::SenderNotProjectMember => "sender_not_project_member".into(),
            IgnoreReason::SenderRoleReadNotPermitted => "sender_role_read_not_permitted".into(),
        }
    }

    /// Whether the repository should hear about it (warning comment + runtime-error entry).
    fn warns(&self) -> bool {
        matches!(
            self,
            IgnoreReason::RepositoryNotBoundForIssueLabel
                | IgnoreReason::PullRequestReviewStageLabelConflict
                | IgnoreReason::PullRequestReviewStageNotResolved
                | IgnoreReason::PullRequestReviewStageAmbiguous
                | IgnoreReason::IssueTriggerCandidateNotFound
                | IgnoreReason::SenderLoginMissing
                | IgnoreReason::SenderTypeNotPermitted(_)
                | IgnoreReason::SenderNotAllowed
                | IgnoreReason::SenderNotProjectMember
                | IgnoreReason::SenderRoleReadNotPermitted
        )
    }

    /// Whether the platform also adds `need:input` (the hard stops that need a human).
    fn needs_input(&self) -> bool {
        matches!(
            self,
            IgnoreReason::PullRequestReviewStageLabelConflict
                | IgnoreReason::PullRequestReviewStageNotResolved
                | IgnoreReason::PullRequestReviewStageAmbiguous
                | IgnoreReason::IssueTriggerCandidateNotFound
        )
    }
}

/// Where a run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSource {
    IssueLabel,
    IssueComment,
    PullRequestLabel,
    PullRequestReview,
    PushMain,
}

impl TriggerSource {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::IssueLabel => "issue_label",
            TriggerSource::IssueComment => "issue_comment",
            TriggerSource::PullRequestLabel => "pull_request_label",
            TriggerSource::PullRequestReview => "pull_request_review",
            TriggerSource::PushMain => "push_main",
        }
    }
}

/// The runtime a run gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimePlan {
    pub mode: RuntimeMode,
    pub source: RuntimeSource,
    /// `ai` or `production`.
    pub target_env: Option<String>,
    pub namespace: Option<String>,
    /// A commit SHA or a branch name still to be resolved to a SHA at launch.
    pub build_ref: Option<String>,
    pub deploy_only: bool,
    pub access_profile: Option<AccessProfile>,
}

/// The run a delivery starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub correlation_id: String,
    /// `None` for deploy-only runs, which execute no agent.
    pub agent_key: Option<String>,
    pub source: TriggerSource,
    pub label: Option<String>,
    pub kind: TriggerKind,
    pub discussion: bool,
    pub issue_number: Option<i64>,
    pub pr_number: Option<i64>,
    /// Issue or PR number where the status comment goes (`None`: no comment, e.g. deploys).
    pub comment_target: Option<i64>,
    pub runtime: RuntimePlan,
}

/// Templates of comments the platform owes (rendered by the side-effect executor). Stored with
/// the owed effect, tagged by `template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum CommentTemplate {
    /// "Trigger label conflict": keep one of `labels`, then re-add it.
    TriggerConflict { labels: Vec<String> },
    /// A warning for an ignore reason, with labels to try instead.
    TriggerWarning {
        reason: String,
        #[serde(rename = "suggested_labels")]
        suggested: Vec<String>,
    },
}

/// What to react to with an emoji.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactionTarget {
    Issue(i64),
    /// A comment on an issue.
    IssueComment {
        issue: i64,
        comment: i64,
    },
}

/// A GitHub side effect owed after the ingest commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Comment {
        target: i64,
        template: CommentTemplate,
    },
    AddLabel {
        target: i64,
        label: String,
    },
    Reaction {
        target: ReactionTarget,
        content: ReactionContent,
    },
    /// The run's status comment, first phase.
    StatusComment {
        target: i64,
    },
}

/// A cleanup the worker must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Cancel live discussion runs of an issue.
    CancelDiscussion { issue: i64 },
    /// Delete every run namespace of an issue.
    IssueNamespaces { issue: i64 },
    /// Delete the namespaces of runs linked to a pull request.
    PullRequestNamespaces { pr: i64 },
}

/// Whether the delivery was accepted or ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Ignored(IgnoreReason),
}

/// The full decision for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub run: Option<RunPlan>,
    pub effects: Vec<Effect>,
    pub cleanups: Vec<Cleanup>,
    /// Extra audit events (`run.review.changes_requested.received`, `run.revise.stage_resolved`, ...).
    pub audit: Vec<&'static str>,
    /// Labels involved in a conflict, for the audit trail.
    pub conflicting_labels: Vec<String>,
    /// Labels suggested to the human, for the audit trail.
    pub suggested_labels: Vec<String>,
    /// The stage the review resolver chose, or the stage of the trigger.
    pub resolved_stage: Option<Stage>,
}

impl Decision {
    fn accepted() -> Self {
        Self {
            outcome: Outcome::Accepted,
            run: None,
            effects: vec![],
            cleanups: vec![],
            audit: vec![],
            conflicting_labels: vec![],
            suggested_labels: vec![],
            resolved_stage: None,
        }
    }

    fn ignored(reason: IgnoreReason) -> Self {
        Self { outcome: Outcome::Ignored(reason), ..Self::accepted() }
    }

    /// Ignored with the warning comment and `need:input` the reason calls for.
    fn ignored_with_notice(reason: IgnoreReason, target: Option<i64>, suggested: Vec<String>, labels: &LabelCatalog) -> Self {
        let mut d = Self::ignored(reason.clone());
        if let Some(t) = target {
            if reason.warns() {
                d.effects.push(Effect::Comment {
                    target: t,
                    template: CommentTemplate::TriggerWarning { reason: reason.code(), suggested: suggested.clone() },
                });
            }
            if reason.needs_input() {
                d.effects.push(Effect::AddLabel { target: t, label: labels.need_input.clone() });
            }
        }
        d.suggested_labels = suggested;
        d
    }

    /// The reason code when ignored.
    pub fn reason(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ignored(r) => Some(r.code()),
            Outcome::Accepted => None,
        }
    }
}

/// Everything the policy reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub event: &'a Event,
    pub binding: Option<&'a Binding>,
    pub sender: SenderStanding,
    pub history: &'a History,
    pub config: &'a PolicyConfig,
}

/// Derived correlation id of a `need:reviewer` labelling, so duplicate deliveries of one
/// labelling collapse into one run (product spec §2.5).
pub fn reviewer_correlation_id(repo_full_name: &str, pr: i64, action: &str, label: &str, pr_updated_at: &str) -> String {
    let name = format!("pull_request_label|{}|{pr}|{action}|{label}|{pr_updated_at}", repo_full_name.to_lowercase());
    format!("pr-label-reviewer-{}", Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()))
}

/// Sender authorisation for run-creating deliveries (product spec §1.4).
fn authorize(event: &Event, standing: SenderStanding) -> Result<(), IgnoreReason> {
    let Some(sender) = &event.sender else { return Err(IgnoreReason::SenderLoginMissing) };
    if sender.kind != "User" {
        return Err(IgnoreReason::SenderTypeNotPermitted(if sender.kind.is_empty() { "unknown".into() } else { sender.kind.clone() }));
    }
    if sender.login.trim().is_empty() {
        return Err(IgnoreReason::SenderLoginMissing);
    }
    match standing {
        SenderStanding::Unknown => Err(IgnoreReason::SenderNotAllowed),
        SenderStanding::NotMember => Err(IgnoreReason::SenderNotProjectMember),
        SenderStanding::Member(role) if !role.may_trigger_runs() => Err(IgnoreReason::SenderRoleReadNotPermitted),
        _ => Ok(()),
    }
}

/// Decides what one delivery does.
pub fn decide(input: Input<'_>) -> Decision {
    let e = input.event;
    match (e.name.as_str(), e.action.as_deref()) {
        ("ping", _) => Decision::ignored(IgnoreReason::Ping),
        ("issues", Some("labeled")) => issue_labeled(input),
        ("issues", Some("unlabeled" | "closed" | "deleted")) => issue_cleanup(input),
        ("issue_comment", Some("created")) => issue_comment(input),
        ("pull_request", Some("labeled")) => pr_labeled(input),
        ("pull_request", Some("closed")) => {
            let mut d = Decision::accepted();
            if let (Some(_), Some(pr)) = (input.binding, &e.pull_request) {
                if let Err(r) = may_steer(&input) {
                    return Decision::ignored(r);
                }
                d.cleanups.push(Cleanup::PullRequestNamespaces { pr: pr.number });
            }
            d
        }
        ("pull_request_review", Some("submitted")) if e.review_state.as_deref().map(norm).as_deref() == Some("changes_requested") => {
            review_changes_requested(input)
        }
        ("push", _) => push(input),
        _ => Decision::accepted(),
    }
}

/// Cancelling runs and deleting their namespaces steers the platform: only a sender who may
/// start runs, or the platform's own bot, may cause it. An issue's author may close it whoever
/// they are, so closing is no authority by itself (its namespaces expire with their lease).
fn may_steer(input: &Input<'_>) -> Result<(), IgnoreReason> {
    let e = input.event;
    let bot = &input.config.bot_login;
    if !bot.is_empty() && e.sender.as_ref().is_some_and(|s| norm(&s.login) == norm(bot)) {
        return Ok(());
    }
    authorize(e, input.sender)
}

fn issue_cleanup(input: Input<'_>) -> Decision {
    let e = input.event;
    let mut d = Decision::accepted();
    let (Some(_), Some(issue)) = (input.binding, &e.issue) else { return d };
    let steers = matches!(e.action.as_deref(), Some("closed" | "deleted"))
        || (e.action.as_deref() == Some("unlabeled") && e.label.as_deref().is_some_and(|l| input.config.labels.is_discussion(l)));
    if steers && let Err(r) = may_steer(&input) {
        return Decision::ignored(r);
    }
    match e.action.as_deref() {
        Some("closed" | "deleted") => {
            d.cleanups.push(Cleanup::CancelDiscussion { issue: issue.number });
            d.cleanups.push(Cleanup::IssueNamespaces { issue: issue.number });
        }
        Some("unlabeled") if e.label.as_deref().is_some_and(|l| input.config.labels.is_discussion(l)) => {
            d.cleanups.push(Cleanup::CancelDiscussion { issue: issue.number });
        }
        _ => {}
    }
    d
}

fn issue_labeled(input: Input<'_>) -> Decision {
    let (e, cfg) = (input.event, input.config);
    let labels = &cfg.labels;
    let Some(issue) = &e.issue else { return Decision::ignored(IgnoreReason::IssueEventNotTriggerLabel) };
    let label = e.label.clone().unwrap_or_default();
    let is_discussion = labels.is_discussion(&label);
    let run_label = labels.run_label(&label).cloned();
    if !is_discussion && run_label.is_none() {
        return Decision::ignored(IgnoreReason::IssueEventNotTriggerLabel);
    }
    let Some(binding) = input.binding else {
        return Decision::ignored_with_notice(IgnoreReason::RepositoryNotBoundForIssueLabel, Some(issue.number), vec![], labels);
    };
    // The conflict check includes the label just added, even if the payload's list lags.
    let mut all = issue.labels.clone();
    if !all.iter().any(|l| norm(l) == norm(&label)) {
        all.push(label.clone());
    }
    let run_labels = labels.run_labels(all.iter());

    let mut d = if is_discussion {
        if run_labels.len() > 1 {
            let mut d = Decision::ignored(IgnoreReason::DiscussionModeTriggerLabelConflict);
            d.effects
                .push(Effect::Comment { target: issue.number, template: CommentTemplate::TriggerConflict { labels: run_labels.clone() } });
            d.conflicting_labels = run_labels;
            return d;
        }
        if let Err(r) = authorize(e, input.sender) {
            return Decision::ignored_with_notice(r, Some(issue.number), vec![], labels);
        }
        if input.history.live_discussion_run {
            return Decision::ignored(IgnoreReason::DiscussionRunAlreadyLive);
        }
        let stage = run_labels.first().and_then(|l| labels.run_label(l)).map_or(Stage::Dev, |r| r.stage());
        discussion_run(e, issue.number, stage, &label, TriggerSource::IssueLabel)
    } else {
        let Some(rl) = run_label else { return Decision::ignored(IgnoreReason::IssueEventNotTriggerLabel) };
        if run_labels.len() > 1 {
            let mut d = Decision::ignored(IgnoreReason::IssueTriggerLabelConflict);
            d.effects
                .push(Effect::Comment { target: issue.number, template: CommentTemplate::TriggerConflict { labels: run_labels.clone() } });
            d.audit.push("run.trigger.conflict.comment");
            d.conflicting_labels = run_labels;
            return d;
        }
        if let Err(r) = authorize(e, input.sender) {
            return Decision::ignored_with_notice(r, Some(issue.number), vec![], labels);
        }
        let runtime = match route_issue_trigger(rl.kind, binding, input.history, cfg) {
            Ok(r) => r,
            Err(suggested) => {
                return Decision::ignored_with_notice(IgnoreReason::IssueTriggerCandidateNotFound, Some(issue.number), suggested, labels);
            }
        };
        let mut d = Decision::accepted();
        d.run = Some(RunPlan {
            correlation_id: e.delivery_id.clone(),
            agent_key: Some(rl.stage().default_agent().into()),
            source: TriggerSource::IssueLabel,
            label: Some(label.trim().to_string()),
            kind: rl.kind,
            discussion: false,
            issue_number: Some(issue.number),
            pr_number: input
                .history
                .candidate
                .as_ref()
                .filter(|_| matches!(rl.stage(), Stage::Dev | Stage::Qa | Stage::Release))
                .map(|c| c.pr_number),
            comment_target: Some(issue.number),
            runtime,
        });
        d.resolved_stage = Some(rl.stage());
        // A stage trigger ends any live discussion of the issue.
        d.cleanups.push(Cleanup::CancelDiscussion { issue: issue.number });
        d
    };
    if let Some(t) = d.run.as_ref().and_then(|r| r.comment_target) {
        announce(&mut d, t);
    }
    d
}

/// The status comment and the `:eyes:` reaction a new run owes on its issue or PR.
fn announce(d: &mut Decision, target: i64) {
    d.effects.push(Effect::StatusComment { target });
    d.effects.push(Effect::Reaction { target: ReactionTarget::Issue(target), content: ReactionContent::Eyes });
}

/// Runs on a pull request build from its immutable head SHA.
fn pr_head_runtime(mode: RuntimeMode, head_sha: &str) -> RuntimePlan {
    RuntimePlan {
        mode,
        source: RuntimeSource::ServicesYaml,
        target_env: (mode == RuntimeMode::FullEnv).then(|| "ai".to_string()),
        namespace: None,
        build_ref: Some(head_sha.to_string()),
        deploy_only: false,
        access_profile: (mode == RuntimeMode::FullEnv).then_some(AccessProfile::Candidate),
    }
}

fn discussion_run(e: &Event, issue: i64, stage: Stage, label: &str, source: TriggerSource) -> Decision {
    let mut d = Decision::accepted();
    d.run = Some(RunPlan {
        correlation_id: e.delivery_id.clone(),
        agent_key: Some(stage.default_agent().into()),
        source,
        label: Some(label.trim().to_string()),
        kind: TriggerKind::work(stage),
        discussion: true,
        issue_number: Some(issue),
        pr_number: None,
        comment_target: Some(issue),
        runtime: RuntimePlan {
            mode: RuntimeMode::CodeOnly,
            source: RuntimeSource::Discussion,
            target_env: None,
            namespace: None,
            build_ref: None,
            deploy_only: false,
            access_profile: None,
        },
    });
    d.resolved_stage = Some(stage);
    d
}

/// Late-stage routing (product spec §2.6). `Err` carries the labels to suggest when a required
/// candidate lineage is missing.
fn route_issue_trigger(kind: TriggerKind, binding: &Binding, h: &History, cfg: &PolicyConfig) -> Result<RuntimePlan, Vec<String>> {
    let mode = cfg.runtime.mode(kind);
    let code_only = || RuntimePlan {
        mode: RuntimeMode::CodeOnly,
        source: RuntimeSource::ServicesYaml,
        target_env: None,
        namespace: None,
        build_ref: Some(binding.default_ref.clone()),
        deploy_only: false,
        access_profile: None,
    };
    match kind.stage {
        Stage::Postdeploy | Stage::Ops => Ok(RuntimePlan {
            mode: RuntimeMode::FullEnv,
            source: RuntimeSource::Routing,
            target_env: Some("production".into()),
            namespace: Some(cfg.platform_namespace.clone()),
            build_ref: Some(binding.default_ref.clone()),
            deploy_only: false,
            access_profile: Some(AccessProfile::ProductionReadonly),
        }),
        // In the platform's namespace only ever read-only: the repair is a change of code.
        Stage::AiRepair => Ok(RuntimePlan {
            mode,
            source: RuntimeSource::Routing,
            target_env: Some("production".into()),
            namespace: Some(cfg.platform_namespace.clone()),
            build_ref: Some(binding.default_ref.clone()),
            deploy_only: false,
            access_profile: Some(AccessProfile::ProductionReadonly),
        }),
        Stage::Qa | Stage::Release => match &h.candidate {
            Some(c) => Ok(ai_candidate(RuntimeMode::FullEnv, RuntimeSource::Routing, c.namespace.clone(), c.build_ref.clone())),
            None => Err([cfg.labels.work_label(Stage::Dev), cfg.labels.revise_label(Stage::Dev)]
                .into_iter()
                .flatten()
                .map(String::from)
                .collect()),
        },
        Stage::Dev if mode == RuntimeMode::FullEnv => Ok(match &h.candidate {
            Some(c) => ai_candidate(mode, RuntimeSource::Routing, c.namespace.clone(), c.build_ref.clone()),
            None => ai_candidate(mode, RuntimeSource::Routing, None, binding.default_ref.clone()),
        }),
        _ if mode == RuntimeMode::CodeOnly => Ok(code_only()),
        _ => Ok(ai_candidate(mode, RuntimeSource::ServicesYaml, None, binding.default_ref.clone())),
    }
}

/// A run in the `ai` environment with the `candidate` access profile.
fn ai_candidate(mode: RuntimeMode, source: RuntimeSource, namespace: Option<String>, build_ref: String) -> RuntimePlan {
    RuntimePlan {
        mode,
        source,
        target_env: Some("ai".into()),
        namespace,
        build_ref: Some(build_ref),
        deploy_only: false,
        access_profile: Some(AccessProfile::Candidate),
    }
}

fn issue_comment(input: Input<'_>) -> Decision {
    let (e, labels) = (input.event, &input.config.labels);
    let Some(issue) = &e.issue else { return Decision::ignored(IgnoreReason::IssueCommentNotDiscussion) };
    if issue.is_pull_request || !issue.labels.iter().any(|l| labels.is_discussion(l)) {
        return Decision::ignored(IgnoreReason::IssueCommentNotDiscussion);
    }
    let author = e.comment_author.as_deref().or(e.sender.as_ref().map(|s| s.login.as_str())).unwrap_or_default();
    if norm(author) == norm(&input.config.bot_login) || e.sender.as_ref().is_some_and(|s| norm(&s.login) == norm(&input.config.bot_login)) {
        return Decision::ignored(IgnoreReason::IssueCommentFromBot);
    }
    if input.binding.is_none() {
        return Decision::ignored_with_notice(IgnoreReason::RepositoryNotBoundForIssueLabel, Some(issue.number), vec![], labels);
    }
    if let Err(r) = authorize(e, input.sender) {
        // A human comment from an outsider on a discussion issue is not worth a warning.
        return Decision::ignored(r);
    }
    let comment_reaction = e.comment_id.map(|id| Effect::Reaction {
        target: ReactionTarget::IssueComment { issue: issue.number, comment: id },
        content: ReactionContent::Eyes,
    });
    if input.history.live_discussion_run {
        // The live run picks the comment up itself; new comments never fan out.
        let mut d = Decision::accepted();
        d.effects.extend(comment_reaction);
        return d;
    }
    let run_labels = labels.run_labels(issue.labels.iter());
    if run_labels.len() > 1 {
        let mut d = Decision::ignored(IgnoreReason::DiscussionModeTriggerLabelConflict);
        d.conflicting_labels = run_labels;
        return d;
    }
    let stage = run_labels.first().and_then(|l| labels.run_label(l)).map_or(Stage::Dev, |r| r.stage());
    let mut d = discussion_run(e, issue.number, stage, &labels.mode_discussion, TriggerSource::IssueComment);
    d.effects.push(Effect::StatusComment { target: issue.number });
    d.effects.extend(comment_reaction);
    d
}

fn pr_labeled(input: Input<'_>) -> Decision {
    let (e, labels) = (input.event, &input.config.labels);
    let Some(pr) = &e.pull_request else { return Decision::accepted() };
    let label = e.label.clone().unwrap_or_default();
    if !labels.is_need_reviewer(&label) {
        return Decision::accepted();
    }
    if input.binding.is_none() {
        return Decision::ignored_with_notice(IgnoreReason::RepositoryNotBoundForPullRequest, Some(pr.number), vec![], labels);
    }
    if let Err(r) = authorize(e, input.sender) {
        return Decision::ignored_with_notice(r, Some(pr.number), vec![], labels);
    }
    let repo = e.repository.as_ref().map(|r| r.full_name.as_str()).unwrap_or_default();
    let mode = input.config.runtime.mode(TriggerKind::work(Stage::Dev));
    let mut d = Decision::accepted();
    d.run = Some(RunPlan {
        correlation_id: reviewer_correlation_id(repo, pr.number, "labeled", &norm(&label), &pr.updated_at),
        agent_key: Some("reviewer".into()),
        source: TriggerSource::PullRequestLabel,
        label: Some(label.trim().to_string()),
        kind: TriggerKind::work(Stage::Dev),
        discussion: false,
        issue_number: input.history.pr_linked_issues.first().copied().filter(|_| input.history.pr_linked_issues.len() == 1),
        pr_number: Some(pr.number),
        comment_target: Some(pr.number),
        runtime: pr_head_runtime(mode, &pr.head_sha),
    });
    d.resolved_stage = Some(Stage::Dev);
    announce(&mut d, pr.number);
    d
}

/// The distinct revisable stages among `labels` (rethink and ai-repair have no revise).
fn stages_of(labels: &LabelCatalog, list: &[String]) -> BTreeSet<Stage> {
    list.iter().filter_map(|l| labels.run_label(l)).map(|r| r.stage()).filter(|s| labels.revise_label(*s).is_some()).collect()
}

fn review_changes_requested(input: Input<'_>) -> Decision {
    let (e, cfg, h) = (input.event, input.config, input.history);
    let labels = &cfg.labels;
    let Some(pr) = &e.pull_request else { return Decision::accepted() };
    let suggested = labels.revise_labels();
    if input.binding.is_none() {
        return Decision::ignored_with_notice(IgnoreReason::RepositoryNotBoundForPullRequest, Some(pr.number), vec![], labels);
    }
    if let Err(r) = authorize(e, input.sender) {
        return Decision::ignored_with_notice(r, Some(pr.number), vec![], labels);
    }
    let audit_received = "run.review.changes_requested.received";
    let ambiguous = |reason: IgnoreReason, conflicting: Vec<String>| {
        let mut d = Decision::ignored_with_notice(reason, Some(pr.number), suggested.clone(), labels);
        d.audit = vec![audit_received, "run.revise.stage_ambiguous"];
        d.conflicting_labels = conflicting;
        d
    };

    // (1) exactly one stage on the PR's labels.
    let pr_stages = stages_of(labels, &pr.labels);
    let linked_issue = match h.pr_linked_issues.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let stage = if pr_stages.len() > 1 {
        return ambiguous(IgnoreReason::PullRequestReviewStageLabelConflict, labels.run_labels(pr.labels.iter()));
    } else if let Some(s) = pr_stages.into_iter().next() {
        Some((s, "pr_labels"))
    } else if h.pr_linked_issues.len() > 1 {
        // (2) more than one linked issue: never best-guess.
        return ambiguous(IgnoreReason::PullRequestReviewStageAmbiguous, vec![]);
    } else {
        let issue_stages = h.linked_issue_labels.as_ref().map(|l| stages_of(labels, l)).unwrap_or_default();
        if issue_stages.len() > 1 {
            let l = h.linked_issue_labels.clone().unwrap_or_default();
            return ambiguous(IgnoreReason::PullRequestReviewStageLabelConflict, labels.run_labels(l.iter()));
        }
        issue_stages
            .into_iter()
            .next()
            .map(|s| (s, "issue_labels"))
            // (3) the latest run touching this PR with a stage kind.
            .or_else(|| h.pr_last_run_stage.map(|s| (s, "last_run_context")))
            // (4) the latest run of the linked issue.
            .or_else(|| h.linked_issue_last_stage.map(|s| (s, "issue_history")))
            .filter(|(s, _)| labels.revise_label(*s).is_some())
    };
    let Some((stage, _resolver)) = stage else {
        let mut d = Decision::ignored_with_notice(IgnoreReason::PullRequestReviewStageNotResolved, Some(pr.number), suggested, labels);
        d.audit = vec![audit_received];
        return d;
    };
    let revise_label = labels.revise_label(stage).unwrap_or_default().to_string();
    let kind = TriggerKind { stage, revise: true };
    let mode = cfg.runtime.mode(kind);
    let mut d = Decision::accepted();
    d.audit = vec![audit_received, "run.revise.stage_resolved"];
    d.resolved_stage = Some(stage);
    d.run = Some(RunPlan {
        correlation_id: e.delivery_id.clone(),
        agent_key: Some(stage.default_agent().into()),
        source: TriggerSource::PullRequestReview,
        label: Some(revise_label),
        kind,
        discussion: false,
        issue_number: linked_issue,
        pr_number: Some(pr.number),
        comment_target: Some(pr.number),
        runtime: pr_head_runtime(mode, &pr.head_sha),
    });
    announce(&mut d, pr.number);
    d
}

fn push(input: Input<'_>) -> Decision {
    let e = input.event;
    let Some(p) = &e.push else { return Decision::accepted() };
    let main = matches!(p.git_ref.as_str(), "refs/heads/main" | "refs/heads/master");
    let zero = p.after.is_empty() || p.after.chars().all(|c| c == '0');
    if !main || p.deleted || zero {
        return Decision::accepted();
    }
    let Some(binding) = input.binding else { return Decision::ignored(IgnoreReason::RepositoryNotBoundForPushMain) };
    if !binding.platform {
        return Decision::accepted();
    }
    let mut d = Decision::accepted();
    d.run = Some(RunPlan {
        correlation_id: e.delivery_id.clone(),
        agent_key: None,
        source: TriggerSource::PushMain,
        label: None,
        kind: TriggerKind::DEPLOY,
        discussion: false,
        issue_number: None,
        pr_number: None,
        comment_target: None,
        runtime: RuntimePlan {
            mode: RuntimeMode::FullEnv,
            source: RuntimeSource::PushMain,
            target_env: Some("production".into()),
            namespace: Some(input.config.platform_namespace.clone()),
            build_ref: Some(p.after.clone()),
            deploy_only: true,
            access_profile: None,
        },
    });
    d
}

#[cfg(test)]
mod tests;

//! What the agent runner decides before and after it runs the Codex CLI (product spec §3.2, §3.5,
//! §6.1, §6.4), as pure functions: the run's target branch, the prompt seed lookup chain, the
//! write-scope policy checked before any push, and the reading of `codex exec --json` events into
//! a session id, commands, the final message and per-turn token usage — with secrets redacted and
//! captured output capped.

use crate::stage::{Stage, TriggerKind};

/// The stage whose prompt seeds a run uses (`doc-audit`): every labelled stage has its own;
/// the platform's deploy, which runs no agent, falls back to `dev`.
pub fn seed_stage(kind: TriggerKind) -> &'static str {
    if kind.is_labelled() { kind.stage.slug() } else { Stage::Dev.slug() }
}

/// Which prompt a run gets (spec §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Work,
    Revise,
    Discussion,
}

impl PromptKind {
    /// Prompt kind of a run: discussion first, then revise for `:revise` kinds, else work.
    pub fn of(kind: TriggerKind, discussion: bool) -> Self {
        if discussion {
            PromptKind::Discussion
        } else if kind.revise {
            PromptKind::Revise
        } else {
            PromptKind::Work
        }
    }

    /// `work`, `revise` or `discussion`: the spelling of seed names and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Work => "work",
            PromptKind::Revise => "revise",
            PromptKind::Discussion => "discussion",
        }
    }
}

/// The seed files to look for, first hit wins (§3.5); the caller falls back to the built-in
/// `prompt_<kind>.tmpl` when none exists.
pub fn seed_candidates(stage: &str, role: &str, kind: &str, locale: &str) -> Vec<String> {
    vec![
        format!("{stage}-{role}-{kind}_{locale}.md"),
        format!("{stage}-{role}-{kind}.md"),
        format!("role-{role}-{kind}_{locale}.md"),
        format!("role-{role}-{kind}.md"),
        format!("{stage}-{kind}_{locale}.md"),
        format!("{stage}-{kind}.md"),
        format!("dev-{kind}_{locale}.md"),
        format!("dev-{kind}.md"),
        format!("default-{kind}_{locale}.md"),
        format!("default-{kind}.md"),
    ]
}

/// The branch a run works on (§6.1 step 2): explicit → ai-repair on the base branch → the issue's
/// `codex/issue-<n>` → `codex/run-<first 12 of the run id>`.
pub fn target_branch(explicit: Option<&str>, kind: TriggerKind, base_branch: &str, issue: Option<i64>, run_id: &str) -> String {
    if let Some(b) = explicit.map(str::trim).filter(|b| !b.is_empty()) {
        return b.to_string();
    }
    if kind.stage == Stage::AiRepair {
        return base_branch.to_string();
    }
    match issue {
        Some(n) => format!("codex/issue-{n}"),
        None => format!("codex/run-{}", run_id.chars().filter(|c| *c != '-').take(12).collect::<String>()),
    }
}

/// What the control plane knows of a run when its runner names a pull request.
#[derive(Debug, Clone, Copy)]
pub struct RunPullFacts<'a> {
    /// The run's repository (`owner/name`).
    pub repository: &'a str,
    /// Login of the platform's bot (the author of every pull request a run opens).
    pub bot_login: &'a str,
    /// The branch the run works on ([`target_branch`]).
    pub branch: &'a str,
    /// The pull request the run was started for (from the webhook), if any.
    pub trigger_pr: Option<i64>,
}

/// Why a pull request is not the run's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullRefusal {
    #[error("its head lives in {}, not in the run's repository", head_repo.as_deref().unwrap_or("a deleted repository"))]
    OtherRepository { head_repo: Option<String> },
    #[error("it was opened by {author:?}, not by the platform's bot")]
    NotTheBot { author: String },
    #[error("its head is {head_ref:?}, not the run's branch")]
    OtherBranch { head_ref: String },
}

/// Whether `pr` (as the forge reports it) may be recorded on the run (§6.2): its head must be a
/// branch of the run's own repository, and it must be either the pull request the run was
/// started for or one the bot opened from the run's branch. A number the runner merely claims
/// would otherwise move PR↔issue links, candidate lineage and cleanup onto someone else's pull
/// request.
pub fn check_run_pull(pr: &crate::forge::PullRequest, run: &RunPullFacts<'_>) -> Result<(), PullRefusal> {
    if !pr.head_repo.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(run.repository)) {
        return Err(PullRefusal::OtherRepository { head_repo: pr.head_repo.clone() });
    }
    if run.trigger_pr == Some(pr.number) {
        return Ok(());
    }
    if !pr.author.eq_ignore_ascii_case(run.bot_login) {
        return Err(PullRefusal::NotTheBot { author: pr.author.clone() });
    }
    if pr.head_ref != run.branch {
        return Err(PullRefusal::OtherBranch { head_ref: pr.head_ref.clone() });
    }
    Ok(())
}

/// Most status reports one run may owe (each is an edit of the bot's comment with the shared
/// token); reports merged into one still waiting do not count.
pub const MAX_STATUS_REPORTS: i64 = 30;

/// Whether a model or reasoning-effort name reported by a runner is a plain name (letters,
/// digits, `.`, `_`, `-`, `:`, `/`; 1-100 characters): it is shown in the bot's status comment,
/// so nothing that markdown or HTML would read is let through.
pub fn is_plain_name(s: &str) -> bool {
    (1..=100).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
}

/// What a run may change (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteScope {
    /// Anything (dev, dev revise, ai-repair).
    Unrestricted,
    /// Markdown files only (document stages).
    MarkdownOnly,
    /// Markdown plus the agent runner's prompt seeds, templates and Dockerfile (self-improve).
    SelfImprove,
    /// Nothing at all (reviewer, discussion).
    Nothing,
}

/// The write scope of a run.
pub fn write_scope(kind: TriggerKind, agent_key: &str, discussion: bool) -> WriteScope {
    if discussion || agent_key == "reviewer" {
        return WriteScope::Nothing;
    }
    match kind.stage {
        Stage::Dev | Stage::AiRepair => WriteScope::Unrestricted,
        Stage::SelfImprove => WriteScope::SelfImprove,
        // Every other stage writes documents; a kind without its own scope gets the narrow one too.
        _ => WriteScope::MarkdownOnly,
    }
}

/// A change outside the run's write scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed_precondition: {scope:?} scope forbids changing {paths:?}")]
pub struct ScopeViolation {
    pub scope: WriteScope,
    pub paths: Vec<String>,
}

const RUNNER: &str = "services/jobs/agent-runner/";

fn allowed(scope: &WriteScope, path: &str) -> bool {
    let md = path.ends_with(".md");
    match scope {
        WriteScope::Unrestricted => true,
        WriteScope::Nothing => false,
        WriteScope::MarkdownOnly => md,
        WriteScope::SelfImprove => {
            md || path == format!("{RUNNER}Dockerfile")
                || path.starts_with(&format!("{RUNNER}internal/runner/promptseeds/"))
                || path == format!("{RUNNER}internal/runner/templates/prompt_envelope.tmpl")
                || (path.starts_with(&format!("{RUNNER}internal/runner/templates/prompt_blocks/"))
                    && path.ends_with(".tmpl")
                    && !path[format!("{RUNNER}internal/runner/templates/prompt_blocks/").len()..].contains('/'))
        }
    }
}

/// What a path is in a work tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    File {
        executable: bool,
    },
    Symlink,
    /// A nested repository (a submodule commit): never part of a run's change.
    Gitlink,
}

/// How a path changed between the run's baseline and the agent's work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new path.
    Added {
        path: String,
        entry: Entry,
    },
    /// The content, the mode or the kind (file ↔ link) of a path changed.
    Modified {
        path: String,
        from: Entry,
        to: Entry,
    },
    Deleted {
        path: String,
        entry: Entry,
    },
}

impl Change {
    /// The path (relative, `/`-separated).
    pub fn path(&self) -> &str {
        match self {
            Change::Added { path, .. } | Change::Modified { path, .. } | Change::Deleted { path, .. } => path,
        }
    }

    /// The kinds of entry on either side of the change.
    fn entries(&self) -> [Option<Entry>; 2] {
        match self {
            Change::Added { entry, .. } | Change::Deleted { entry, .. } => [Some(*entry), None],
            Change::Modified { from, to, .. } => [Some(*from), Some(*to)],
        }
    }

    /// Whether the change is allowed in `scope`: the path is in scope, only an unrestricted scope
    /// touches symbolic links, and no scope touches nested repositories.
    fn allowed_in(&self, scope: &WriteScope) -> bool {
        let kinds = self.entries();
        allowed(scope, self.path())
            && !kinds.contains(&Some(Entry::Gitlink))
            && (*scope == WriteScope::Unrestricted || !kinds.contains(&Some(Entry::Symlink)))
    }
}

/// Checks a change set against the write scope: every changed path must be in scope (a move is a
/// deletion plus an addition, so moving code into a `.md` path deletes code out of scope), and
/// only an unrestricted scope may add, remove or change symbolic links; nested repositories are
/// refused in every scope.
pub fn check_changes(scope: &WriteScope, changes: &[Change]) -> Result<(), ScopeViolation> {
    let bad: Vec<String> = changes.iter().filter(|c| !c.allowed_in(scope)).map(|c| c.path().to_string()).collect();
    if bad.is_empty() { Ok(()) } else { Err(ScopeViolation { scope: scope.clone(), paths: bad }) }
}

/// Token usage of one Codex turn (`turn.completed.usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnUsage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_output_tokens: u64,
}

impl TurnUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// One command the agent ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRun {
    pub command: String,
    pub exit_code: Option<i64>,
    /// Output, redacted and capped.
    pub output: String,
}

/// What a `codex exec --json` stream said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodexTranscript {
    /// `thread.started.thread_id`: the session to resume.
    pub session_id: Option<String>,
    pub commands: Vec<CommandRun>,
    /// The last `agent_message`.
    pub final_message: Option<String>,
    pub turns: Vec<TurnUsage>,
    pub errors: Vec<String>,
    /// Lines that were not JSON events (kept out of the transcript, counted).
    pub unparsed_lines: usize,
    /// Commands beyond [`MAX_COMMANDS`] (counted, not kept).
    pub commands_dropped: usize,
}

/// Captured output kept per command and message, in bytes.
pub const OUTPUT_CAP: usize = 256 * 1024;

/// Prefixes of credentials whatever their value: the platform's run and proxy tokens, GitHub's
/// tokens, OpenAI's keys.
pub const TOKEN_PREFIXES: [&str; 8] = ["ck8srun_", "ck8sproxy_", "ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "sk-proj-"];

/// Replaces every secret with `[REDACTED]`: the known values (see [`redact`]) and anything shaped
/// like a credential — one of [`TOKEN_PREFIXES`] followed by at least 16 token characters — so a
/// token the platform never saw (another run's, one the agent found) is hidden too.
pub fn redact_all(text: &str, secrets: &[&str]) -> String {
    let text = redact(text, secrets);
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    'scan: while !rest.is_empty() {
        for p in TOKEN_PREFIXES {
            if let Some(tail) = rest.strip_prefix(p) {
                let n = tail.find(|c: char| !token_char(c)).unwrap_or(tail.len());
                if n >= 16 {
                    out.push_str("[REDACTED]");
                    rest = &tail[n..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Replaces every secret (non-empty, at least 6 characters) with `[REDACTED]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 6) {
        out = out.replace(s, "[REDACTED]");
    }
    out
}

fn cap(mut s: String) -> String {
    if s.len() > OUTPUT_CAP {
        let mut end = OUTPUT_CAP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n[output truncated]");
    }
    s
}

/// Reads a `codex exec --json` stream; secrets are redacted from every kept text.
pub fn read_codex_events(stream: &str, secrets: &[&str]) -> CodexTranscript {
    let mut t = CodexTranscript::default();
    for line in stream.lines() {
        t.feed(line, secrets);
    }
    t
}

/// Commands kept in a transcript; later ones are counted, not kept.
pub const MAX_COMMANDS: usize = 500;

impl CodexTranscript {
    /// Reads one line of a `codex exec --json` stream as it arrives: memory stays bounded
    /// whatever the agent prints (each text is capped at [`OUTPUT_CAP`], at most [`MAX_COMMANDS`]
    /// commands are kept), and every secret is redacted before anything is kept.
    pub fn feed(&mut self, line: &str, secrets: &[&str]) {
        let text = |v: &serde_json::Value| cap(redact_all(v.as_str().unwrap_or_default(), secrets));
        if line.trim().is_empty() {
            return;
        }
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            self.unparsed_lines += 1;
            return;
        };
        match e["type"].as_str().unwrap_or_default() {
            "thread.started" => self.session_id = e["thread_id"].as_str().map(String::from),
            "item.completed" => {
                let item = &e["item"];
                match item["type"].as_str().unwrap_or_default() {
                    "command_execution" if self.commands.len() < MAX_COMMANDS => self.commands.push(CommandRun {
                        command: text(&item["command"]),
                        exit_code: item["exit_code"].as_i64(),
                        output: text(&item["aggregated_output"]),
                    }),
                    "command_execution" => self.commands_dropped += 1,
                    "agent_message" => self.final_message = Some(text(&item["text"])),
                    "error" => self.errors.push(text(&item["message"])),
                    _ => {}
                }
            }
            "turn.completed" => {
                let u = &e["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                self.turns.push(TurnUsage {
                    input_tokens: n("input_tokens"),
                    cached_input_tokens: n("cached_input_tokens"),
                    output_tokens: n("output_tokens"),
                    reasoning_output_tokens: n("reasoning_output_tokens"),
                });
            }
            "turn.failed" | "error" if self.errors.len() < MAX_COMMANDS => {
                self.errors.push(text(if e["error"]["message"].is_string() { &e["error"]["message"] } else { &e["message"] }))
            }
            _ => {}
        }
    }
}

/// Flow-event families the agent runner may append (spec Appendix A, agent events).
const AGENT_EVENT_PREFIXES: [&str; 8] =
    ["run.agent.", "run.pr.", "run.codex.", "run.revise.", "run.learning.", "run.review.", "run.toolchain.", "run.self_improve."];

/// Whether the agent runner may append an event of this type (well-formed and in an agent family).
pub fn is_agent_event_type(t: &str) -> bool {
    let well_formed = !t.is_empty()
        && t.len() <= 100
        && t.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    well_formed && AGENT_EVENT_PREFIXES.iter().any(|p| t.starts_with(p) && t.len() > p.len())
}

/// Statuses of a session snapshot.
pub const SESSION_STATUSES: [&str; 5] = ["running", "succeeded", "failed", "cancelled", "failed_precondition"];

/// JSON with object keys sorted at every level and no insignificant whitespace: the input of
/// snapshot checksums, so equal content always hashes equally.
pub fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let body: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&m[k.as_str()]))).collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A reply to one review comment, from the agent's final report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ReviewReply {
    pub comment_id: i64,
    pub body: String,
}

/// A note on one line of the change (learning explanation or reviewer finding).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct LineNote {
    pub path: String,
    pub line: i64,
    pub body: String,
}

/// The agent's final report: the last message of the run, JSON by the output schema the runner
/// gives Codex. A final message that is not such JSON is taken whole as the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct AgentReport {
    pub summary: String,
    #[serde(default)]
    pub review_replies: Vec<ReviewReply>,
    /// Learning mode: why the change, what it gains, which alternatives were rejected.
    #[serde(default)]
    pub explanation: Option<String>,
    /// Learning notes (author runs) or findings (reviewer runs) on changed lines.
    #[serde(default)]
    pub line_notes: Vec<LineNote>,
    /// Reviewer runs: `APPROVE`, `REQUEST_CHANGES` or `COMMENT`.
    #[serde(default)]
    pub verdict: Option<String>,
}

impl AgentReport {
    /// Reads the final message (tolerating a fenced ```json block).
    pub fn from_final_message(message: &str) -> AgentReport {
        let t = message.trim();
        let inner = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).and_then(|r| r.strip_suffix("```")).unwrap_or(t).trim();
        match serde_json::from_str::<AgentReport>(inner) {
            Ok(r) if !r.summary.trim().is_empty() => r,
            _ => AgentReport { summary: t.to_string(), ..Default::default() },
        }
    }
}

/// The JSON schema of [`AgentReport`] given to `codex exec --output-schema` (strict mode needs
/// every property required; optional ones are nullable).
pub fn report_schema() -> serde_json::Value {
    let note = serde_json::json!({"type": "object", "additionalProperties": false, "required": ["path", "line", "body"],
        "properties": {"path": {"type": "string"}, "line": {"type": "integer"}, "body": {"type": "string"}}});
    serde_json::json!({
        "type": "object", "additionalProperties": false,
        "required": ["summary", "review_replies", "explanation", "line_notes", "verdict"],
        "properties": {
            "summary": {"type": "string"},
            "review_replies": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["comment_id", "body"],
                "properties": {"comment_id": {"type": "integer"}, "body": {"type": "string"}}}},
            "explanation": {"type": ["string", "null"]},
            "line_notes": {"type": "array", "items": note},
            "verdict": {"type": ["string", "null"], "enum": ["APPROVE", "REQUEST_CHANGES", "COMMENT", null]}
        }
    })
}

#[cfg(test)]
mod tests {
    fn pull(number: i64, author: &str, head_ref: &str, head_repo: Option<&str>) -> crate::forge::PullRequest {
        crate::forge::PullRequest {
            number,
            title: "t".into(),
            body: None,
            state: "open".into(),
            merged: false,
            draft: false,
            head_ref: head_ref.into(),
            head_sha: "abc".into(),
            head_repo: head_repo.map(String::from),
            base_ref: "main".into(),
            html_url: format!("https://github.com/acme/app/pull/{number}"),
            author: author.into(),
        }
    }

    #[test]
    fn only_the_bots_pull_request_from_the_runs_branch_or_the_triggering_one_is_the_runs() {
        let facts = RunPullFacts { repository: "acme/app", bot_login: "codex-bot", branch: "codex/issue-7", trigger_pr: None };
        assert_eq!(check_run_pull(&pull(3, "codex-bot", "codex/issue-7", Some("acme/app")), &facts), Ok(()));
        assert_eq!(check_run_pull(&pull(3, "Codex-Bot", "codex/issue-7", Some("ACME/app")), &facts), Ok(()), "logins ignore case");
        assert_eq!(
            check_run_pull(&pull(4, "mallory", "codex/issue-7", Some("acme/app")), &facts),
            Err(PullRefusal::NotTheBot { author: "mallory".into() }),
            "a human's pull request on the run's branch"
        );
        assert_eq!(
            check_run_pull(&pull(5, "codex-bot", "codex/issue-9", Some("acme/app")), &facts),
            Err(PullRefusal::OtherBranch { head_ref: "codex/issue-9".into() }),
            "the bot's pull request of another run"
        );
        assert_eq!(
            check_run_pull(&pull(6, "codex-bot", "codex/issue-7", Some("mallory/app")), &facts),
            Err(PullRefusal::OtherRepository { head_repo: Some("mallory/app".into()) }),
            "a fork's pull request with the same branch name"
        );
        assert!(matches!(check_run_pull(&pull(6, "codex-bot", "codex/issue-7", None), &facts), Err(PullRefusal::OtherRepository { .. })));
        // The pull request a review run was started for may be anyone's, but not a fork's.
        let review = RunPullFacts { trigger_pr: Some(8), ..facts };
        assert_eq!(check_run_pull(&pull(8, "alice", "feature/x", Some("acme/app")), &review), Ok(()));
        assert!(check_run_pull(&pull(8, "alice", "feature/x", Some("alice/app")), &review).is_err());
        assert!(check_run_pull(&pull(9, "alice", "feature/x", Some("acme/app")), &review).is_err());
    }

    #[test]
    fn plain_names_are_model_names_and_nothing_markdown_reads() {
        for ok in ["gpt-5.4", "o3-mini", "high", "openai/gpt-oss-120b", "ft:gpt-4o:acme"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in ["", "gpt](https://evil.example)", "`x`", "a b", "<img src=x>", "gpt\n", "**bold**", &"x".repeat(101)] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    use super::*;

    fn k(s: &str) -> TriggerKind {
        TriggerKind::parse(s).unwrap()
    }

    #[test]
    fn stages_and_prompt_kinds_follow_the_trigger_kind() {
        assert_eq!(seed_stage(k("dev_revise")), "dev");
        assert_eq!(seed_stage(k("doc_audit")), "doc-audit");
        assert_eq!(seed_stage(k("self_improve_revise")), "self-improve");
        assert_eq!(seed_stage(TriggerKind::DEPLOY), "dev", "kinds without seeds fall back to dev");
        assert_eq!(PromptKind::of(k("qa_revise"), false).as_str(), "revise");
        assert_eq!(PromptKind::of(k("qa"), false).as_str(), "work");
        assert_eq!(PromptKind::of(k("dev"), true).as_str(), "discussion");
    }

    #[test]
    fn seed_lookup_goes_from_the_most_to_the_least_specific() {
        let c = seed_candidates("qa", "qa", "work", "ru");
        assert_eq!(c.first().map(String::as_str), Some("qa-qa-work_ru.md"));
        assert_eq!(c[2], "role-qa-work_ru.md");
        assert_eq!(c[4], "qa-work_ru.md");
        assert_eq!(c.last().map(String::as_str), Some("default-work.md"));
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn target_branches_follow_the_rule_order() {
        assert_eq!(target_branch(Some("feature/x"), k("dev"), "main", Some(7), "r"), "feature/x");
        assert_eq!(target_branch(Some("  "), k("ai_repair"), "main", Some(7), "r"), "main");
        assert_eq!(target_branch(None, k("dev"), "main", Some(7), "r"), "codex/issue-7");
        assert_eq!(target_branch(None, k("dev"), "main", None, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), "codex/run-0f1e2d3c4b5a");
    }

    #[test]
    fn write_scopes_allow_only_what_the_stage_may_touch() {
        let changed = |p: &[&str]| {
            p.iter().map(|s| Change::Added { path: s.to_string(), entry: Entry::File { executable: false } }).collect::<Vec<_>>()
        };
        assert_eq!(write_scope(k("dev"), "dev", false), WriteScope::Unrestricted);
        assert_eq!(write_scope(k("dev_revise"), "dev", false), WriteScope::Unrestricted);
        assert_eq!(write_scope(k("ai_repair"), "sre", false), WriteScope::Unrestricted);
        assert_eq!(write_scope(k("prd"), "pm", false), WriteScope::MarkdownOnly);
        assert_eq!(write_scope(k("qa_revise"), "qa", false), WriteScope::MarkdownOnly);
        assert_eq!(write_scope(TriggerKind::DEPLOY, "dev", false), WriteScope::MarkdownOnly);
        assert_eq!(write_scope(k("dev"), "reviewer", false), WriteScope::Nothing);
        assert_eq!(write_scope(k("dev"), "dev", true), WriteScope::Nothing);
        assert!(check_changes(&WriteScope::Unrestricted, &changed(&["src/main.rs"])).is_ok());
        let v = check_changes(&WriteScope::MarkdownOnly, &changed(&["docs/prd.md", "src/lib.rs"])).unwrap_err();
        assert_eq!(v.paths, vec!["src/lib.rs"]);
        assert!(v.to_string().starts_with("failed_precondition"));
        assert!(check_changes(&WriteScope::Nothing, &changed(&["README.md"])).is_err());
        assert!(check_changes(&WriteScope::Nothing, &[]).is_ok());
        assert_eq!(write_scope(k("self_improve_revise"), "km", false), WriteScope::SelfImprove);
        let si = write_scope(k("self_improve"), "km", false);
        assert!(
            check_changes(
                &si,
                &changed(&[
                    "services/jobs/agent-runner/internal/runner/promptseeds/dev-work.md",
                    "services/jobs/agent-runner/internal/runner/promptseeds/x/y.txt",
                    "services/jobs/agent-runner/internal/runner/templates/prompt_blocks/pr_en.tmpl",
                    "services/jobs/agent-runner/Dockerfile",
                    "docs/notes.md",
                ])
            )
            .is_ok()
        );
        let v = check_changes(
            &si,
            &changed(&[
                "services/jobs/agent-runner/src/main.rs",
                "services/jobs/agent-runner/internal/runner/templates/prompt_blocks/a/b.tmpl",
            ]),
        )
        .unwrap_err();
        assert_eq!(v.paths.len(), 2);
    }

    #[test]
    fn credentials_are_redacted_by_value_and_by_shape() {
        let text = "run ck8srun_AbCdEf0123456789xyz key=sk-proj-0123456789abcdefXYZ pat github_pat_11ABCDEFG0123456789_abc \
                    short ghp_abc ok; tasks-ck8srun_AbCdEf0123456789xyz kept; known s3cr3t-value; привет ghs_0123456789abcdefghij.";
        let r = redact_all(text, &["s3cr3t-value"]);
        assert!(!r.contains("ck8srun_AbCd") && r.contains("tasks-[REDACTED] kept"), "embedded ones too: {r}");
        assert_eq!(r.matches("[REDACTED]").count(), 6, "{r}");
        assert!(r.contains("ghp_abc ok") && r.contains("привет [REDACTED]."), "short shapes stay: {r}");
        assert!(!r.contains("s3cr3t-value") && !r.contains("sk-proj-0123") && !r.contains("github_pat_11"));
    }

    #[test]
    fn change_sets_are_checked_path_by_path_and_links_need_an_unrestricted_scope() {
        let file = Entry::File { executable: false };
        let moved = [Change::Deleted { path: "src/lib.rs".into(), entry: file }, Change::Added { path: "docs/lib.md".into(), entry: file }];
        let v = check_changes(&WriteScope::MarkdownOnly, &moved).unwrap_err();
        assert_eq!(v.paths, vec!["src/lib.rs"], "a move of code into a markdown path deletes code");
        assert!(check_changes(&WriteScope::Unrestricted, &moved).is_ok());
        let cyrillic = [Change::Added { path: "docs/заметки.md".into(), entry: file }];
        assert!(check_changes(&WriteScope::MarkdownOnly, &cyrillic).is_ok(), "names in any script are paths like others");
        let link = [Change::Added { path: "docs/env.md".into(), entry: Entry::Symlink }];
        assert!(check_changes(&WriteScope::MarkdownOnly, &link).is_err(), "a markdown-named link is still a link");
        assert!(check_changes(&WriteScope::Unrestricted, &link).is_ok());
        let made_link = [Change::Modified { path: "README.md".into(), from: file, to: Entry::Symlink }];
        assert!(check_changes(&WriteScope::MarkdownOnly, &made_link).is_err());
        let chmod = [Change::Modified { path: "build.sh".into(), from: file, to: Entry::File { executable: true } }];
        assert!(check_changes(&WriteScope::MarkdownOnly, &chmod).is_err(), "a mode change is a change of its path");
        assert!(check_changes(&WriteScope::Nothing, &[]).is_ok());
        let nested = [Change::Added { path: "vendor/x".into(), entry: Entry::Gitlink }];
        assert!(check_changes(&WriteScope::Unrestricted, &nested).is_err(), "no scope adds a nested repository");
    }

    #[test]
    fn codex_event_streams_give_the_session_commands_message_and_usage_without_secrets() {
        let stream = [
            r#"{"type":"thread.started","thread_id":"0199-abc"}"#,
            r#"{"type":"turn.started"}"#,
            "WARNING: not an event",
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"echo ghp_SECRETTOKEN123","aggregated_output":"ghp_SECRETTOKEN123\n","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"i2","type":"error","message":"model metadata not found"}}"#,
            r#"{"type":"item.completed","item":{"id":"i3","type":"agent_message","text":"Done."}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":5400,"cached_input_tokens":1800,"output_tokens":720,"reasoning_output_tokens":192}}"#,
        ]
        .join("\n");
        let t = read_codex_events(&stream, &["ghp_SECRETTOKEN123", "x"]);
        assert_eq!(t.session_id.as_deref(), Some("0199-abc"));
        assert_eq!(t.commands.len(), 1);
        assert_eq!(t.commands[0].command, "echo [REDACTED]");
        assert_eq!(t.commands[0].output, "[REDACTED]\n");
        assert_eq!(t.final_message.as_deref(), Some("Done."));
        assert_eq!(t.errors, vec!["model metadata not found"]);
        assert_eq!(
            t.turns,
            vec![TurnUsage { input_tokens: 5400, cached_input_tokens: 1800, output_tokens: 720, reasoning_output_tokens: 192 }]
        );
        assert_eq!(t.turns[0].total(), 6120);
        assert_eq!(t.unparsed_lines, 1);
    }

    #[test]
    fn captured_output_is_capped_on_a_character_boundary() {
        let big = "é".repeat(OUTPUT_CAP);
        let line = serde_json::json!({"type": "item.completed", "item": {"type": "agent_message", "text": big}}).to_string();
        let t = read_codex_events(&line, &[]);
        let m = t.final_message.unwrap();
        assert!(m.len() <= OUTPUT_CAP + 32 && m.ends_with("[output truncated]"));
    }

    #[test]
    fn only_well_formed_agent_families_are_accepted() {
        for t in
            ["run.agent.started", "run.pr.created", "run.revise.pr_not_found", "run.learning.feedback_posted", "run.codex.auth.required"]
        {
            assert!(is_agent_event_type(t), "{t}");
        }
        for t in
            ["run.succeeded", "webhook.received", "run.agent.", "run.agent..x", "Run.agent.started", "run.agent.started;drop", "", "run.pr"]
        {
            assert!(!is_agent_event_type(t), "{t}");
        }
        assert!(!is_agent_event_type(&format!("run.agent.{}", "x".repeat(100))));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
        assert_ne!(canonical_json(&a), canonical_json(&serde_json::json!({"a": 1, "b": 1})));
    }

    #[test]
    fn the_final_report_is_json_by_schema_or_the_whole_message() {
        let r = AgentReport::from_final_message(
            "```json\n{\"summary\":\"Added hello.sh\",\"review_replies\":[{\"comment_id\":7,\"body\":\"Done\"}],\"explanation\":null,\"line_notes\":[],\"verdict\":null}\n```",
        );
        assert_eq!(r.summary, "Added hello.sh");
        assert_eq!(r.review_replies, vec![ReviewReply { comment_id: 7, body: "Done".into() }]);
        let plain = AgentReport::from_final_message("Just text, no JSON");
        assert_eq!(plain.summary, "Just text, no JSON");
        assert!(plain.review_replies.is_empty());
        assert_eq!(AgentReport::from_final_message("{\"summary\":\"\"}").summary, "{\"summary\":\"\"}");
        let schema = report_schema();
        assert_eq!(schema["required"].as_array().unwrap().len(), schema["properties"].as_object().unwrap().len());
    }
}

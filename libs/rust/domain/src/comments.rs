//! The GitHub comments the platform writes (product spec §7): the single status comment of a run,
//! identified by a hidden machine-readable marker, whose phase only ever advances; and the
//! trigger-conflict and trigger-warning comments. Rendered in `ru` or `en`.

use crate::policy::{AccessProfile, RuntimeMode};
use crate::run::RunStatus;
use crate::stage::{Stage, TriggerKind};
use serde::{Deserialize, Serialize};

/// Locale of comment text; the platform's default is `ru`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    Ru,
    En,
}

impl Locale {
    /// `ru*` → ru, anything else → en.
    pub fn parse(s: &str) -> Self {
        if s.trim().to_lowercase().starts_with("ru") { Locale::Ru } else { Locale::En }
    }

    /// `ru` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Ru => "ru",
            Locale::En => "en",
        }
    }

    fn pick(self, ru: &'static str, en: &'static str) -> &'static str {
        match self {
            Locale::Ru => ru,
            Locale::En => en,
        }
    }
}

/// Phases of a run's status comment, in the only order they may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Created = 1,
    PreparingRuntime = 2,
    Started = 3,
    AuthRequired = 4,
    AuthResolved = 5,
    Ready = 6,
    Finished = 7,
    NamespaceDeleted = 8,
}

impl Phase {
    /// The wire value (`created`, `started`, `finished`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::PreparingRuntime => "preparing_runtime",
            Phase::Started => "started",
            Phase::AuthRequired => "auth_required",
            Phase::AuthResolved => "auth_resolved",
            Phase::Ready => "ready",
            Phase::Finished => "finished",
            Phase::NamespaceDeleted => "namespace_deleted",
        }
    }
}

/// A next-step link offered under a finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    pub label: String,
    pub url: String,
}

/// Everything the status comment shows; also stored, as JSON, in its hidden marker. Every field
/// may be absent (reports carry only what they know).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusState {
    pub run_id: String,
    pub phase: Option<Phase>,
    pub repository: Option<String>,
    pub issue_number: Option<i64>,
    pub pr_number: Option<i64>,
    pub pr_url: Option<String>,
    pub trigger_label: Option<String>,
    pub trigger_kind: Option<TriggerKind>,
    pub runtime_mode: Option<RuntimeMode>,
    pub target_env: Option<String>,
    pub build_ref: Option<String>,
    pub access_profile: Option<AccessProfile>,
    pub namespace: Option<String>,
    pub job: Option<String>,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    /// `succeeded`, `failed`, `canceled` once finished.
    pub run_status: Option<RunStatus>,
    pub failure_reason: Option<String>,
    pub console_url: Option<String>,
    #[serde(default)]
    pub next_steps: Vec<NextStep>,
}

const MARKER_PREFIX: &str = "<!-- codex-k8s:run-status ";
const MARKER_SUFFIX: &str = " -->";

impl StatusState {
    /// Merges a newer report into the stored state: the phase never goes back, and fields the
    /// report leaves empty keep their earlier value.
    pub fn merge(&self, newer: &StatusState) -> StatusState {
        fn pick<T: Clone>(new: &Option<T>, old: &Option<T>) -> Option<T> {
            new.clone().or_else(|| old.clone())
        }
        StatusState {
            run_id: if newer.run_id.is_empty() { self.run_id.clone() } else { newer.run_id.clone() },
            phase: match (self.phase, newer.phase) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => b.or(a),
            },
            repository: pick(&newer.repository, &self.repository),
            issue_number: pick(&newer.issue_number, &self.issue_number),
            pr_number: pick(&newer.pr_number, &self.pr_number),
            pr_url: pick(&newer.pr_url, &self.pr_url),
            trigger_label: pick(&newer.trigger_label, &self.trigger_label),
            trigger_kind: pick(&newer.trigger_kind, &self.trigger_kind),
            runtime_mode: pick(&newer.runtime_mode, &self.runtime_mode),
            target_env: pick(&newer.target_env, &self.target_env),
            build_ref: pick(&newer.build_ref, &self.build_ref),
            access_profile: pick(&newer.access_profile, &self.access_profile),
            namespace: pick(&newer.namespace, &self.namespace),
            job: pick(&newer.job, &self.job),
            model: pick(&newer.model, &self.model),
            reasoning_effort: pick(&newer.reasoning_effort, &self.reasoning_effort),
            run_status: pick(&newer.run_status, &self.run_status),
            failure_reason: pick(&newer.failure_reason, &self.failure_reason),
            console_url: pick(&newer.console_url, &self.console_url),
            next_steps: if newer.next_steps.is_empty() { self.next_steps.clone() } else { newer.next_steps.clone() },
        }
    }

    /// The hidden marker: the state as JSON in an HTML comment. `>` is escaped inside the JSON so
    /// no value (a title, a label) can close the comment early.
    pub fn marker(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"run_id\":{:?}}}", self.run_id));
        format!("{MARKER_PREFIX}{}{MARKER_SUFFIX}", json.replace('>', "\\u003e"))
    }

    /// The state in a comment body, if the body carries a marker.
    pub fn from_comment(body: &str) -> Option<StatusState> {
        let start = body.rfind(MARKER_PREFIX)? + MARKER_PREFIX.len();
        let end = body[start..].find(MARKER_SUFFIX)? + start;
        serde_json::from_str(&body[start..end]).ok()
    }
}

fn headline(phase: Phase, status: Option<RunStatus>, l: Locale) -> &'static str {
    match (phase, status) {
        (Phase::Created, _) => l.pick("🕒 Запуск агента запланирован", "🕒 Agent run scheduled"),
        (Phase::PreparingRuntime, _) => l.pick("🛠️ Готовим окружение", "🛠️ Preparing the environment"),
        (Phase::Started, _) => l.pick("▶️ Агент запущен", "▶️ Agent started"),
        (Phase::AuthRequired, _) => l.pick("🔐 Нужна авторизация Codex", "🔐 Codex authorisation required"),
        (Phase::AuthResolved | Phase::Ready, _) => l.pick("🤖 Агент работает", "🤖 Agent at work"),
        (Phase::Finished, Some(RunStatus::Succeeded)) => l.pick("✅ Запуск завершён", "✅ Run finished"),
        (Phase::Finished, Some(RunStatus::Canceled)) => l.pick("⏹️ Запуск отменён", "⏹️ Run cancelled"),
        (Phase::Finished, _) => l.pick("❌ Запуск завершился ошибкой", "❌ Run failed"),
        (Phase::NamespaceDeleted, _) => l.pick("🧹 Окружение запуска удалено", "🧹 Run environment deleted"),
    }
}

/// Escapes text for a Markdown table cell or inline position.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ").replace('<', "&lt;").replace('>', "&gt;")
}

/// A value shown as a code span in a table cell, escaped as [`cell`]: a backquote would end the
/// span early and let the rest be read as markdown, so it becomes a plain quote.
fn code(s: &str) -> String {
    format!("`{}`", cell(s).replace('`', "'"))
}

/// The status comment body in the given locale, ending with its marker.
pub fn render_status(state: &StatusState, locale: Locale) -> String {
    let phase = state.phase.unwrap_or(Phase::Created);
    let l = locale;
    let mut out = format!("### {}\n\n", headline(phase, state.run_status, l));
    if let Some(url) = &state.console_url {
        out.push_str(&format!("{} [{}]({url})\n\n", l.pick("Подробности:", "Details:"), l.pick("страница запуска", "run page")));
    }
    fn text(v: &Option<String>) -> Option<&str> {
        v.as_deref()
    }
    let rows: [(&str, &str, Option<&str>); 10] = [
        ("Триггер", "Trigger", text(&state.trigger_label)),
        ("Режим", "Runtime mode", state.runtime_mode.map(RuntimeMode::as_str)),
        ("Окружение", "Target environment", text(&state.target_env)),
        ("Ревизия сборки", "Build ref", text(&state.build_ref)),
        ("Профиль доступа", "Access profile", state.access_profile.map(AccessProfile::as_str)),
        ("Namespace", "Namespace", text(&state.namespace)),
        ("Job", "Job", text(&state.job)),
        ("Модель", "Model", text(&state.model)),
        ("Рассуждение", "Reasoning", text(&state.reasoning_effort)),
        ("Причина", "Reason", text(&state.failure_reason)),
    ];
    out.push_str(&format!("| {} | |\n|---|---|\n| {} | {} |\n", l.pick("Параметр", "Fact"), l.pick("Запуск", "Run"), code(&state.run_id)));
    for (ru, en, v) in rows {
        if let Some(v) = v {
            out.push_str(&format!("| {} | {} |\n", l.pick(ru, en), code(v)));
        }
    }
    if let Some(pr) = &state.pr_url {
        out.push_str(&format!("| PR | {} |\n", cell(pr)));
    }
    if phase >= Phase::Finished && !state.next_steps.is_empty() {
        out.push_str(&format!("\n**{}**\n", l.pick("Следующие шаги", "Next steps")));
        for s in &state.next_steps {
            out.push_str(&format!("- [{}]({})\n", cell(&s.label), s.url));
        }
    }
    out.push('\n');
    out.push_str(&state.marker());
    out
}

/// Launch profiles and the flow variant each stands for (spec §3.1, §7.2).
const PROFILES: [(&str, &[Stage]); 3] = [
    ("full", &Stage::MAIN_PATH),
    (
        "shortened",
        &[Stage::Intake, Stage::Prd, Stage::Design, Stage::Plan, Stage::Dev, Stage::Qa, Stage::Release, Stage::Postdeploy, Stage::Ops],
    ),
    ("very_short", &[Stage::Intake, Stage::Plan, Stage::Dev, Stage::Qa, Stage::Release, Stage::Postdeploy, Stage::Ops]),
];

fn label_of(stage: Stage) -> String {
    format!("run:{}", stage.slug())
}

fn variant_of(flows: &[&str]) -> &'static str {
    match flows {
        ["full"] => "full_flow",
        ["shortened"] => "shortened_flow",
        ["very_short"] => "very_short_flow",
        ["full", "shortened"] => "full_or_shortened_flow",
        ["full", "very_short"] => "full_or_very_short_flow",
        ["shortened", "very_short"] => "shortened_or_very_short_flow",
        _ => "all_flows",
    }
}

fn variant_text(variant: &str, l: Locale) -> &'static str {
    match variant {
        "revise" => l.pick("доработать по замечаниям", "revise after review"),
        "full_flow" => l.pick("полный поток", "full flow"),
        "shortened_flow" => l.pick("сокращённый поток", "shortened flow"),
        "very_short_flow" => l.pick("короткий поток", "very short flow"),
        "full_or_shortened_flow" | "full_or_very_short_flow" | "shortened_or_very_short_flow" | "all_flows" => {
            l.pick("следующий этап", "next stage")
        }
        "go_to_dev" => l.pick("перейти к разработке", "go to development"),
        "go_to_qa" => l.pick("перейти к тестированию", "go to QA"),
        "prepare_plan" => l.pick("подготовить план", "prepare the plan"),
        "reviewer" => l.pick("запросить ревью агента", "ask the reviewer agent"),
        "rethink" => l.pick("переосмыслить", "rethink"),
        "doc_audit" => l.pick("аудит документации", "documentation audit"),
        "self_improve" => l.pick("самоулучшение", "self-improve"),
        "restart_full" => l.pick("заново: полный поток", "restart: full flow"),
        "restart_shortened" => l.pick("заново: сокращённый поток", "restart: shortened flow"),
        "restart_very_short" => l.pick("заново: короткий поток", "restart: very short flow"),
        _ => l.pick("следующий шаг", "next step"),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a finished run can go next (spec §7.2): typed deep links into the console's next-step
/// dialog, never raw commands. `console` is the console's base URL.
pub fn next_steps(kind: TriggerKind, repository: &str, issue: Option<i64>, pr: Option<i64>, console: &str, l: Locale) -> Vec<NextStep> {
    let stage = kind.stage;
    let mut items: Vec<(&'static str, String, String)> = Vec::new(); // (action kind, target label, variant)
    let mut push = |action: &'static str, label: String, variant: &str| {
        if !items.iter().any(|(a, t, _)| *a == action && *t == label) {
            items.push((action, label, variant.to_string()));
        }
    };
    let stage_idx = Stage::MAIN_PATH.iter().position(|s| *s == stage);
    match stage {
        Stage::DocAudit => {
            push("issue_stage_transition", label_of(Stage::Plan), "prepare_plan");
            push("issue_stage_transition", label_of(Stage::Dev), "go_to_dev");
            push("issue_stage_transition", label_of(Stage::Qa), "go_to_qa");
        }
        Stage::SelfImprove => push("issue_stage_transition", label_of(Stage::Qa), "go_to_qa"),
        Stage::Rethink => {
            push("issue_stage_transition", label_of(Stage::Intake), "restart_full");
            push("issue_stage_transition", label_of(Stage::Prd), "restart_shortened");
            push("issue_stage_transition", label_of(Stage::Plan), "restart_very_short");
        }
        _ => {}
    }
    if stage.revisable() {
        push("issue_stage_transition", format!("{}:revise", label_of(stage)), "revise");
    }
    if stage_idx.is_some() {
        let mut forward: Vec<(String, Vec<&str>)> = Vec::new();
        for (flow, path) in PROFILES {
            if let Some(i) = path.iter().position(|s| *s == stage)
                && let Some(next) = path.get(i + 1)
            {
                match forward.iter_mut().find(|(t, _)| *t == label_of(*next)) {
                    Some((_, flows)) => flows.push(flow),
                    None => forward.push((label_of(*next), vec![flow])),
                }
            }
        }
        for (target, flows) in forward {
            push("issue_stage_transition", target, variant_of(&flows));
        }
    }
    if stage == Stage::Design {
        push("issue_stage_transition", label_of(Stage::Dev), "go_to_dev");
    }
    if pr.is_some() {
        push("pull_request_label_add", "need:reviewer".into(), "reviewer");
    }
    if let Some(i) = stage_idx {
        if i >= 1 {
            push("issue_stage_transition", label_of(Stage::Rethink), "rethink");
        }
        if i >= 6 {
            push("issue_stage_transition", label_of(Stage::DocAudit), "doc_audit");
        }
        if i >= 9 {
            push("issue_stage_transition", label_of(Stage::SelfImprove), "self_improve");
        }
    }
    let base = console.trim_end_matches('/');
    items
        .into_iter()
        .map(|(action, target, variant)| {
            let mut url = format!("{base}/?modal=next-step&repository_full_name={}", encode(repository));
            if let Some(i) = issue {
                url.push_str(&format!("&issue_number={i}"));
            }
            if let Some(p) = pr {
                url.push_str(&format!("&pull_request_number={p}"));
            }
            url.push_str(&format!("&action_kind={action}&target_label={}&display_variant={variant}", encode(&target)));
            NextStep { label: format!("{target} — {}", variant_text(&variant, l)), url }
        })
        .collect()
}

/// "Trigger label conflict": keep one `run:*` label and add it again.
pub fn render_conflict(labels: &[String], locale: Locale) -> String {
    let list = labels.iter().map(|l| format!("`{}`", cell(l))).collect::<Vec<_>>().join(", ");
    match locale {
        Locale::Ru => format!(
            "### ⚠️ Конфликт меток запуска\n\nНа задаче несколько меток `run:*`: {list}. Запуск не создан.\n\nОставьте одну метку, удалите остальные и добавьте нужную метку заново."
        ),
        Locale::En => format!(
            "### ⚠️ Trigger label conflict\n\nThe issue carries several `run:*` labels: {list}. No run was started.\n\nKeep one label, remove the others, then add the one you want again."
        ),
    }
}

/// The explanation and hint for an ignore reason code (generic text for unknown codes).
pub fn warning_text(reason: &str, locale: Locale) -> (&'static str, &'static str) {
    let l = locale;
    if reason.starts_with("sender_type_") {
        return (
            l.pick("Метку поставил не человек (бот или приложение).", "The label was added by a bot or an app, not a person."),
            l.pick(
                "Запуски начинает только метка, поставленная участником проекта.",
                "Runs start only from labels added by project members.",
            ),
        );
    }
    match reason {
        "sender_not_allowed" | "sender_login_missing" => (
            l.pick("Автор метки не зарегистрирован на платформе.", "Whoever added the label is not a user of the platform."),
            l.pick(
                "Попросите владельца платформы добавить вас и войдите один раз через GitHub.",
                "Ask the platform owner to add you, then sign in once with GitHub.",
            ),
        ),
        "sender_not_project_member" => (
            l.pick("Автор метки не участник проекта.", "Whoever added the label is not a member of the project."),
            l.pick(
                "Попросите администратора проекта добавить вас с ролью read_write.",
                "Ask a project admin to add you with the read_write role.",
            ),
        ),
        "sender_role_read_not_permitted" => (
            l.pick("У автора метки роль только на чтение.", "Whoever added the label has read-only access."),
            l.pick("Для запусков нужна роль read_write или admin.", "Starting runs needs the read_write or admin role."),
        ),
        "repository_not_bound_for_issue_label" | "repository_not_bound_for_pull_request" => (
            l.pick("Репозиторий не подключён к проекту платформы.", "The repository is not bound to a project of the platform."),
            l.pick("Подключите репозиторий в консоли и повторите.", "Bind the repository in the console and try again."),
        ),
        "issue_trigger_candidate_not_found" => (
            l.pick(
                "Для этого этапа нужна ветка-кандидат с открытым PR, но её нет.",
                "This stage needs a candidate branch with an open PR, and there is none.",
            ),
            l.pick("Сначала запустите разработку меткой ниже.", "Run development first with one of the labels below."),
        ),
        "pull_request_review_stage_label_conflict" => (
            l.pick(
                "На PR или задаче метки нескольких этапов — этап доработки неоднозначен.",
                "The PR or issue carries labels of several stages, so the stage to revise is ambiguous.",
            ),
            l.pick("Поставьте на задачу одну метку доработки.", "Put exactly one revise label on the issue."),
        ),
        "pull_request_review_stage_ambiguous" => (
            l.pick(
                "PR связан с несколькими задачами — этап доработки неоднозначен.",
                "The PR is linked to several issues, so the stage to revise is ambiguous.",
            ),
            l.pick("Поставьте на задачу одну метку доработки.", "Put exactly one revise label on the issue."),
        ),
        "pull_request_review_stage_not_resolved" => (
            l.pick("Не удалось определить этап для доработки по ревью.", "The stage to revise after this review could not be determined."),
            l.pick("Поставьте на задачу одну метку доработки.", "Put exactly one revise label on the issue."),
        ),
        _ => (
            l.pick("Событие не запустило агента.", "The event did not start an agent."),
            l.pick("Проверьте метки и права и повторите.", "Check the labels and permissions, then try again."),
        ),
    }
}

/// A trigger-warning comment: why nothing started, what to do, which labels to use.
pub fn render_warning(reason: &str, suggested: &[String], locale: Locale) -> String {
    let (why, hint) = warning_text(reason, locale);
    let mut out = format!("### ⚠️ {}\n\n{why}\n\n{hint}\n", locale.pick("Запуск не создан", "No run was started"));
    if !suggested.is_empty() {
        let list = suggested.iter().map(|l| format!("`{}`", cell(l))).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("\n{} {list}\n", locale.pick("Подходящие метки:", "Labels to use:")));
    }
    out.push_str(&format!("\n<sub>{} `{}`</sub>\n", locale.pick("Код причины:", "Reason code:"), cell(reason)));
    out
}

#[cfg(test)]
mod tests;

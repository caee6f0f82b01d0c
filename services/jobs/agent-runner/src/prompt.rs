//! The run's prompt (product spec §3.5): a seed found by the domain's lookup chain — first in the
//! repository's `.codex-k8s/prompts/`, then among the runner's built-in seeds — rendered over
//! `{{BaseBranch}}` and `{{PromptLocale}}`, inside the locale's envelope with the run's metadata,
//! the task, the completion contract and, with learning mode on, the request to explain.

use ck8s_domain::agent_run::seed_candidates;
use std::path::Path;

/// Built-in seeds (the end of the chain).
const BUILT_IN: [(&str, &str); 3] = [
    (
        "role-reviewer-work.md",
        "Review the pull request on this branch against the task (base: {{BaseBranch}}). Do not change, commit or push anything: read the code and run what helps you judge it. Report your findings as line notes on the changed lines and give a verdict.",
    ),
    (
        "default-work.md",
        "Implement what the issue asks in this repository, on the current branch (base: {{BaseBranch}}). Keep the change small and focused; add or update tests when the project has them.",
    ),
    (
        "default-revise.md",
        "Address every unresolved review comment on the pull request, on the same branch (base: {{BaseBranch}}). Change only what the review asks for.",
    ),
];

/// Facts the prompt carries.
#[derive(Debug, Clone)]
pub struct PromptContext {
    pub repository: String,
    pub run_id: String,
    pub issue_number: Option<i64>,
    pub issue_title: String,
    pub issue_body: String,
    pub agent_name: String,
    pub stage: String,
    pub role: String,
    /// `work`, `revise` or `discussion`.
    pub kind: String,
    pub trigger_label: String,
    pub base_branch: String,
    pub target_branch: String,
    /// `ru` or `en`.
    pub locale: String,
    pub existing_pr: Option<i64>,
    pub learning_mode: bool,
    /// Review comments to answer (revise).
    pub review_notes: Vec<String>,
}

/// A rendered prompt and where its seed came from (`repo:<file>` or `builtin:<file>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    pub source: String,
}

fn seed(repo_dir: &Path, ctx: &PromptContext) -> (String, String) {
    let candidates = seed_candidates(&ctx.stage, &ctx.role, &ctx.kind, &ctx.locale);
    for name in &candidates {
        match repo_seed(repo_dir, name) {
            Ok(Some(text)) => return (text, format!("repo:{name}")),
            Ok(None) => {}
            Err(why) => tracing::warn!(seed = %name, %why, "a repository seed was skipped"),
        }
    }
    for name in &candidates {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| n == name) {
            return (text.to_string(), format!("builtin:{name}"));
        }
    }
    let fallback = if ctx.kind == "revise" { BUILT_IN[2].1 } else { BUILT_IN[1].1 };
    (fallback.to_string(), format!("builtin:prompt_{}.tmpl", ctx.kind))
}

/// The largest repository seed read.
pub const SEED_CAP: u64 = 64 * 1024;

/// A seed of the repository (`.codex-k8s/prompts/<name>`): `None` when there is none; an error
/// when it is there but not a regular file of the repository — a symbolic link anywhere on its
/// path (it could point at `/proc/self/environ`), something else than a file, or over
/// [`SEED_CAP`] — or not UTF-8.
/// Why a repository seed was skipped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0} is a symbolic link")]
    Link(String),
    #[error("{part} is not a {wanted}")]
    WrongKind { part: String, wanted: &'static str },
    #[error("{0} bytes, over the {SEED_CAP}-byte cap")]
    TooLarge(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn repo_seed(repo_dir: &Path, name: &str) -> Result<Option<String>, SeedError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = repo_dir.to_path_buf();
    for (i, part) in [".codex-k8s", "prompts", name].iter().enumerate() {
        path.push(part);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let last = i == 2;
        if meta.file_type().is_symlink() {
            return Err(SeedError::Link(part.to_string()));
        }
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return Err(SeedError::WrongKind { part: part.to_string(), wanted: if last { "regular file" } else { "directory" } });
        }
        if last && meta.len() > SEED_CAP {
            return Err(SeedError::TooLarge(meta.len()));
        }
    }
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let f = std::fs::OpenOptions::new().read(true).custom_flags(nofollow).open(&path)?;
    let mut text = String::new();
    f.take(SEED_CAP).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Renders the run's prompt.
pub fn render(repo_dir: &Path, ctx: &PromptContext) -> Prompt {
    let (raw, source) = seed(repo_dir, ctx);
    let body = raw.replace("{{BaseBranch}}", &ctx.base_branch).replace("{{PromptLocale}}", &ctx.locale);
    let ru = ctx.locale == "ru";
    let l = |r: &'static str, e: &'static str| if ru { r } else { e };
    let mut out = String::new();
    out.push_str(l("# Задача агента codex-k8s\n\n", "# codex-k8s agent task\n\n"));
    out.push_str(&format!(
        "- {}: {}\n- {}: {}\n- {}: {}\n- {}: {} → {}\n- {}: {}\n",
        l("Репозиторий", "Repository"),
        ctx.repository,
        l("Запуск", "Run"),
        ctx.run_id,
        l("Агент", "Agent"),
        ctx.agent_name,
        l("Ветки", "Branches"),
        ctx.target_branch,
        ctx.base_branch,
        l("Метка", "Trigger label"),
        ctx.trigger_label,
    ));
    if let Some(n) = ctx.issue_number {
        out.push_str(&format!("- Issue: #{n}\n"));
    }
    if let Some(pr) = ctx.existing_pr {
        out.push_str(&format!("- {}: #{pr}\n", l("Существующий PR", "Existing PR")));
    }
    out.push_str(&format!("\n## {}\n\n{}\n", l("Инструкция", "Instructions"), body.trim()));
    out.push_str(&format!("\n## {}\n\n**{}**\n\n{}\n", l("Задача", "Task"), ctx.issue_title, ctx.issue_body.trim()));
    if !ctx.review_notes.is_empty() {
        out.push_str(&format!("\n## {}\n\n", l("Замечания ревью", "Review comments to answer")));
        for n in &ctx.review_notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out.push_str(&format!(
        "\n## {}\n\n- {}\n- {}\n- {}\n",
        l("Правила", "Rules"),
        l("Работайте только в этой ветке; не меняйте другие ветки.", "Work only on this branch; do not touch other branches."),
        l("Никогда не выводите токены и секреты.", "Never print tokens or secrets."),
        l("Отвечайте на русском языке.", "Answer in English."),
    ));
    out.push_str(&format!(
        "\n## {}\n\n{}\n",
        l("Итоговый отчёт", "Final report"),
        l(
            "Закончите JSON-отчётом: summary — что сделано; review_replies — ответы на замечания ревью по их id; line_notes — пояснения к ключевым строкам; explanation и verdict — если просят ниже.",
            "End with the JSON report: summary — what you did; review_replies — answers to review comments by their id; line_notes — notes on the key lines; explanation and verdict — when asked below."
        )
    ));
    if ctx.role == "reviewer" {
        out.push_str(&format!(
            "\n{}\n",
            l("verdict: APPROVE, REQUEST_CHANGES или COMMENT.", "verdict: APPROVE, REQUEST_CHANGES or COMMENT.")
        ));
    }
    if ctx.learning_mode {
        out.push_str(&format!(
            "\n## {}\n\n{}\n",
            l("Режим обучения", "Learning mode"),
            l(
                "В explanation объясните: почему вы сделали именно так, что даёт изменение и какие альтернативы вы отвергли и почему; в line_notes поясните ключевые строки.",
                "In explanation, say why you made the change this way, what it gains, and which alternatives you rejected and why; in line_notes, explain the key lines."
            )
        ));
    }
    Prompt { text: out, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PromptContext {
        PromptContext {
            repository: "acme/app".into(),
            run_id: "run-1".into(),
            issue_number: Some(7),
            issue_title: "Say hello".into(),
            issue_body: "Add a greeting".into(),
            agent_name: "AI Developer".into(),
            stage: "dev".into(),
            role: "dev".into(),
            kind: "work".into(),
            trigger_label: "run:dev".into(),
            base_branch: "main".into(),
            target_branch: "codex/issue-7".into(),
            locale: "en".into(),
            existing_pr: None,
            learning_mode: false,
            review_notes: vec![],
        }
    }

    #[test]
    fn repository_seeds_win_in_chain_order_and_built_ins_close_it() {
        let dir = std::env::temp_dir().join(format!("ck8s-prompt-{}", std::process::id()));
        let seeds = dir.join(".codex-k8s/prompts");
        std::fs::create_dir_all(&seeds).unwrap();
        let p = render(&dir, &ctx());
        assert_eq!(p.source, "builtin:default-work.md");
        assert!(p.text.contains("base: main") && p.text.contains("**Say hello**") && p.text.contains("Answer in English."));
        std::fs::write(seeds.join("dev-work.md"), "Generic dev seed for {{BaseBranch}} in {{PromptLocale}}").unwrap();
        assert_eq!(render(&dir, &ctx()).source, "repo:dev-work.md");
        std::fs::write(seeds.join("role-dev-work_en.md"), "Role seed").unwrap();
        assert_eq!(render(&dir, &ctx()).source, "repo:role-dev-work_en.md");
        std::fs::write(seeds.join("dev-dev-work_en.md"), "Most specific, base {{BaseBranch}}, locale {{PromptLocale}}").unwrap();
        let p = render(&dir, &ctx());
        assert_eq!(p.source, "repo:dev-dev-work_en.md");
        assert!(p.text.contains("Most specific, base main, locale en"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_seed_that_is_a_link_a_directory_or_too_big_is_skipped() {
        let dir = std::env::temp_dir().join(format!("ck8s-prompt-s-{}", std::process::id()));
        let seeds = dir.join(".codex-k8s/prompts");
        std::fs::create_dir_all(&seeds).unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", seeds.join("dev-dev-work_en.md")).unwrap();
        std::fs::create_dir_all(seeds.join("role-dev-work_en.md")).unwrap();
        std::fs::write(seeds.join("dev-work.md"), "x".repeat(usize::try_from(SEED_CAP).unwrap() + 1)).unwrap();
        let p = render(&dir, &ctx());
        assert_eq!(p.source, "builtin:default-work.md", "every repository seed was refused");
        assert!(!p.text.contains("PATH="), "the environment did not leak into the prompt");
        // A link higher up the path counts too.
        let other = std::env::temp_dir().join(format!("ck8s-prompt-o-{}", std::process::id()));
        std::fs::create_dir_all(other.join("prompts")).unwrap();
        std::fs::write(other.join("prompts/dev-work.md"), "from elsewhere").unwrap();
        std::fs::remove_dir_all(dir.join(".codex-k8s")).unwrap();
        std::os::unix::fs::symlink(&other, dir.join(".codex-k8s")).unwrap();
        assert_eq!(render(&dir, &ctx()).source, "builtin:default-work.md");
        assert_eq!(repo_seed(&dir, "dev-work.md").unwrap_err().to_string(), ".codex-k8s is a symbolic link");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[test]
    fn learning_mode_and_locale_shape_the_envelope() {
        let dir = std::env::temp_dir().join(format!("ck8s-prompt-l-{}", std::process::id()));
        let mut c = ctx();
        assert!(!render(&dir, &c).text.contains("Learning mode"));
        c.learning_mode = true;
        assert!(render(&dir, &c).text.contains("which alternatives you rejected"));
        c.locale = "ru".into();
        c.kind = "revise".into();
        c.review_notes = vec!["rename it".into()];
        let p = render(&dir, &c);
        assert_eq!(p.source, "builtin:default-revise.md");
        assert!(p.text.contains("Режим обучения") && p.text.contains("Замечания ревью") && p.text.contains("- rename it"));
    }
}

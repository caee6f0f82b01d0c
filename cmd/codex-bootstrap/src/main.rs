//! codex-bootstrap: the operator CLI of codex-k8s. This version validates a `services.yaml` and
//! prints its deploy plan; preflight, manifest rendering, secret sync, repository webhook and
//! label sync and cleanup arrive with the deploy work.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: codex-bootstrap validate [--file PATH]   (default PATH: services.yaml)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("validate") => validate(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("codex-bootstrap: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn validate(args: &[String]) -> ExitCode {
    let mut file = PathBuf::from("services.yaml");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--file", Some(p)) => file = PathBuf::from(p),
            _ => {
                eprintln!("codex-bootstrap: bad arguments {args:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let stack = match ck8s_stack::load_file(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("codex-bootstrap: invalid stack: {e}");
            return ExitCode::from(1);
        }
    };
    let plan = match ck8s_stack::deploy_plan(&stack) {
        Ok(p) => p,
        Err(p) => {
            eprintln!("codex-bootstrap: invalid stack: {}: {}: {}", file.display(), p.path, p.message);
            return ExitCode::from(1);
        }
    };
    println!(
        "{}: valid (project {}, environments: {})",
        file.display(),
        stack.project(),
        stack.spec.environments.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    println!("deploy order:");
    for (i, step) in plan.iter().enumerate() {
        let when = step.when.as_deref().map(|w| format!("  when {w}")).unwrap_or_default();
        println!("  {:>2}. [{}] {}{}", i + 1, step.group, step.unit, when);
    }
    ExitCode::SUCCESS
}

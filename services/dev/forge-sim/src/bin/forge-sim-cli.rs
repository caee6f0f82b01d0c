//! forge-sim-cli: act on a running forge-sim as a named user, for demos and end-to-end scenarios.
//!
//! ```text
//! forge-sim-cli [--url URL] user LOGIN [EMAIL]                    create a user; prints its token
//! forge-sim-cli [--url URL] --as LOGIN repo NAME                  create LOGIN/NAME
//! forge-sim-cli [--url URL] --as LOGIN issue OWNER/REPO TITLE [BODY]
//! forge-sim-cli [--url URL] --as LOGIN label OWNER/REPO NUMBER LABEL...
//! forge-sim-cli [--url URL] --as LOGIN comment OWNER/REPO NUMBER BODY
//! forge-sim-cli [--url URL] --as LOGIN pr OWNER/REPO HEAD BASE TITLE
//! forge-sim-cli [--url URL] --as LOGIN review OWNER/REPO NUMBER approve|request-changes|comment BODY [PATH:LINE:TEXT]...
//! forge-sim-cli [--url URL] --as LOGIN hook OWNER/REPO URL SECRET [EVENT...]
//! forge-sim-cli [--url URL] --as LOGIN push OWNER/REPO DIR [BRANCH]   commit DIR's changes and push them
//! ```
//!
//! The URL defaults to `$FORGE_SIM_URL`, then `http://127.0.0.1:8090`. Each command prints the
//! forge's JSON answer; an error answer exits with status 1 and its message.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "{}",
        include_str!("forge-sim-cli.rs").lines().skip(2).take(11).map(|l| l.trim_start_matches("//! ")).collect::<Vec<_>>().join("\n")
    );
    ExitCode::from(2)
}

/// One HTTP/1.1 request to forge-sim: status and decoded body.
fn request(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<(u16, Value), String> {
    let authority =
        base.strip_prefix("http://").ok_or_else(|| format!("--url must start with http:// (got {base})"))?.trim_end_matches('/');
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/vnd.github+json\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s =
        std::net::TcpStream::connect(authority).map_err(|e| format!("cannot reach forge-sim at {base}: {e} (is it running? set --url)"))?;
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    Ok((status, serde_json::from_str(&payload).unwrap_or(Value::Null)))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn token_of(base: &str, login: &str) -> Result<String, String> {
    let (s, v) = request(base, "POST", &format!("/_sim/users/{login}/tokens"), None, None)?;
    if s != 201 {
        return Err(format!("no user {login} on forge-sim (create it with `forge-sim-cli user {login}`)"));
    }
    Ok(v["token"].as_str().unwrap_or_default().to_string())
}

fn expect(status: u16, v: Value, ok: &[u16]) -> Result<Value, String> {
    if ok.contains(&status) {
        Ok(v)
    } else {
        Err(format!("forge-sim answered {status}: {}", v["message"].as_str().unwrap_or(&v.to_string())))
    }
}

fn git(dir: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {} failed: {}", args.first().unwrap_or(&""), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(base: &str, acting: Option<&str>, args: &[String]) -> Result<Value, String> {
    let a = |i: usize| args.get(i).map(String::as_str).ok_or_else(|| "missing arguments; run without arguments for usage".to_string());
    let who = || acting.ok_or_else(|| "this command needs --as LOGIN".to_string());
    match a(0)? {
        "user" => {
            let login = a(1)?;
            let email = args.get(2).cloned().unwrap_or_else(|| format!("{login}@forge-sim.local"));
            let (s, v) = request(base, "POST", "/_sim/users", None, Some(&json!({"login": login, "email": email})))?;
            expect(s, v, &[201])
        }
        "repo" => {
            let t = token_of(base, who()?)?;
            let (s, v) = request(base, "POST", "/_sim/repos", Some(&t), Some(&json!({"name": a(1)?})))?;
            expect(s, v, &[201])
        }
        "issue" => {
            let t = token_of(base, who()?)?;
            let body = json!({"title": a(2)?, "body": args.get(3)});
            let (s, v) = request(base, "POST", &format!("/repos/{}/issues", a(1)?), Some(&t), Some(&body))?;
            expect(s, v, &[201])
        }
        "label" => {
            let t = token_of(base, who()?)?;
            let labels: Vec<&String> = args.iter().skip(3).collect();
            if labels.is_empty() {
                return Err("name at least one label".into());
            }
            let (s, v) =
                request(base, "POST", &format!("/repos/{}/issues/{}/labels", a(1)?, a(2)?), Some(&t), Some(&json!({"labels": labels})))?;
            expect(s, v, &[200])
        }
        "comment" => {
            let t = token_of(base, who()?)?;
            let (s, v) =
                request(base, "POST", &format!("/repos/{}/issues/{}/comments", a(1)?, a(2)?), Some(&t), Some(&json!({"body": a(3)?})))?;
            expect(s, v, &[201])
        }
        "pr" => {
            let t = token_of(base, who()?)?;
            let body = json!({"head": a(2)?, "base": a(3)?, "title": a(4)?});
            let (s, v) = request(base, "POST", &format!("/repos/{}/pulls", a(1)?), Some(&t), Some(&body))?;
            expect(s, v, &[201])
        }
        "review" => {
            let t = token_of(base, who()?)?;
            let event = match a(3)? {
                "approve" => "APPROVE",
                "request-changes" => "REQUEST_CHANGES",
                "comment" => "COMMENT",
                other => return Err(format!("unknown verdict {other:?}: approve, request-changes or comment")),
            };
            let mut comments = Vec::new();
            for c in args.iter().skip(5) {
                let mut parts = c.splitn(3, ':');
                let (Some(path), Some(line), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(format!("line comment {c:?} must be PATH:LINE:TEXT"));
                };
                let line: i64 = line.parse().map_err(|_| format!("line comment {c:?}: LINE must be a number"))?;
                comments.push(json!({"path": path, "line": line, "body": text}));
            }
            let body = json!({"event": event, "body": a(4)?, "comments": comments});
            let (s, v) = request(base, "POST", &format!("/repos/{}/pulls/{}/reviews", a(1)?, a(2)?), Some(&t), Some(&body))?;
            expect(s, v, &[200])
        }
        "hook" => {
            let t = token_of(base, who()?)?;
            let events: Vec<&String> = args.iter().skip(4).collect();
            let events = if events.is_empty() {
                json!(["issues", "issue_comment", "pull_request", "pull_request_review", "push"])
            } else {
                json!(events)
            };
            let body = json!({"config": {"url": a(2)?, "secret": a(3)?, "content_type": "json"}, "events": events});
            let (s, v) = request(base, "POST", &format!("/repos/{}/hooks", a(1)?), Some(&t), Some(&body))?;
            expect(s, v, &[201])
        }
        "push" => {
            use base64::Engine;
            let login = who()?;
            let t = token_of(base, login)?;
            let (repo, dir) = (a(1)?, a(2)?);
            let branch = args.get(3).map(String::as_str).unwrap_or("main");
            if git(dir, &["rev-parse", "--git-dir"]).is_err() {
                git(dir, &["init", "-q", "--initial-branch", branch])?;
            }
            git(dir, &["add", "-A"])?;
            let clean = git(dir, &["status", "--porcelain"])?.is_empty();
            if !clean {
                let email = format!("user.email={login}@forge-sim.local");
                let name = format!("user.name={login}");
                git(dir, &["-c", &name, "-c", &email, "commit", "-q", "-m", &format!("Changes pushed by {login}")])?;
            }
            let header = format!(
                "http.extraHeader=Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"))
            );
            let url = format!("{}/git/{repo}.git", base.trim_end_matches('/'));
            git(dir, &["-c", &header, "push", "-q", &url, &format!("HEAD:refs/heads/{branch}")])?;
            Ok(json!({"pushed": git(dir, &["rev-parse", "HEAD"])?, "branch": branch, "repository": repo}))
        }
        other => Err(format!("unknown command {other:?}; run without arguments for usage")),
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut base = std::env::var("FORGE_SIM_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into());
    let mut acting = None;
    loop {
        match args.first().map(String::as_str) {
            Some("--url") if args.len() > 1 => {
                base = args[1].clone();
                args.drain(..2);
            }
            Some("--as") if args.len() > 1 => {
                acting = Some(args[1].clone());
                args.drain(..2);
            }
            _ => break,
        }
    }
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        return usage();
    }
    match run(&base, acting.as_deref(), &args) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("forge-sim-cli: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Maps GitHub webhook JSON onto the domain's event model. Missing or mistyped fields become
//! `None`/empty: the policy decides what a delivery without, say, an issue means.

use ck8s_domain::run_spec::{BranchRef, IssueSummary, PullRequestSummary, RepositorySummary};
use ck8s_domain::webhook::{Event, Issue, PullRequest, Push, Repo, Sender};
use serde_json::Value;

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(String::from)
}

fn i(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64()
}

fn labels(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|l| l.get("name").and_then(Value::as_str).map(String::from)).collect())
        .unwrap_or_default()
}

/// The domain event of a delivery.
pub fn to_event(delivery_id: &str, name: &str, p: &Value) -> Event {
    let repository = p.get("repository").filter(|r| r.is_object()).map(|r| Repo {
        id: i(r, &["id"]).unwrap_or_default(),
        full_name: s(r, &["full_name"]).unwrap_or_default(),
        default_branch: s(r, &["default_branch"]),
    });
    let sender = p.get("sender").filter(|r| r.is_object()).map(|u| Sender {
        id: i(u, &["id"]).unwrap_or_default(),
        login: s(u, &["login"]).unwrap_or_default(),
        kind: s(u, &["type"]).unwrap_or_default(),
    });
    let issue = p.get("issue").filter(|r| r.is_object()).map(|x| Issue {
        number: i(x, &["number"]).unwrap_or_default(),
        labels: labels(x.get("labels")),
        is_pull_request: x.get("pull_request").is_some_and(|pr| !pr.is_null()),
    });
    let pull_request = p.get("pull_request").filter(|r| r.is_object()).map(|x| PullRequest {
        number: i(x, &["number"]).unwrap_or_default(),
        labels: labels(x.get("labels")),
        head_ref: s(x, &["head", "ref"]).unwrap_or_default(),
        head_sha: s(x, &["head", "sha"]).unwrap_or_default(),
        state: s(x, &["state"]).unwrap_or_default(),
        updated_at: s(x, &["updated_at"]).unwrap_or_default(),
    });
    let push = (name == "push").then(|| Push {
        git_ref: s(p, &["ref"]).unwrap_or_default(),
        after: s(p, &["after"]).unwrap_or_default(),
        deleted: p.get("deleted").and_then(Value::as_bool).unwrap_or(false),
    });
    Event {
        delivery_id: delivery_id.to_string(),
        name: name.to_string(),
        action: s(p, &["action"]),
        repository,
        sender,
        label: s(p, &["label", "name"]),
        issue,
        pull_request,
        review_state: s(p, &["review", "state"]),
        comment_id: i(p, &["comment", "id"]),
        comment_author: s(p, &["comment", "user", "login"]),
        push,
    }
}

/// `{id, number, title, html_url, state, user, labels, pull_request?}` of the payload's issue.
/// The issue of a delivery as the run payload keeps it.
pub fn issue_summary(p: &Value) -> Option<IssueSummary> {
    let x = p.get("issue").filter(|v| v.is_object())?;
    Some(IssueSummary {
        number: i(x, &["number"]).unwrap_or_default(),
        id: i(x, &["id"]),
        title: s(x, &["title"]),
        html_url: s(x, &["html_url"]),
        state: s(x, &["state"]),
        user: s(x, &["user", "login"]),
        labels: labels(x.get("labels")),
        pull_request: x.get("pull_request").filter(|v| !v.is_null()).and_then(|pr| s(pr, &["html_url"])),
    })
}

/// The pull request of a delivery as the run payload keeps it.
pub fn pull_request_summary(p: &Value) -> Option<PullRequestSummary> {
    let x = p.get("pull_request").filter(|v| v.is_object())?;
    Some(PullRequestSummary {
        number: i(x, &["number"]).unwrap_or_default(),
        id: i(x, &["id"]),
        title: s(x, &["title"]),
        html_url: s(x, &["html_url"]),
        state: s(x, &["state"]),
        head: BranchRef { name: s(x, &["head", "ref"]), sha: s(x, &["head", "sha"]) },
        base: BranchRef { name: s(x, &["base", "ref"]), sha: None },
        user: s(x, &["user", "login"]),
        labels: labels(x.get("labels")),
    })
}

/// The repository of a delivery as the run payload keeps it.
pub fn repository_summary(p: &Value) -> RepositorySummary {
    let r = p.get("repository").cloned().unwrap_or(Value::Null);
    RepositorySummary {
        id: i(&r, &["id"]),
        full_name: s(&r, &["full_name"]).unwrap_or_default(),
        name: s(&r, &["name"]),
        private: r.get("private").and_then(Value::as_bool),
        fork: r.get("fork").and_then(Value::as_bool),
    }
}

//! GitHub's JSON shapes of the forge's objects (users, repositories, labels, issues, issue
//! comments) as the REST API answers them and webhook payloads carry them, with every URL under the
//! forge's base URL.

use crate::state::{Comment, Forge, Issue, Label, Repo};
use serde_json::{Value, json};

/// A user as GitHub shows it in other objects (`simple-user`); unknown logins get id 0.
pub fn user(f: &Forge, login: &str) -> Value {
    let u = f.users.get(&login.to_lowercase());
    let login = u.map(|u| u.login.clone()).unwrap_or_else(|| login.to_string());
    let api = format!("{}/users/{login}", f.base_url);
    json!({
        "login": login, "id": u.map(|u| u.id).unwrap_or(0), "node_id": format!("U_{login}"),
        "avatar_url": format!("{}/avatars/{login}", f.base_url), "gravatar_id": "",
        "url": api, "html_url": format!("{}/{login}", f.base_url),
        "followers_url": format!("{api}/followers"), "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"), "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"), "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"), "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": u.map(|u| u.kind.clone()).unwrap_or_else(|| "User".into()), "site_admin": false,
    })
}

/// A repository as webhook payloads and nested objects carry it (the REST answer adds a few fields).
pub fn repo(f: &Forge, r: &Repo) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    let api = format!("{}/repos/{full}", f.base_url);
    let open = r.issues.iter().filter(|i| i.state == "open").count();
    let mut v = json!({
        "id": r.id, "node_id": format!("R_{}", r.id), "name": r.name, "full_name": full, "private": r.private,
        "owner": user(f, &r.owner), "html_url": format!("{}/{full}", f.base_url), "description": null, "fork": false,
        "url": api, "default_branch": r.default_branch,
        "clone_url": format!("{}/git/{full}.git", f.base_url), "git_url": format!("{}/git/{full}.git", f.base_url),
        "ssh_url": format!("git@forge-sim:{full}.git"), "svn_url": format!("{}/{full}", f.base_url),
        "mirror_url": null, "homepage": null, "language": null, "license": null,
        "visibility": if r.private { "private" } else { "public" },
        "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers": 0, "watchers_count": 0, "size": 0,
        "open_issues": open, "open_issues_count": open,
        "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false,
        "has_downloads": false, "archived": false, "disabled": false,
        "pushed_at": r.created_at, "created_at": r.created_at, "updated_at": r.created_at,
    });
    for (field, suffix) in [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        v[field] = json!(format!("{api}{suffix}"));
    }
    v
}

/// A label.
pub fn label(f: &Forge, r: &Repo, l: &Label) -> Value {
    json!({
        "id": l.id, "node_id": format!("LA_{}", l.id), "url": format!("{}/repos/{}/{}/labels/{}", f.base_url, r.owner, r.name, l.name),
        "name": l.name, "color": l.color, "default": false, "description": l.description,
    })
}

/// An issue; a pull request's issue carries `pull_request` links.
pub fn issue(f: &Forge, r: &Repo, i: &Issue) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    let labels: Vec<Value> = i
        .labels
        .iter()
        .map(|n| match r.labels.get(&n.to_lowercase()) {
            Some(l) => label(f, r, l),
            None => json!({"name": n}),
        })
        .collect();
    let api = format!("{}/repos/{full}/issues/{}", f.base_url, i.number);
    let mut v = json!({
        "id": i.id, "node_id": format!("I_{}", i.id), "number": i.number, "title": i.title, "body": i.body, "state": i.state,
        "user": user(f, &i.user), "labels": labels, "comments": i.comments.len(), "locked": false,
        "url": api, "html_url": format!("{}/{full}/issues/{}", f.base_url, i.number),
        "comments_url": format!("{api}/comments"), "events_url": format!("{api}/events"), "labels_url": format!("{api}/labels{{/name}}"),
        "repository_url": format!("{}/repos/{full}", f.base_url), "assignee": null, "assignees": [], "milestone": null,
        "created_at": i.created_at, "updated_at": i.updated_at, "closed_at": null, "author_association": "OWNER",
    });
    if i.pull.is_some() {
        let html = format!("{}/{full}/pull/{}", f.base_url, i.number);
        v["pull_request"] = json!({
            "url": format!("{}/repos/{full}/pulls/{}", f.base_url, i.number), "html_url": html,
            "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"), "merged_at": null,
        });
    }
    v
}

/// A comment of issue number `issue`.
pub fn comment(f: &Forge, r: &Repo, issue: i64, c: &Comment) -> Value {
    let full = format!("{}/{}", r.owner, r.name);
    json!({
        "id": c.id, "node_id": format!("IC_{}", c.id), "body": c.body, "user": user(f, &c.user),
        "url": format!("{}/repos/{full}/issues/comments/{}", f.base_url, c.id),
        "html_url": format!("{}/{full}/issues/{issue}#issuecomment-{}", f.base_url, c.id),
        "issue_url": format!("{}/repos/{full}/issues/{issue}", f.base_url),
        "created_at": c.created_at, "updated_at": c.updated_at, "author_association": "OWNER",
    })
}

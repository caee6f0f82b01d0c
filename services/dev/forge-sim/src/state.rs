//! The simulated forge, in memory: users and their tokens, repositories with their labels,
//! issues (pull requests included), comments and reactions, hooks and their deliveries, OAuth apps
//! and grants, the injected faults and the recorded answers. Plain data and the operations that
//! keep it consistent (ids, tokens, new users and repositories with their bare git repository);
//! nothing here speaks HTTP.

pub mod bare;
mod controls;
mod hook;
mod oauth_app;
mod pull;

pub use controls::{Exchange, Faults};
pub use hook::{Delivery, Hook};
pub use oauth_app::{App, Grant};
pub use pull::{Pull, ReviewCommentRec, ReviewRec};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A user of the simulated forge.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub id: i64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: i64,
    pub body: String,
    pub user: String,
    pub created_at: String,
    pub updated_at: String,
    /// When it was created, for the simulated list lag.
    pub born: std::time::Instant,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: i64,
    pub number: i64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub user: String,
    pub labels: Vec<String>,
    pub comments: Vec<Comment>,
    pub reactions: Vec<(String, String)>,
    pub created_at: String,
    pub updated_at: String,
    /// Set when the issue is a pull request.
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub private: bool,
    pub labels: BTreeMap<String, Label>,
    pub issues: Vec<Issue>,
    /// Files per ref (branch name or commit sha), set through `/_sim/repos/{o}/{r}/files`.
    pub files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Collaborators and their permission (`admin`, `write`, `read`, ...).
    pub collaborators: BTreeMap<String, String>,
    pub created_at: String,
}

impl Repo {
    /// Where issue (or pull request) `n` is in `issues`.
    pub fn issue_index(&self, n: i64) -> Option<usize> {
        self.issues.iter().position(|i| i.number == n)
    }
}

/// The whole simulated forge, in memory.
#[derive(Default)]
pub struct Forge {
    next_id: i64,
    pub users: BTreeMap<String, User>,
    tokens: BTreeMap<String, String>,
    pub repos: BTreeMap<String, Repo>,
    /// Reactions to issue comments: comment id, user, content.
    pub comment_reactions: Vec<(i64, String, String)>,
    pub hooks: Vec<Hook>,
    deliveries: Vec<Delivery>,
    pub faults: Faults,
    pub exchanges: Vec<Exchange>,
    pub base_url: String,
    /// Where the bare git repositories live.
    pub git_root: PathBuf,
    pub oauth_apps: BTreeMap<String, App>,
    pub oauth_grants: BTreeMap<String, Grant>,
    /// When the forge started (users' `created_at`).
    pub created_at: Option<String>,
}

/// Shared state of the handlers.
pub type Shared = Arc<Mutex<Forge>>;

/// Why the scripting API could not add a user or a repository (the message is the 422's).
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("login must be letters, digits or '-'")]
    BadLogin,
    #[error("user {0} exists")]
    UserExists(String),
    #[error("unknown owner {0}")]
    UnknownOwner(String),
    #[error("repository {owner}/{name} exists")]
    RepoExists { owner: String, name: String },
    #[error(transparent)]
    Git(#[from] bare::GitError),
}

/// The current time as GitHub writes it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The key of `owner/name` in [`Forge::repos`] (GitHub's names are case-insensitive).
pub fn key(owner: &str, name: &str) -> String {
    format!("{}/{}", owner.to_lowercase(), name.to_lowercase())
}

/// Random bits for tokens and codes.
pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b)
}

impl Forge {
    /// An empty forge whose URLs start with `base_url`, with git repositories under `git_root`.
    pub fn new(base_url: String, git_root: PathBuf) -> Self {
        Self { base_url, git_root, created_at: Some(now()), ..Default::default() }
    }

    /// A new API token of `login` (an OAuth grant).
    pub fn issue_token(&mut self, login: &str) -> String {
        let token = format!("fsim_oauth_{login}_{:016x}", rand_u64());
        self.tokens.insert(token.clone(), login.to_lowercase());
        token
    }

    /// The user of an API token.
    pub fn user_of_token(&self, token: &str) -> Option<User> {
        self.tokens.get(token).and_then(|l| self.users.get(l)).cloned()
    }

    /// Whether `owner/name` exists.
    pub fn has_repo(&self, owner: &str, name: &str) -> bool {
        self.repos.contains_key(&key(owner, name))
    }

    /// Registers a hook on a repository.
    pub fn add_hook(&mut self, owner: &str, name: &str, url: String, secret: String, events: Vec<String>) -> Hook {
        let hook = Hook { id: self.id(), repo_key: key(owner, name), url, secret, events, active: true, created_at: now() };
        self.hooks.push(hook.clone());
        hook
    }

    /// Hooks of a repository.
    pub fn hooks_of(&self, owner: &str, name: &str) -> Vec<Hook> {
        let k = key(owner, name);
        self.hooks.iter().filter(|h| h.repo_key == k).cloned().collect()
    }

    /// Every delivery so far.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// Records a delivery attempt.
    pub fn record_delivery(&mut self, d: Delivery) {
        self.deliveries.push(d);
    }

    /// A new id, unique across every kind of object.
    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a user and returns its API token.
    pub fn add_user(&mut self, login: &str, email: &str, kind: &str) -> Result<String, AddError> {
        if login.is_empty() || !login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '[' || c == ']') {
            return Err(AddError::BadLogin);
        }
        if self.users.contains_key(&login.to_lowercase()) {
            return Err(AddError::UserExists(login.into()));
        }
        let id = self.id();
        self.users.insert(login.to_lowercase(), User { id, login: login.into(), email: email.into(), kind: kind.into() });
        let token = format!("fsim_{login}_{:016x}", rand_u64());
        self.tokens.insert(token.clone(), login.to_lowercase());
        Ok(token)
    }

    /// Creates a repository owned by `owner` with a default branch `main`, and its bare git repository.
    pub fn add_repo(&mut self, owner: &str, name: &str) -> Result<i64, AddError> {
        if !self.users.contains_key(&owner.to_lowercase()) {
            return Err(AddError::UnknownOwner(owner.into()));
        }
        let k = key(owner, name);
        if self.repos.contains_key(&k) {
            return Err(AddError::RepoExists { owner: owner.into(), name: name.into() });
        }
        bare::init(&self.git_dir(owner, name))?;
        let id = self.id();
        let repo = Repo {
            id,
            owner: owner.into(),
            name: name.into(),
            default_branch: "main".into(),
            private: false,
            labels: BTreeMap::new(),
            issues: vec![],
            files: BTreeMap::new(),
            collaborators: BTreeMap::new(),
            created_at: now(),
        };
        self.repos.insert(k, repo);
        Ok(id)
    }

    /// The bare repository of `owner/name`.
    pub fn git_dir(&self, owner: &str, name: &str) -> PathBuf {
        self.git_root.join(owner.to_lowercase()).join(format!("{}.git", name.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 422s of `/_sim/users` and `/_sim/repos` carry these messages.
    #[test]
    fn refusals_keep_their_messages() {
        let root = std::env::temp_dir().join(format!("forge-sim-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut f = Forge::new("http://forge-sim".into(), root.clone());
        assert_eq!(f.add_user("bad login", "b@example.com", "User").unwrap_err().to_string(), "login must be letters, digits or '-'");
        f.add_user("alice", "a@example.com", "User").unwrap();
        assert_eq!(f.add_user("Alice", "a@example.com", "User").unwrap_err().to_string(), "user Alice exists");
        assert_eq!(f.add_repo("bob", "app").unwrap_err().to_string(), "unknown owner bob");
        f.add_repo("alice", "app").unwrap();
        assert!(f.git_dir("alice", "app").join("HEAD").is_file(), "a bare repository");
        assert_eq!(f.add_repo("ALICE", "App").unwrap_err().to_string(), "repository ALICE/App exists");
        // A file where the owner's directory belongs: the bare repository cannot be created.
        f.add_user("carol", "c@example.com", "User").unwrap();
        std::fs::write(root.join("carol"), b"").unwrap();
        let e = f.add_repo("carol", "app").unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot create {}: ", f.git_dir("carol", "app").display())), "{e}");
        assert!(!f.has_repo("carol", "app"));
        let _ = std::fs::remove_dir_all(&root);
    }
}

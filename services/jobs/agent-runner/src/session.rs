//! The Codex session as stored in snapshots (product spec §6.3): the newest rollout file under
//! `$CODEX_HOME/sessions` (JSON Lines), carried as `{file, lines}` with secrets redacted, and
//! restored to the same relative path in a fresh `CODEX_HOME` so `codex exec resume` finds it.

use ck8s_domain::agent_run::redact_all;
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};

/// Restoring a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the stored session is malformed: {0}")]
    Malformed(String),
    #[error("cannot write the restored session: {0}")]
    Io(#[from] std::io::Error),
}

/// The largest rollout file read.
pub const ROLLOUT_CAP: u64 = 64 * 1024 * 1024;

/// Rollout files under `dir`. The agent wrote this tree, so nothing in it is followed: links are
/// skipped (one could point at `/proc/<runner>/environ`), and so are files that are not plain,
/// single-linked files of a sane size.
fn rollouts(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let (p, Ok(meta)) = (e.path(), std::fs::symlink_metadata(e.path())) else { continue };
        if meta.is_dir() && depth < 8 {
            rollouts(&p, out, depth + 1);
        } else if meta.is_file() && meta.nlink() == 1 && meta.len() <= ROLLOUT_CAP && p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
}

/// Reads a file without following a link at its end, at most [`ROLLOUT_CAP`] bytes.
fn read_plain(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let f = std::fs::OpenOptions::new().read(true).custom_flags(nofollow).open(path).ok()?;
    let mut bytes = Vec::new();
    f.take(ROLLOUT_CAP).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The newest rollout under `home/sessions` whose name mentions `session_id` (else the newest of
/// all), as `{file, lines}`; lines that are not JSON are dropped, secrets redacted, NULs removed.
pub fn collect(home: &Path, session_id: Option<&str>, secrets: &[&str]) -> Option<Value> {
    let root = home.join("sessions");
    let mut files = Vec::new();
    rollouts(&root, &mut files, 0);
    let newest = |fs: Vec<&PathBuf>| fs.into_iter().max_by_key(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok()).cloned();
    let matching: Vec<&PathBuf> =
        files.iter().filter(|p| session_id.is_some_and(|id| p.file_name().is_some_and(|n| n.to_string_lossy().contains(id)))).collect();
    let file = if matching.is_empty() { newest(files.iter().collect())? } else { newest(matching)? };
    let text = read_plain(&file)?;
    let lines: Vec<Value> =
        text.lines().filter_map(|l| serde_json::from_str::<Value>(&redact_all(l, secrets).replace("\\u0000", "")).ok()).collect();
    let rel = file.strip_prefix(&root).ok()?.to_string_lossy().replace('\\', "/");
    Some(json!({"file": rel, "lines": lines}))
}

/// The Codex session id of a collected `{file, lines}` session: its `session_meta` record's id,
/// else the UUID at the end of the rollout's file name.
pub fn session_id(collected: &Value) -> Option<String> {
    let from_meta = collected["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["type"] == "session_meta")
        .and_then(|l| l["payload"]["id"].as_str().or_else(|| l["id"].as_str()).map(String::from));
    from_meta.or_else(|| {
        let name = collected["file"].as_str()?.rsplit('/').next()?.strip_suffix(".jsonl")?;
        let tail = name.get(name.len().checked_sub(36)?..)?;
        uuid::Uuid::parse_str(tail).ok().map(|u| u.to_string())
    })
}

/// Writes a stored `{file, lines}` session back under `home/sessions`; returns its path.
pub fn restore(home: &Path, stored: &Value) -> Result<PathBuf, SessionError> {
    let rel = stored["file"].as_str().ok_or_else(|| SessionError::Malformed("no file name".into()))?;
    let rel_path = Path::new(rel);
    if rel.is_empty() || !rel.ends_with(".jsonl") || !rel_path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(SessionError::Malformed(format!("unsafe file name {rel:?}")));
    }
    let lines = stored["lines"].as_array().ok_or_else(|| SessionError::Malformed("no lines".into()))?;
    let path = home.join("sessions").join(rel_path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_without_secrets_and_unsafe_names_are_refused() {
        let home = std::env::temp_dir().join(format!("ck8s-session-{}", std::process::id()));
        let dir = home.join("sessions/2026/11/23");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rollout-old-aaaa.jsonl"), "{\"type\":\"session_meta\",\"id\":\"aaaa\"}\n").unwrap();
        std::fs::write(
            dir.join("rollout-new-bbbb.jsonl"),
            "{\"type\":\"session_meta\",\"id\":\"bbbb\"}\nnot json\n{\"type\":\"response_item\",\"text\":\"key sk-secret-123456\"}\n",
        )
        .unwrap();
        let v = collect(&home, Some("bbbb"), &["sk-secret-123456"]).unwrap();
        assert_eq!(v["file"], "2026/11/23/rollout-new-bbbb.jsonl");
        assert_eq!(v["lines"].as_array().unwrap().len(), 2);
        assert!(!v.to_string().contains("sk-secret-123456") && v.to_string().contains("[REDACTED]"));
        assert_eq!(collect(&home, Some("aaaa"), &[]).unwrap()["file"], "2026/11/23/rollout-old-aaaa.jsonl");

        let fresh = home.join("fresh");
        let p = restore(&fresh, &v).unwrap();
        assert_eq!(p, fresh.join("sessions/2026/11/23/rollout-new-bbbb.jsonl"));
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
        for bad in [
            json!({"file": "../x.jsonl", "lines": []}),
            json!({"file": "/etc/x.jsonl", "lines": []}),
            json!({"file": "a.txt", "lines": []}),
            json!({"lines": []}),
            json!({"file": "a.jsonl"}),
        ] {
            assert!(matches!(restore(&fresh, &bad), Err(SessionError::Malformed(_))), "{bad}");
        }
        assert!(collect(&home.join("nothing"), None, &[]).is_none());
        // What the agent planted is not followed: a link named like a rollout, a linked directory.
        let planted = home.join("planted");
        std::fs::create_dir_all(planted.join("sessions/x")).unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", planted.join("sessions/x/rollout-cccc.jsonl")).unwrap();
        std::os::unix::fs::symlink(&dir, planted.join("sessions/linked")).unwrap();
        assert!(collect(&planted, Some("cccc"), &[]).is_none(), "neither link was read");
        assert_eq!(session_id(&v).as_deref(), Some("bbbb"), "from the session_meta record");
        let by_name = json!({"file": "2026/12/06/rollout-2026-12-06T10-00-00-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.jsonl", "lines": []});
        assert_eq!(session_id(&by_name).as_deref(), Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), "from the file name");
        let _ = std::fs::remove_dir_all(&home);
    }
}

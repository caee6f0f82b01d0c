//! Stages and trigger kinds (product spec §2.1, §3.1).

/// Stages that have a `:revise` variant, in the order of the main path plus the extras.
pub const REVISABLE_STAGES: [&str; 13] =
    ["intake", "vision", "prd", "arch", "design", "plan", "dev", "qa", "release", "postdeploy", "ops", "doc_audit", "self_improve"];

/// Trigger kinds without a revise variant.
pub const SINGLE_KINDS: [&str; 2] = ["rethink", "ai_repair"];

/// Whether `kind` is a trigger kind (`dev`, `dev_revise`, `rethink`, ...).
pub fn is_trigger_kind(kind: &str) -> bool {
    let base = kind.strip_suffix("_revise").unwrap_or(kind);
    REVISABLE_STAGES.contains(&base) || (base == kind && SINGLE_KINDS.contains(&kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_kinds() {
        for k in ["dev", "dev_revise", "self_improve_revise", "rethink", "ai_repair", "doc_audit"] {
            assert!(is_trigger_kind(k), "{k}");
        }
        for k in ["rethink_revise", "ai_repair_revise", "debug", "", "dev-revise"] {
            assert!(!is_trigger_kind(k), "{k}");
        }
    }
}

#!/usr/bin/env bash
# The seams between services stay typed (ADR-0014): only the store (and test support and the
# benchmarks, which measure raw PostgreSQL as their baseline) may depend on sqlx, so all SQL of the
# platform lives in ck8s-store; and no library or service returns errors as `String` — only the
# command-line tools (devstack, forge-sim-cli, codex-bootstrap) may. Fails naming each offender.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0

# 1. sqlx as a normal dependency only where SQL may live.
allowed_sqlx='^(libs/rust/store|libs/rust/testkit|tools/webhook-bench|tools/worker-bench)/Cargo.toml$'
for manifest in $(git ls-files '*Cargo.toml' | grep -v '^Cargo.toml$'); do
  if awk '/^\[/{s=$0} s=="[dependencies]" && /^sqlx[[:space:]]*=/{found=1} END{exit !found}' "$manifest" \
     && ! [[ "$manifest" =~ $allowed_sqlx ]]; then
    echo "check-seams: $manifest depends on sqlx; move its SQL into ck8s-store (a repository function returning StoreError)" >&2
    status=1
  fi
done

# 2. No `Result<_, String>` outside tests and the command-line tools.
offenders=$(git ls-files '*.rs' \
  | grep -v -E '(^|/)tests/|/tests\.rs$|^tools/devstack/|/bin/forge-sim-cli\.rs$|^cmd/codex-bootstrap/' \
  | xargs grep -n -E 'Result<[^;{]*,[[:space:]]*String>' \
  | grep -v -E 'BTreeMap<String, String>|HashMap<String, String>|Vec<\(String, String\)>' || true)
if [ -n "$offenders" ]; then
  echo "check-seams: errors as String (use a typed error enum, mapped once at the edge):" >&2
  echo "$offenders" | sed 's/^/  /' >&2
  status=1
fi

[ "$status" = 0 ] && echo "check-seams: SQL only in ck8s-store, no String errors outside the CLIs"
exit "$status"

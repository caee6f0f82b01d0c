#!/usr/bin/env bash
# The domain crate stays pure: it must never depend (directly or transitively) on database,
# transport, cluster or async-runtime crates. Fails listing the offenders and who pulls them in.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
forbidden='^(sqlx|sqlx-core|sqlx-postgres|kube|kube-client|kube-runtime|k8s-openapi|tonic|axum|hyper|reqwest|octocrab|tokio)$'
deps=$(cargo tree -p ck8s-domain -e normal,build --prefix none --format '{p}' --locked | awk '{print $1}' | sort -u)
bad=$(echo "$deps" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
  echo "check-domain-deps: ck8s-domain must stay pure but depends on:" >&2
  for b in $bad; do
    echo "  - $b, via:" >&2
    cargo tree -p ck8s-domain -e normal,build -i "$b" --locked 2>/dev/null | sed 's/^/      /' >&2
  done
  echo "Move that code to an adapter crate (store, forge, runtime, a service) and keep a port trait in the domain." >&2
  exit 1
fi
echo "check-domain-deps: ck8s-domain is pure ($(echo "$deps" | wc -l) crates, none forbidden)"

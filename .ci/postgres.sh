#!/usr/bin/env bash
# The scale-out path: the API, ingest-worker, run-store and OpenAPI fuzz suites against a throwaway PostgreSQL.
#
# Starts PostgreSQL (initdb in a temp dir, a free port on 127.0.0.1, trust auth), waits for pg_isready,
# runs the suites with RAGLINE_TEST_DATABASE_URL (each app the tests start gets a fresh database, see
# tests/helpers/postgres.py), then always stops the server and removes the temp dir. Exits with pytest's status.
#
#   .ci/postgres.sh [extra pytest args]      PG_BIN=/path/to/bin overrides where the binaries are looked for
#
# As root (CI) the server runs as the `postgres` OS user (created if missing): initdb refuses to run as root.
# Missing PostgreSQL binaries are an error, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}

find_pg_bin() {
    local dir
    for dir in "${PG_BIN:-}" /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin /usr/pgsql-*/bin; do
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/pg_isready" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
        return 0
    fi
    return 1
}

if ! BIN=$(find_pg_bin); then
    cat >&2 <<'EOF'
.ci/postgres.sh: ERROR: PostgreSQL server binaries (initdb, pg_ctl, pg_isready) not found.
  Looked in $PG_BIN, /usr/lib/postgresql/15/bin, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin and pg_config --bindir.
  Install them (Debian: apt-get install -y postgresql-15) or set PG_BIN. The PostgreSQL suites are NOT skipped.
EOF
    exit 2
fi

# initdb refuses root: as root, run the server binaries as `postgres` (created here when the machine lacks it)
if [[ $EUID -eq 0 ]]; then
    if ! id -u postgres >/dev/null 2>&1; then
        echo ".ci/postgres.sh: creating OS user postgres"
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /bin/sh postgres
    fi
    PG_USER=postgres
else
    PG_USER=$(id -un)
fi

as_pg() {
    # run "$@" as $PG_USER from a directory it can read
    if [[ $EUID -ne 0 ]]; then
        (cd "$TMP" && "$@")
    elif command -v runuser >/dev/null; then
        (cd "$TMP" && runuser -u "$PG_USER" -- "$@")
    else
        (cd "$TMP" && su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")")
    fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ragline-pg.XXXXXX")
DATA="$TMP/data"
LOG="$TMP/server.log"
STARTED=0

cleanup() {
    local status=$?
    if [[ $STARTED -eq 1 ]]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $EUID -eq 0 ]]; then
    chown "$PG_USER:" "$TMP"
fi
chmod 700 "$TMP"

PORT=$("$VENV_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo ".ci/postgres.sh: PostgreSQL from $BIN as $PG_USER on 127.0.0.1:$PORT ($TMP)"
as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$TMP/initdb.log" 2>&1 || {
    cat "$TMP/initdb.log" >&2
    echo ".ci/postgres.sh: ERROR: initdb failed" >&2
    exit 2
}
# a throwaway server: durability off for speed (nothing here tests PostgreSQL crash safety)
OPTS="-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
STARTED=1
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "$OPTS" -w -t 60 start >/dev/null || {
    cat "$LOG" >&2 || true
    echo ".ci/postgres.sh: ERROR: PostgreSQL did not start" >&2
    exit 2
}

ready=0
for _ in $(seq 1 120); do
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres; then
        ready=1
        break
    fi
    sleep 0.25
done
if [[ $ready -ne 1 ]]; then
    cat "$LOG" >&2 || true
    echo ".ci/postgres.sh: ERROR: PostgreSQL on 127.0.0.1:$PORT not accepting connections after 30 s" >&2
    exit 2
fi

SUITES=(tests/api tests/ingest/test_worker.py tests/ingest/test_queue.py tests/e2e/test_openapi_fuzz.py)
if [[ -f tests/conformance/test_run_stores.py ]]; then
    SUITES+=(tests/conformance/test_run_stores.py)
fi

# pytest runs in the background so that a TERM/INT to this script (a cancelled CI job) reaches it at once
RAGLINE_TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$PORT/postgres" \
    "$VENV_PYTHON" -m pytest -q "${SUITES[@]}" "$@" &
PYTEST_PID=$!
trap 'kill -TERM "$PYTEST_PID" 2>/dev/null; wait "$PYTEST_PID"; exit 130' INT
trap 'kill -TERM "$PYTEST_PID" 2>/dev/null; wait "$PYTEST_PID"; exit 143' TERM
status=0
wait "$PYTEST_PID" || status=$?
if [[ $status -ne 0 ]]; then
    echo ".ci/postgres.sh: pytest exited $status; last server log lines:" >&2
    tail -n 40 "$LOG" >&2 || true
fi
exit "$status"

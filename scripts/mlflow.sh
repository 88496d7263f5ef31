#!/usr/bin/env bash
# A local MLflow tracking server for tests, CI and `driftloop demo --registry mlflow` (no Docker).
#
# usage: scripts/mlflow.sh setup | start [--fresh] | stop | status | url
#
#   setup   create the server's own venv ($MLFLOW_VENV) with the pinned full `mlflow` (the server, its SQL store
#           and UI). It is kept apart from driftloop's .venv on purpose: driftloop's client is the `mlflow`
#           extra (mlflow-skinny), and the server's dependencies (Flask, alembic, gunicorn, docker, ...) stay out
#           of the project's environment. Skipped while the venv holds the pinned version.
#   start   setup if needed, then `mlflow server` on 127.0.0.1:$MLFLOW_PORT with a SQLite backend store and a
#           local artifact root in $MLFLOW_DIR, one worker, telemetry and the job runner off; waits until
#           GET /health answers OK. Already running and answering -> says so, exits 0.
#           --fresh (or MLFLOW_FRESH=1): stop it and wipe its data first.
#   stop    SIGTERM to the server's process group, up to MLFLOW_STOP_TIMEOUT s, then SIGKILL
#   status  exit 0 if the server runs and /health answers OK
#   url     print the tracking URI (http://127.0.0.1:$MLFLOW_PORT)
#
# env (defaults):
#   MLFLOW_DIR (<repo>/.mlflow)  data: mlflow.db, artifacts/, server.log, server.pid
#   MLFLOW_VENV (<repo>/.mlflow-venv)  MLFLOW_PIN (mlflow==3.17.2: 3.18.0 pins an mlflow-tracing that is not
#   released; docs/research/mlflow.md)  MLFLOW_PORT (5055)  MLFLOW_START_TIMEOUT (180; a fresh SQLite store runs
#   every migration first, slow on busy cores)  MLFLOW_STOP_TIMEOUT (20)  MLFLOW_FRESH=1  PYTHON (python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MLFLOW_DIR=${MLFLOW_DIR:-$ROOT/.mlflow}
VENV=${MLFLOW_VENV:-$ROOT/.mlflow-venv}
PIN=${MLFLOW_PIN:-mlflow==3.17.2}
PORT=${MLFLOW_PORT:-5055}
START_TIMEOUT=${MLFLOW_START_TIMEOUT:-180}
STOP_TIMEOUT=${MLFLOW_STOP_TIMEOUT:-20}
FRESH=${MLFLOW_FRESH:-0}
PYTHON=${PYTHON:-python3}
PIDFILE="$MLFLOW_DIR/server.pid"
LOGFILE="$MLFLOW_DIR/server.log"
URL="http://127.0.0.1:$PORT"

say() { echo "mlflow.sh: $*" >&2; }
die() { echo "mlflow.sh: ERROR: $*" >&2; exit 1; }

lock() {   # one mlflow.sh at a time per MLFLOW_DIR (fd 9, closed for the server below)
  mkdir -p "$MLFLOW_DIR"
  exec 9>"$MLFLOW_DIR/.lock"
  flock -w 900 9 || die "could not lock $MLFLOW_DIR/.lock within 900 s"
}

do_setup() {
  if [ -x "$VENV/bin/mlflow" ] && [ "$(cat "$VENV/.pin" 2>/dev/null)" = "$PIN" ]; then return 0; fi
  say "creating $VENV with $PIN (the server's own venv; about a minute)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" 9>&-
  "$VENV/bin/python" -m pip install -q --upgrade pip 9>&- >/dev/null
  "$VENV/bin/python" -m pip install -q "$PIN" 9>&- || die "pip could not install $PIN into $VENV"
  echo "$PIN" > "$VENV/.pin"
}

healthy() { "$VENV/bin/python" - "$URL" 9>&- <<'PYEOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=3) as r:
        sys.exit(0 if r.status == 200 and r.read().strip() == b"OK" else 1)
except Exception:
    sys.exit(1)
PYEOF
}

server_pid() {   # the pid (= process group) of our server, or nothing (stale pid files, pid reuse)
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "server .*$MLFLOW_DIR/mlflow.db"; then
    echo "$pid"
  fi
}

do_stop() {
  local pid; pid=$(server_pid)
  if [ -z "$pid" ]; then rm -f "$PIDFILE"; return 0; fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  local t=0
  while kill -0 "$pid" 2>/dev/null && [ "$t" -lt $((STOP_TIMEOUT * 10)) ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 "$pid" 2>/dev/null; then say "still running after ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL -- "-$pid" 2>/dev/null || true; fi
  # the uvicorn child is in the same group; wait until nothing of the group is left
  t=0; while pgrep -g "$pid" >/dev/null 2>&1 && [ "$t" -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
  rm -f "$PIDFILE"
}

do_start() {
  do_setup
  if [ "$FRESH" = 1 ]; then do_stop; rm -rf "$MLFLOW_DIR/mlflow.db" "$MLFLOW_DIR/artifacts"; fi
  if [ -n "$(server_pid)" ] && healthy; then say "already running: $URL"; return 0; fi
  do_stop
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then die "port $PORT is taken by another process (set MLFLOW_PORT)"; fi
  mkdir -p "$MLFLOW_DIR/artifacts"
  local t0=$SECONDS
  # setsid: the server and its uvicorn child form one process group, stopped together
  MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    setsid "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$MLFLOW_DIR/mlflow.db" \
      --artifacts-destination "$MLFLOW_DIR/artifacts" --serve-artifacts \
      --host 127.0.0.1 --port "$PORT" --workers 1 >>"$LOGFILE" 2>&1 9>&- < /dev/null &
  echo $! > "$PIDFILE"
  local pid=$!
  while ! healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then tail -30 "$LOGFILE" >&2; die "the server exited (log above: $LOGFILE)"; fi
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
      tail -30 "$LOGFILE" >&2; do_stop; die "not answering /health after ${START_TIMEOUT}s (log above)"
    fi
    sleep 0.25
  done
  say "ready in $((SECONDS - t0)) s: $URL (data in $MLFLOW_DIR)"
}

cmd=${1:-status}
[ "${2:-}" = "--fresh" ] && FRESH=1
case "$cmd" in
  setup) lock; do_setup ;;
  start) lock; do_start ;;
  stop) lock; do_stop ;;
  status) [ -n "$(server_pid)" ] && [ -x "$VENV/bin/python" ] && healthy ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 setup|start [--fresh]|stop|status|url" >&2; exit 2 ;;
esac

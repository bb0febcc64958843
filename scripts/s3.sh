#!/usr/bin/env bash
# An S3-compatible server for tests and development: moto in server mode (Apache-2.0), from
# PyPI, installed into a virtualenv in the cache directory (nothing is installed in the repo).
#
#   scripts/s3.sh install          create the venv and install moto[server] (once)
#   scripts/s3.sh path             print the moto_server executable (installs it if missing)
#   scripts/s3.sh start [PORT]     start a server on 127.0.0.1:PORT (default 9000), print its URL
#   scripts/s3.sh stop  [PORT]     stop the server started for PORT
#
# Tests (crates/lake/tests) start their own server on a free port with the executable from
# `path`; they fail with the install command when it is missing.
set -euo pipefail

MOTO_VERSION="${CDP_MOTO_VERSION:-5.2.5}"
CACHE_DIR="${CDP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdp}"
VENV="$CACHE_DIR/moto-venv"
BIN="$VENV/bin/moto_server"

install() {
  if [ -x "$BIN" ]; then return 0; fi
  echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2
  "$BIN" --help >/dev/null
}

start() {
  local port="${1:-9000}"
  install
  local run_dir="$CACHE_DIR/run"
  mkdir -p "$run_dir"
  if [ -f "$run_dir/moto-$port.pid" ] && kill -0 "$(cat "$run_dir/moto-$port.pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$port"
    return 0
  fi
  nohup "$BIN" -H 127.0.0.1 -p "$port" >"$run_dir/moto-$port.log" 2>&1 </dev/null &
  echo $! >"$run_dir/moto-$port.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "moto did not start on port $port; see $run_dir/moto-$port.log" >&2
  return 1
}

stop() {
  local port="${1:-9000}"
  local pid_file="$CACHE_DIR/run/moto-$port.pid"
  if [ -f "$pid_file" ]; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  fi
}

case "${1:-}" in
  install) install ;;
  path) install; echo "$BIN" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac

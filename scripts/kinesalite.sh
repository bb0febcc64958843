#!/usr/bin/env bash
# The development / test Kinesis: kinesalite (MIT), a Kinesis-compatible server in Node.js with
# in-memory storage, from the npm registry. Needs node and npm on PATH.
#
#   scripts/kinesalite.sh install        install the pinned package (once; idempotent)
#   scripts/kinesalite.sh path           print the server's entry point (installs it if missing)
#   scripts/kinesalite.sh start [PORT]   start a server on 127.0.0.1:PORT (default 4567), print its URL
#   scripts/kinesalite.sh stop  [PORT]   stop the server started for PORT
#
# It lives in the same cache directory as the tansu broker (CDP_CACHE_DIR, default ~/.cache/cdp),
# outside the repository. Tests (cdp_test_support::Kinesalite) start their own server on a free port with
# `node <path> --port N`, and fail with the install command when it is missing.
set -euo pipefail

VERSION="${CDP_KINESALITE_VERSION:-3.3.3}"
CACHE_DIR="${CDP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdp}"
INSTALL_DIR="$CACHE_DIR/kinesalite-$VERSION"
ENTRY="$INSTALL_DIR/node_modules/kinesalite/cli.js"

install() {
  if [ -f "$ENTRY" ] && [ -f "$INSTALL_DIR/.installed" ]; then return 0; fi
  command -v node >/dev/null || { echo "kinesalite needs node (Debian package nodejs)" >&2; return 1; }
  command -v npm >/dev/null || { echo "kinesalite needs npm (Debian package npm)" >&2; return 1; }
  echo "installing kinesalite@$VERSION into $INSTALL_DIR" >&2
  mkdir -p "$INSTALL_DIR"
  # --omit=optional: without the native leveldown module kinesalite keeps its data in memory
  # (memdown), which is what tests want, and nothing has to be compiled.
  npm install --prefix "$INSTALL_DIR" --omit=optional --no-audit --no-fund --no-save \
    --loglevel=error "kinesalite@$VERSION" >&2
  node "$ENTRY" --help >/dev/null
  touch "$INSTALL_DIR/.installed"
}

start() {
  local port="${1:-4567}"
  install
  local run_dir="$CACHE_DIR/run"
  mkdir -p "$run_dir"
  if [ -f "$run_dir/kinesalite-$port.pid" ] && kill -0 "$(cat "$run_dir/kinesalite-$port.pid")" 2>/dev/null; then
    echo "http://127.0.0.1:$port"
    return 0
  fi
  nohup node "$ENTRY" --port "$port" --createStreamMs 0 --deleteStreamMs 0 --updateStreamMs 0 \
    >"$run_dir/kinesalite-$port.log" 2>&1 </dev/null &
  echo $! >"$run_dir/kinesalite-$port.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "kinesalite did not start on port $port; see $run_dir/kinesalite-$port.log" >&2
  return 1
}

stop() {
  local port="${1:-4567}"
  local pid_file="$CACHE_DIR/run/kinesalite-$port.pid"
  if [ -f "$pid_file" ]; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  fi
}

case "${1:-}" in
  install) install ;;
  path) install; echo "$ENTRY" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac

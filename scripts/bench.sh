#!/usr/bin/env bash
# `make bench`: builds release and runs a benchmark against the development broker (or the one
# in CDP_KAFKA__BOOTSTRAP_SERVERS). Extra arguments go to `cdp-bench <name>`. `sinks` also starts
# kinesalite and a second broker for the Kafka destination (unless CDP_BENCH_KINESIS_ENDPOINT /
# CDP_BENCH_DESTINATION_BOOTSTRAP are set).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-edge}"
shift || true
cargo build --release -p cdp-bench
cleanup=()
trap 'for c in ${cleanup[@]+"${cleanup[@]}"}; do $c; done' EXIT
if [ -z "${CDP_KAFKA__BOOTSTRAP_SERVERS:-}" ]; then
  port="${CDP_BENCH_BROKER_PORT:-19093}"
  export CDP_KAFKA__BOOTSTRAP_SERVERS
  CDP_KAFKA__BOOTSTRAP_SERVERS=$(scripts/tansu.sh start "$port")
  cleanup+=("scripts/tansu.sh stop $port")
fi
if [ "$name" = sinks ]; then
  # The destinations: kinesalite, and a second tansu for the Kafka destination so that its
  # broker load is not the pipeline broker's.
  if [ -z "${CDP_BENCH_KINESIS_ENDPOINT:-}" ]; then
    kinesis_port="${CDP_BENCH_KINESALITE_PORT:-14567}"
    export CDP_BENCH_KINESIS_ENDPOINT
    CDP_BENCH_KINESIS_ENDPOINT=$(scripts/kinesalite.sh start "$kinesis_port")
    cleanup+=("scripts/kinesalite.sh stop $kinesis_port")
  fi
  if [ -z "${CDP_BENCH_DESTINATION_BOOTSTRAP:-}" ]; then
    destination_port="${CDP_BENCH_DESTINATION_BROKER_PORT:-19094}"
    export CDP_BENCH_DESTINATION_BOOTSTRAP
    CDP_BENCH_DESTINATION_BOOTSTRAP=$(scripts/tansu.sh start "$destination_port")
    cleanup+=("scripts/tansu.sh stop $destination_port")
  fi
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'); date: $(date -u +%Y-%m-%dT%H:%MZ)"
RUST_LOG="${RUST_LOG:-warn}" ./target/release/cdp-bench "$name" "$@"

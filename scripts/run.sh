#!/usr/bin/env bash
# `make run`: every stage in one process (`cdp up --demo`). Without a configured broker
# (CDP_KAFKA__BOOTSTRAP_SERVERS or [kafka] in cdp.toml) it starts the development broker (tansu,
# memory storage) on 127.0.0.1:${CDP_DEV_BROKER_PORT:-9092} and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p cdp
configured=""
if [ -n "${CDP_KAFKA__BOOTSTRAP_SERVERS:-}" ]; then
  configured=yes
elif [ -f cdp.toml ] && grep -q '^[[:space:]]*bootstrap_servers[[:space:]]*=[[:space:]]*"[^"]' cdp.toml; then
  configured=yes
fi
if [ -z "$configured" ]; then
  port="${CDP_DEV_BROKER_PORT:-9092}"
  export CDP_KAFKA__BOOTSTRAP_SERVERS
  CDP_KAFKA__BOOTSTRAP_SERVERS=$(scripts/tansu.sh start "$port")
  trap 'scripts/tansu.sh stop "$port"' EXIT
  echo "development broker (tansu, memory storage) on $CDP_KAFKA__BOOTSTRAP_SERVERS"
fi
./target/debug/cdp up --demo

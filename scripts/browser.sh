#!/usr/bin/env bash
# What the browser tests need: Debian's Chromium (packages chromium, chromium-driver; Playwright's
# own browser downloads are not reachable from CI machines), playwright-core for tests/browser,
# and the web SDK built from sdks/js.
#
#   scripts/browser.sh install    install whatever is missing (idempotent)
#
# Installing Chromium needs root or sudo (apt-get). CDP_CHROMIUM names another executable and
# skips the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium() {
  local exe="${CDP_CHROMIUM:-/usr/bin/chromium}"
  if [ -x "$exe" ]; then return 0; fi
  if [ -n "${CDP_CHROMIUM:-}" ]; then
    echo "CDP_CHROMIUM=$exe is not an executable" >&2
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "installing chromium needs root or sudo: apt-get install chromium chromium-driver" >&2; return 1; }
    sudo="sudo -n"
  fi
  echo "installing Debian's chromium (apt-get)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver >&2 \
    || { $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends chromium chromium-driver >&2; }
  "$exe" --version >&2
}

npm_deps() {
  command -v npm >/dev/null || { echo "the browser tests need node and npm (Debian package nodejs)" >&2; return 1; }
  # npm ci only when the lock file changed since the last install.
  local dir
  for dir in tests/browser sdks/js; do
    [ -f "$dir/package-lock.json" ] || continue
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
      || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      echo "npm ci in $dir" >&2
      npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    fi
  done
  if [ -f sdks/js/package.json ]; then
    npm run --prefix sdks/js --silent build >&2
  fi
}

case "${1:-}" in
  install) chromium; npm_deps ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# System packages the tests need beyond Python (run by scripts/test): headless Chromium (Debian's `chromium`) for the
# status page test, and Debian's `redis-server` for the state shared through Redis (the tests start their own
# servers on free ports). Installs only what is missing; needs root (or sudo) for apt-get.
set -euo pipefail
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

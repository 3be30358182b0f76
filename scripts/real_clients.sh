#!/usr/bin/env bash
# The real Copilot clients the end-to-end tests drive through the pool (run by scripts/test): the Copilot CLI and
# the Copilot language server, exactly as tests/npm/package-lock.json pins them, installed from npm into
# ${XDG_CACHE_HOME:-~/.cache}/copilot-pool/clients/<hash of the lock file> once (outside the clone; ~1.1 GB with
# the CLI's unpacked runtime).
# Never fails the test run: without npm or the registry it says why in <dir>.unavailable, and the tests that need
# the clients are skipped with that reason (tests/real_clients.py).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pins="$root/tests/npm"
base="${XDG_CACHE_HOME:-$HOME/.cache}/copilot-pool/clients"
dir="$base/$(sha256sum "$pins/package-lock.json" | cut -c1-16)"

[ -f "$dir/.installed" ] && exit 0
mkdir -p "$base"
unavailable() {
    echo "$1" >"$dir.unavailable"
    echo "real Copilot clients not installed ($1): their end-to-end tests will be skipped" >&2
    exit 0
}
command -v npm >/dev/null || unavailable "npm not found"

echo "installing the real Copilot clients (pinned in tests/npm) into $dir ..." >&2
staging="$(mktemp -d "$base/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
cp "$pins/package.json" "$pins/package-lock.json" "$staging/"
# Bounded: npm retries an unreachable registry for many minutes; a usual install takes under a minute.
if ! log="$(cd "$staging" && timeout 600 npm install --ignore-scripts --no-audit --no-fund --loglevel=error 2>&1)"; then
    unavailable "npm install failed or timed out: $(echo "$log" | grep -m1 -i 'err' || echo "$log" | tail -n1)"
fi
[ -f "$dir/.installed" ] && exit 0  # another run (another worktree) finished first: keep the one in use
rm -rf "$dir" && mv "$staging" "$dir" || unavailable "could not move the install into $dir"
# The CLI unpacks its runtime (~235 MB) into $XDG_CACHE_HOME/copilot/pkg on first start; do it once, here, where
# every test's own cache directory links to it.
for cli in "$dir"/node_modules/@github/copilot-*/copilot; do
    [ -x "$cli" ] && HOME="$dir/home" XDG_CACHE_HOME="$dir/xdg-cache" "$cli" --version >/dev/null 2>&1
done
rm -f "$dir.unavailable"
touch "$dir/.installed"

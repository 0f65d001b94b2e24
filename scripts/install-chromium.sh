#!/usr/bin/env bash
# Debian's Chromium, for the dashboard's end-to-end tests: installed when missing (as root, or
# with sudo), never downloaded by Playwright. A no-op when /usr/bin/chromium exists.
set -euo pipefail

command -v chromium >/dev/null && exit 0
if [[ $EUID -eq 0 ]]; then
    run=()
elif command -v sudo >/dev/null; then
    run=(sudo)
else
    echo "install-chromium.sh: error: chromium is missing; install it with: apt-get install chromium" >&2
    exit 1
fi
command -v apt-get >/dev/null || {
    echo "install-chromium.sh: error: chromium is missing and apt-get is unavailable; install Chromium yourself" >&2
    exit 1
}
export DEBIAN_FRONTEND=noninteractive
echo "install-chromium.sh: installing chromium (apt-get install chromium)..." >&2
"${run[@]}" apt-get install -y -qq --no-install-recommends chromium >&2 ||
    { "${run[@]}" apt-get update -qq && "${run[@]}" apt-get install -y -qq --no-install-recommends chromium; } >&2
command -v chromium >/dev/null || {
    echo "install-chromium.sh: error: apt-get ran but chromium is still missing" >&2
    exit 1
}

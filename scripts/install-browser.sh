#!/usr/bin/env bash
# Install headless Chromium from Debian's packages for the annotation tool's browser tests.
#
# Playwright drives this system Chromium (launched with executable_path=/usr/bin/chromium); it never
# downloads a browser of its own. Idempotent: a quick no-op when /usr/bin/chromium already exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser.sh: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
test -x /usr/bin/chromium
echo "install-browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"

#!/usr/bin/env bash
# Debian Chromium for the dashboard's browser tests (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` is never run: it downloads from the
# internet). Idempotent: does nothing when /usr/bin/chromium exists.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version

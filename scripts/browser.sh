#!/usr/bin/env bash
# The real browser for the page's end-to-end tests: Debian's Chromium (package `chromium`),
# driven by Playwright's Python package with the system browser as executable_path; Playwright
# never downloads a browser here.
#
#   scripts/browser.sh install   install chromium from Debian's packages if it is missing
#                                (as root, or with passwordless sudo); print its path
#
# BLOCKIMAGE_CHROMIUM names another Chromium binary (then nothing is installed).
set -euo pipefail

log() { echo "browser.sh: $*" >&2; }

install() {
  local chromium=${BLOCKIMAGE_CHROMIUM:-/usr/bin/chromium}
  if [ -x "$chromium" ]; then echo "$chromium"; return; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      log "Chromium is missing and installing it needs root: apt-get install chromium"
      exit 1
    fi
  fi
  command -v apt-get >/dev/null || { log "no apt-get: install Chromium and set BLOCKIMAGE_CHROMIUM"; exit 1; }
  log "installing Debian's chromium (once)"
  $sudo apt-get update -qq >&2 || log "apt-get update failed; trying the package lists there are"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
  echo "$chromium"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: scripts/browser.sh install" >&2; exit 2 ;;
esac

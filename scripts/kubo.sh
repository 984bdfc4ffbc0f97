#!/usr/bin/env bash
# A Kubo (IPFS) daemon for development and tests, on loopback only, with no outside network.
#
#   scripts/kubo.sh build        build .cache/kubo/bin/ipfs from tools/kubo (pinned release)
#   scripts/kubo.sh up [REPO]    build if missing, create a repo (a new temp dir unless REPO),
#                                configure it for a closed network, start the daemon, wait for
#                                its API, print `export` lines:  eval "$(scripts/kubo.sh up)"
#   scripts/kubo.sh down [REPO]  stop exactly the daemon started in REPO (default $IPFS_PATH)
#
# Everything but the export lines goes to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BLOCKIMAGE_KUBO_BIN_DIR:-$ROOT/.cache/kubo/bin}
IPFS=$BIN_DIR/ipfs
export IPFS_TELEMETRY=off  # Kubo's opt-out telemetry would try to reach the internet

log() { echo "kubo.sh: $*" >&2; }

build() {
  if [ -x "$IPFS" ]; then return; fi
  command -v go >/dev/null || { log "Go is needed to build Kubo (https://go.dev)"; exit 1; }
  log "building Kubo $(grep 'github.com/ipfs/kubo ' "$ROOT/tools/kubo/go.mod" | awk '{print $NF}') into $BIN_DIR (a few minutes the first time)"
  mkdir -p "$BIN_DIR"
  (cd "$ROOT/tools/kubo" && go build -trimpath -o "$IPFS.tmp" github.com/ipfs/kubo/cmd/ipfs)
  mv "$IPFS.tmp" "$IPFS"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

up() {
  build
  local repo=${1:-}
  if [ -z "$repo" ]; then repo=$(mktemp -d "${TMPDIR:-/tmp}/blockimage-kubo.XXXXXX"); fi
  export IPFS_PATH=$repo
  if [ ! -f "$repo/config" ]; then
    "$IPFS" init --empty-repo >/dev/null 2>&1 || "$IPFS" init >/dev/null
  fi
  local api swarm gateway
  api=$(free_port); swarm=$(free_port); gateway=$(free_port)
  "$IPFS" bootstrap rm --all >/dev/null
  "$IPFS" config Addresses.API "/ip4/127.0.0.1/tcp/$api"
  "$IPFS" config Addresses.Gateway "/ip4/127.0.0.1/tcp/$gateway"
  "$IPFS" config --json Addresses.Swarm "[\"/ip4/127.0.0.1/tcp/$swarm\"]"
  "$IPFS" config --json Addresses.Announce '[]'
  "$IPFS" config --json Discovery.MDNS.Enabled false
  "$IPFS" config Routing.Type none
  "$IPFS" config --json Swarm.DisableNatPortMap true
  "$IPFS" config --json Swarm.RelayClient.Enabled false
  "$IPFS" config --json Swarm.RelayService.Enabled false
  "$IPFS" config --json Swarm.Transports.Network.Relay false
  "$IPFS" config AutoNAT.ServiceMode disabled
  "$IPFS" config --json AutoTLS.Enabled false 2>/dev/null || true
  nohup "$IPFS" daemon --enable-gc=false >"$repo/daemon.log" 2>&1 &
  echo $! >"$repo/daemon.pid"
  local url="http://127.0.0.1:$api"
  for _ in $(seq 1 300); do
    if curl -sf -X POST "$url/api/v0/id" >/dev/null 2>&1; then
      log "daemon $(cat "$repo/daemon.pid") up, API $url, repo $repo"
      echo "export IPFS_PATH=$repo"
      echo "export PATH=$BIN_DIR:\$PATH"
      echo "export BLOCKIMAGE_KUBO_API=$url"
      return
    fi
    if ! kill -0 "$(cat "$repo/daemon.pid")" 2>/dev/null; then
      log "daemon exited; its log:"; cat "$repo/daemon.log" >&2; exit 1
    fi
    sleep 0.1
  done
  log "daemon did not answer on $url within 30 s"; cat "$repo/daemon.log" >&2; exit 1
}

down() {
  local repo=${1:-${IPFS_PATH:-}}
  [ -n "$repo" ] && [ -f "$repo/daemon.pid" ] || { log "no daemon.pid in '${repo}'"; exit 1; }
  local pid; pid=$(cat "$repo/daemon.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$repo/daemon.pid"
  log "daemon $pid stopped (repo $repo kept)"
}

case "${1:-}" in
  build) build ;;
  up) shift; up "${1:-}" ;;
  down) shift; down "${1:-}" ;;
  *) echo "usage: scripts/kubo.sh build | up [REPO] | down [REPO]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A Hyperledger Fabric network for development and tests: native processes (no Docker), loopback
# only, one organisation (Org1MSP) with one peer, one Raft orderer (OrdererMSP), one channel, and
# the BlockImage chaincode running as an external service (chaincode as a service).
#
#   scripts/fabric-network.sh build            build the Fabric binaries (tools/fabric, pinned) and
#                                              the chaincode into .cache/fabric/bin
#   scripts/fabric-network.sh up [DIR]         build if missing, create the network in DIR (a new
#                                              temp dir unless given), start it, deploy the chaincode,
#                                              print `export` lines: eval "$(scripts/fabric-network.sh up)"
#                                              (also written to DIR/fabric.env)
#   scripts/fabric-network.sh down [DIR]       stop the processes started in DIR (default
#                                              $FABRIC_NETWORK_DIR); the files are kept
#   scripts/fabric-network.sh package ADDRESS [OUT]
#                                              build the chaincode and a ccaas chaincode package
#                                              whose connection.json points the peer at ADDRESS
#                                              (host:port where you will run the chaincode service)
#
# Settings: FABRIC_CHANNEL (default blockimage), FABRIC_BATCH_TIMEOUT (orderer's BatchTimeout,
# default 100ms). Everything but the export lines goes to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BLOCKIMAGE_FABRIC_BIN_DIR:-$ROOT/.cache/fabric/bin}
CACHE_CONFIG=$(dirname "$BIN_DIR")/sampleconfig
CHANNEL=${FABRIC_CHANNEL:-blockimage}
CHAINCODE=blockimage
CC_LABEL=blockimage_1
BATCH_TIMEOUT=${FABRIC_BATCH_TIMEOUT:-100ms}
TOOLS=(peer orderer configtxgen osnadmin cryptogen)

log() { echo "fabric-network.sh: $*" >&2; }
die() { log "$*"; exit 1; }

build() {
  command -v go >/dev/null || die "Go is needed to build Fabric (https://go.dev)"
  mkdir -p "$BIN_DIR"
  local missing=()
  for tool in "${TOOLS[@]}"; do [ -x "$BIN_DIR/$tool" ] || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "building Fabric ${missing[*]} from tools/fabric into $BIN_DIR (a few minutes the first time)"
    for tool in "${missing[@]}"; do
      (cd "$ROOT/tools/fabric" && go build -trimpath -o "$BIN_DIR/$tool.tmp" "github.com/hyperledger/fabric/cmd/$tool")
      mv "$BIN_DIR/$tool.tmp" "$BIN_DIR/$tool"
    done
  fi
  if [ ! -f "$CACHE_CONFIG/core.yaml" ]; then
    local src
    src=$(cd "$ROOT/tools/fabric" && go list -m -f '{{.Dir}}' github.com/hyperledger/fabric)/sampleconfig
    mkdir -p "$CACHE_CONFIG"
    cp "$src/core.yaml" "$src/orderer.yaml" "$CACHE_CONFIG/"
    chmod u+w "$CACHE_CONFIG"/*.yaml
  fi
  # The chaincode is small and quick to rebuild; rebuild it when its sources are newer.
  local cc=$BIN_DIR/blockimage-chaincode
  if [ ! -x "$cc" ] || [ -n "$(find "$ROOT/chaincode" -newer "$cc" -name '*.go' -o -newer "$cc" -name 'go.*' | head -1)" ]; then
    log "building the chaincode"
    (cd "$ROOT/chaincode" && go build -trimpath -o "$cc.tmp" .)
    mv "$cc.tmp" "$cc"
  fi
}

retry() {  # retry SECONDS LOGFILE COMMAND...: for steps that fail until Raft has a leader
  local seconds=$1 logfile=$2; shift 2
  for _ in $(seq 1 $((seconds * 2))); do
    if "$@" 2>>"$logfile"; then return 0; fi
    sleep 0.5
  done
  log "gave up after $seconds s: $*"; tail -20 "$logfile" >&2; exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {  # wait_for SECONDS PIDFILE LOGFILE DESCRIPTION COMMAND...
  local seconds=$1 pidfile=$2 logfile=$3 what=$4; shift 4
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$what exited; the end of its log:"; tail -30 "$logfile" >&2; exit 1
    fi
    sleep 0.1
  done
  log "$what did not become ready within $seconds s; the end of its log:"; tail -30 "$logfile" >&2; exit 1
}

write_crypto_config() {
  cat >"$1" <<'EOF'
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [localhost, 127.0.0.1]
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: true
    Template:
      Count: 1
      SANS: [localhost, 127.0.0.1]
    Users:
      Count: 1
EOF
}

write_configtx() {  # write_configtx FILE ORDERER_PORT PEER_PORT
  local crypto=$NET/crypto orderer_tls=$NET/crypto/ordererOrganizations/example.com/orderers/orderer.example.com/tls
  cat >"$1" <<EOF
Organizations:
  - &OrdererOrg
    Name: OrdererMSP
    ID: OrdererMSP
    MSPDir: $crypto/ordererOrganizations/example.com/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Writers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Admins: {Type: Signature, Rule: "OR('OrdererMSP.admin')"}
    OrdererEndpoints: ["127.0.0.1:$2"]
  - &Org1
    Name: Org1MSP
    ID: Org1MSP
    MSPDir: $crypto/peerOrganizations/org1.example.com/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('Org1MSP.admin', 'Org1MSP.peer', 'Org1MSP.client')"}
      Writers: {Type: Signature, Rule: "OR('Org1MSP.admin', 'Org1MSP.client')"}
      Admins: {Type: Signature, Rule: "OR('Org1MSP.admin')"}
      Endorsement: {Type: Signature, Rule: "OR('Org1MSP.peer')"}
    AnchorPeers:
      - {Host: 127.0.0.1, Port: $3}
Capabilities:
  Channel: &ChannelCapabilities {V3_0: true}
  Orderer: &OrdererCapabilities {V2_0: true}
  Application: &ApplicationCapabilities {V2_5: true}
Application: &ApplicationDefaults
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    LifecycleEndorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
    Endorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
  Capabilities: *ApplicationCapabilities
Orderer: &OrdererDefaults
  OrdererType: etcdraft
  BatchTimeout: $BATCH_TIMEOUT
  BatchSize: {MaxMessageCount: 100, AbsoluteMaxBytes: 10 MB, PreferredMaxBytes: 2 MB}
  EtcdRaft:
    Consenters:
      - Host: 127.0.0.1
        Port: $2
        ClientTLSCert: $orderer_tls/server.crt
        ServerTLSCert: $orderer_tls/server.crt
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    BlockValidation: {Type: ImplicitMeta, Rule: "ANY Writers"}
  Capabilities: *OrdererCapabilities
Channel: &ChannelDefaults
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
  Capabilities: *ChannelCapabilities
Profiles:
  BlockImageChannel:
    <<: *ChannelDefaults
    Orderer:
      <<: *OrdererDefaults
      Organizations: [*OrdererOrg]
    Application:
      <<: *ApplicationDefaults
      Organizations: [*Org1]
EOF
}

make_package() {  # make_package ADDRESS OUT: a ccaas chaincode package (tar.gz)
  local address=$1 out=$2 work
  work=$(mktemp -d)
  printf '{"address":"%s","dial_timeout":"10s","tls_required":false}\n' "$address" >"$work/connection.json"
  printf '{"type":"ccaas","label":"%s"}\n' "$CC_LABEL" >"$work/metadata.json"
  tar -C "$work" -czf "$work/code.tar.gz" connection.json
  tar -C "$work" -czf "$out" metadata.json code.tar.gz
  rm -rf "$work"
}

up() {
  [[ "$CHANNEL" =~ ^[a-z][a-z0-9.-]{0,248}$ ]] ||
    die "FABRIC_CHANNEL '$CHANNEL' is not a channel name (lower-case letters, digits, '.', '-')"
  build
  NET=${1:-}
  if [ -z "$NET" ]; then NET=$(mktemp -d "${TMPDIR:-/tmp}/blockimage-fabric.XXXXXX"); fi
  mkdir -p "$NET"
  NET=$(cd "$NET" && pwd)
  [ ! -f "$NET/orderer.pid" ] || die "$NET already has a network (run: $0 down $NET)"
  rm -rf "$NET/crypto" "$NET/config" "$NET/orderer" "$NET/peer" "$NET/builders"
  # A failed start stops whatever it had started, so no orphan orderer or peer is left behind.
  trap 'if [ -z "${UP_DONE:-}" ] && [ -f "$NET/orderer.pid" ]; then down "$NET" 2>/dev/null || true; fi' EXIT
  local orderer_port admin_port orderer_ops peer_port peer_cc_port peer_ops cc_port
  orderer_port=$(free_port); admin_port=$(free_port); orderer_ops=$(free_port)
  peer_port=$(free_port); peer_cc_port=$(free_port); peer_ops=$(free_port); cc_port=$(free_port)
  export PATH=$BIN_DIR:$PATH

  log "crypto material and channel block in $NET"
  write_crypto_config "$NET/crypto-config.yaml"
  cryptogen generate --config "$NET/crypto-config.yaml" --output "$NET/crypto" >/dev/null
  mkdir -p "$NET/config" "$NET/builders"
  write_configtx "$NET/config/configtx.yaml" "$orderer_port" "$peer_port"
  cp -R "$ROOT/scripts/fabric/ccaas" "$NET/builders/ccaas"
  python3 - "$CACHE_CONFIG/core.yaml" "$NET/config/core.yaml" "$NET/builders/ccaas" <<'EOF'
import sys
src, dst, builder = sys.argv[1:]
text = open(src).read()
for old, new in [
    ("endpoint: unix:///var/run/docker.sock", 'endpoint: ""'),  # no Docker: external builders only
    ("path: /opt/hyperledger/ccaas_builder", f"path: {builder}"),
]:
    assert old in text, f"core.yaml no longer contains {old!r}"
    text = text.replace(old, new)
open(dst, "w").write(text)
EOF
  cp "$CACHE_CONFIG/orderer.yaml" "$NET/config/orderer.yaml"
  configtxgen -configPath "$NET/config" -profile BlockImageChannel -channelID "$CHANNEL" \
    -outputBlock "$NET/channel.block" 2>"$NET/configtxgen.log" || { cat "$NET/configtxgen.log" >&2; exit 1; }

  local ord=$NET/crypto/ordererOrganizations/example.com/orderers/orderer.example.com
  local org1=$NET/crypto/peerOrganizations/org1.example.com
  local peer0=$org1/peers/peer0.org1.example.com
  mkdir -p "$NET/orderer" "$NET/peer"
  log "starting the orderer on 127.0.0.1:$orderer_port"
  (
    export FABRIC_CFG_PATH=$NET/config
    export ORDERER_GENERAL_LISTENADDRESS=127.0.0.1 ORDERER_GENERAL_LISTENPORT=$orderer_port
    export ORDERER_GENERAL_BOOTSTRAPMETHOD=none
    export ORDERER_GENERAL_LOCALMSPID=OrdererMSP ORDERER_GENERAL_LOCALMSPDIR=$ord/msp
    export ORDERER_GENERAL_TLS_ENABLED=true ORDERER_GENERAL_TLS_PRIVATEKEY=$ord/tls/server.key
    export ORDERER_GENERAL_TLS_CERTIFICATE=$ord/tls/server.crt ORDERER_GENERAL_TLS_ROOTCAS=[$ord/tls/ca.crt]
    export ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE=$ord/tls/server.crt
    export ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY=$ord/tls/server.key
    export ORDERER_GENERAL_CLUSTER_ROOTCAS=[$ord/tls/ca.crt]
    export ORDERER_FILELEDGER_LOCATION=$NET/orderer/ledger
    export ORDERER_CONSENSUS_WALDIR=$NET/orderer/etcdraft/wal ORDERER_CONSENSUS_SNAPDIR=$NET/orderer/etcdraft/snapshot
    export ORDERER_ADMIN_LISTENADDRESS=127.0.0.1:$admin_port ORDERER_ADMIN_TLS_ENABLED=true
    export ORDERER_ADMIN_TLS_CERTIFICATE=$ord/tls/server.crt ORDERER_ADMIN_TLS_PRIVATEKEY=$ord/tls/server.key
    export ORDERER_ADMIN_TLS_ROOTCAS=[$ord/tls/ca.crt] ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED=true
    export ORDERER_ADMIN_TLS_CLIENTROOTCAS=[$ord/tls/ca.crt]
    export ORDERER_OPERATIONS_LISTENADDRESS=127.0.0.1:$orderer_ops ORDERER_METRICS_PROVIDER=disabled
    exec orderer
  ) >"$NET/orderer.log" 2>&1 &
  echo $! >"$NET/orderer.pid"
  wait_for 30 "$NET/orderer.pid" "$NET/orderer.log" "the orderer" \
    osnadmin channel list -o "127.0.0.1:$admin_port" --ca-file "$ord/tls/ca.crt" \
    --client-cert "$ord/tls/server.crt" --client-key "$ord/tls/server.key"
  osnadmin channel join --channelID "$CHANNEL" --config-block "$NET/channel.block" \
    -o "127.0.0.1:$admin_port" --ca-file "$ord/tls/ca.crt" \
    --client-cert "$ord/tls/server.crt" --client-key "$ord/tls/server.key" >/dev/null

  log "starting the peer on 127.0.0.1:$peer_port"
  (
    export FABRIC_CFG_PATH=$NET/config
    export CORE_PEER_ID=peer0.org1.example.com
    export CORE_PEER_ADDRESS=127.0.0.1:$peer_port CORE_PEER_LISTENADDRESS=127.0.0.1:$peer_port
    export CORE_PEER_CHAINCODEADDRESS=127.0.0.1:$peer_cc_port CORE_PEER_CHAINCODELISTENADDRESS=127.0.0.1:$peer_cc_port
    export CORE_PEER_GOSSIP_BOOTSTRAP=127.0.0.1:$peer_port CORE_PEER_GOSSIP_EXTERNALENDPOINT=127.0.0.1:$peer_port
    export CORE_PEER_LOCALMSPID=Org1MSP CORE_PEER_MSPCONFIGPATH=$peer0/msp
    export CORE_PEER_TLS_ENABLED=true CORE_PEER_TLS_CERT_FILE=$peer0/tls/server.crt
    export CORE_PEER_TLS_KEY_FILE=$peer0/tls/server.key CORE_PEER_TLS_ROOTCERT_FILE=$peer0/tls/ca.crt
    export CORE_PEER_FILESYSTEMPATH=$NET/peer/data CORE_LEDGER_SNAPSHOTS_ROOTDIR=$NET/peer/snapshots
    export CORE_OPERATIONS_LISTENADDRESS=127.0.0.1:$peer_ops CORE_METRICS_PROVIDER=disabled
    exec peer node start
  ) >"$NET/peer.log" 2>&1 &
  echo $! >"$NET/peer.pid"

  # The peer CLI as Org1's admin (channel join, chaincode lifecycle); the same settings are
  # exported for the user at the end.
  export FABRIC_CFG_PATH=$NET/config CORE_PEER_LOCALMSPID=Org1MSP
  export CORE_PEER_MSPCONFIGPATH=$org1/users/Admin@org1.example.com/msp
  export CORE_PEER_ADDRESS=127.0.0.1:$peer_port CORE_PEER_TLS_ENABLED=true
  export CORE_PEER_TLS_ROOTCERT_FILE=$peer0/tls/ca.crt
  wait_for 30 "$NET/peer.pid" "$NET/peer.log" "the peer" peer channel list
  peer channel join -b "$NET/channel.block" 2>>"$NET/cli.log" || { tail "$NET/cli.log" >&2; exit 1; }

  log "deploying chaincode '$CHAINCODE' as a service on 127.0.0.1:$cc_port"
  make_package "127.0.0.1:$cc_port" "$NET/$CHAINCODE.tar.gz"
  peer lifecycle chaincode install "$NET/$CHAINCODE.tar.gz" 2>>"$NET/cli.log" || { tail "$NET/cli.log" >&2; exit 1; }
  local package_id
  package_id=$(peer lifecycle chaincode calculatepackageid "$NET/$CHAINCODE.tar.gz")
  CHAINCODE_SERVER_ADDRESS=127.0.0.1:$cc_port CHAINCODE_ID=$package_id \
    "$BIN_DIR/blockimage-chaincode" >"$NET/chaincode.log" 2>&1 &
  echo $! >"$NET/chaincode.pid"
  local orderer_args=(-o "127.0.0.1:$orderer_port" --tls --cafile "$ord/tls/ca.crt")
  retry 30 "$NET/cli.log" peer lifecycle chaincode approveformyorg "${orderer_args[@]}" \
    --channelID "$CHANNEL" --name "$CHAINCODE" --version 1 --package-id "$package_id" \
    --sequence 1 --waitForEvent
  peer lifecycle chaincode commit "${orderer_args[@]}" --channelID "$CHANNEL" \
    --name "$CHAINCODE" --version 1 --sequence 1 --peerAddresses "127.0.0.1:$peer_port" \
    --tlsRootCertFiles "$peer0/tls/ca.crt" --waitForEvent 2>>"$NET/cli.log" || { tail "$NET/cli.log" >&2; exit 1; }
  wait_for 30 "$NET/chaincode.pid" "$NET/chaincode.log" "the chaincode" \
    peer chaincode query -C "$CHANNEL" -n "$CHAINCODE" -c '{"Args":["ListRecords","0","0"]}'

  local user=$org1/users/User1@org1.example.com/msp
  {
    echo "export FABRIC_NETWORK_DIR=$NET"
    echo "export FABRIC_CHANNEL=$CHANNEL"
    echo "export BLOCKIMAGE_FABRIC_GATEWAY=127.0.0.1:$peer_port"
    echo "export BLOCKIMAGE_FABRIC_MSP_ID=Org1MSP"
    echo "export BLOCKIMAGE_FABRIC_CERT=$user/signcerts/User1@org1.example.com-cert.pem"
    echo "export BLOCKIMAGE_FABRIC_KEY=$user/keystore/priv_sk"
    echo "export BLOCKIMAGE_FABRIC_TLS_CA=$peer0/tls/ca.crt"
    echo "export BLOCKIMAGE_FABRIC_CHANNEL=$CHANNEL"
    echo "export BLOCKIMAGE_FABRIC_CHAINCODE=$CHAINCODE"
    echo "export PATH=$BIN_DIR:\$PATH"
    echo "export FABRIC_CFG_PATH=$NET/config"
    echo "export CORE_PEER_LOCALMSPID=Org1MSP"
    echo "export CORE_PEER_MSPCONFIGPATH=$org1/users/Admin@org1.example.com/msp"
    echo "export CORE_PEER_ADDRESS=127.0.0.1:$peer_port"
    echo "export CORE_PEER_TLS_ENABLED=true"
    echo "export CORE_PEER_TLS_ROOTCERT_FILE=$peer0/tls/ca.crt"
  } >"$NET/fabric.env"
  UP_DONE=1
  log "network up in $NET (orderer $(cat "$NET/orderer.pid"), peer $(cat "$NET/peer.pid"), chaincode $(cat "$NET/chaincode.pid")); settings in $NET/fabric.env"
  cat "$NET/fabric.env"
}

down() {
  local net=${1:-${FABRIC_NETWORK_DIR:-}}
  [ -n "$net" ] && [ -f "$net/orderer.pid" ] || die "no network in '${net}' (give its directory)"
  local part pid
  for part in chaincode peer orderer; do
    [ -f "$net/$part.pid" ] || continue
    pid=$(cat "$net/$part.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$net/$part.pid"
  done
  log "network in $net stopped (files kept)"
}

package() {
  local address=${1:-} out=${2:-$ROOT/.cache/fabric/$CHAINCODE.tar.gz}
  [ -n "$address" ] || die "usage: $0 package HOST:PORT [OUT.tar.gz]"
  build
  mkdir -p "$(dirname "$out")"
  make_package "$address" "$out"
  log "chaincode package $out (label $CC_LABEL, connection to $address)"
  log "install it on each peer (peer lifecycle chaincode install), then run the service with"
  log "  CHAINCODE_SERVER_ADDRESS=$address CHAINCODE_ID=<package id> $BIN_DIR/blockimage-chaincode"
  log "and approve + commit the definition (name $CHAINCODE, version 1) on your channel"
  echo "$out"
}

case "${1:-}" in
  build) build ;;
  up) shift; up "${1:-}" ;;
  down) shift; down "${1:-}" ;;
  package) shift; package "$@" ;;
  *) echo "usage: scripts/fabric-network.sh build | up [DIR] | down [DIR] | package HOST:PORT [OUT]" >&2; exit 2 ;;
esac

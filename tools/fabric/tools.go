//go:build tools

// Package tools pins the Hyperledger Fabric commands in this module's dependency graph.
//
// Fabric's module path has no /v2 suffix, so its v2.x tags are not module versions; the
// go.mod requires a commit by its pseudo-version (the newest one the Go module proxy served
// when this was written: main at 3.0.0-snapshot, 2023-04-05).
package tools

import (
	_ "github.com/hyperledger/fabric/cmd/configtxgen"
	_ "github.com/hyperledger/fabric/cmd/cryptogen"
	_ "github.com/hyperledger/fabric/cmd/orderer"
	_ "github.com/hyperledger/fabric/cmd/osnadmin"
	_ "github.com/hyperledger/fabric/cmd/peer"
)

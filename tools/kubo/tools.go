//go:build tools

// Package tools pins the Kubo command in this module's dependency graph.
package tools

import _ "github.com/ipfs/kubo/cmd/ipfs"

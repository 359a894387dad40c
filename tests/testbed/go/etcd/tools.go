//go:build tools

// Package tools pins the etcd server built by tests/testbed/etcd.sh in go.mod/go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)

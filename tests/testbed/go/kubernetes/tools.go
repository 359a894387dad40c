//go:build tools

// Package tools pins the commands built by tests/testbed/kube-apiserver.sh in go.mod/go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

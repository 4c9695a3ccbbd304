//go:build !go1.20

package main

import "sync"

// sync.Map gained Swap and CompareAndSwap in Go 1.20; the workloads that need them are
// reported as skipped on older toolchains (Debian 12 ships Go 1.19).
func syncSwap(m *sync.Map, k any, v uint64) (uint64, bool, bool) { return 0, false, false }

func syncCompareAndSwap(m *sync.Map, k any, old, new uint64) (bool, bool) { return false, false }

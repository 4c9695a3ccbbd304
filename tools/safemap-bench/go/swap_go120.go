//go:build go1.20

package main

import "sync"

func syncSwap(m *sync.Map, k any, v uint64) (uint64, bool, bool) {
	p, loaded := m.Swap(k, v)
	if !loaded {
		return 0, false, true
	}
	return p.(uint64), true, true
}

func syncCompareAndSwap(m *sync.Map, k any, old, new uint64) (bool, bool) {
	return m.CompareAndSwap(k, old, new), true
}

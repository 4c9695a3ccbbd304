package main

import (
	"encoding/json"
	"sync"
)

// mapAPI is what the workloads call, the same calls as the C++ adapters
// (tools/safemap-bench/engine/runner.hpp). Values are uint64.
type mapAPI[K comparable] interface {
	Load(k K) (uint64, bool)
	LoadOrStore(k K, v uint64) (uint64, bool)
	LoadAndDelete(k K) (uint64, bool)
	Store(k K, v uint64)
	// Swap stores v and returns the previous value; supported is false where the Go
	// version lacks sync.Map.Swap (before Go 1.20).
	Swap(k K, v uint64) (previous uint64, loaded bool, supported bool)
	CompareAndSwap(k K, old, new uint64) (swapped bool, supported bool)
	Range(f func(k K, v uint64) bool)
	// Serialize appends the map as JSON (encoding/json sorts map keys).
	Serialize(out []byte) []byte
}

// ---- sync.Map ------------------------------------------------------------------------------

type syncMap[K comparable] struct{ m sync.Map }

func (s *syncMap[K]) Load(k K) (uint64, bool) {
	v, ok := s.m.Load(k)
	if !ok {
		return 0, false
	}
	return v.(uint64), true
}

func (s *syncMap[K]) LoadOrStore(k K, v uint64) (uint64, bool) {
	a, loaded := s.m.LoadOrStore(k, v)
	return a.(uint64), loaded
}

func (s *syncMap[K]) LoadAndDelete(k K) (uint64, bool) {
	v, ok := s.m.LoadAndDelete(k)
	if !ok {
		return 0, false
	}
	return v.(uint64), true
}

func (s *syncMap[K]) Store(k K, v uint64) { s.m.Store(k, v) }

func (s *syncMap[K]) Swap(k K, v uint64) (uint64, bool, bool) { return syncSwap(&s.m, k, v) }

func (s *syncMap[K]) CompareAndSwap(k K, old, new uint64) (bool, bool) {
	return syncCompareAndSwap(&s.m, k, old, new)
}

func (s *syncMap[K]) Range(f func(k K, v uint64) bool) {
	s.m.Range(func(k, v any) bool { return f(k.(K), v.(uint64)) })
}

func (s *syncMap[K]) Serialize(out []byte) []byte {
	// What a Go program does: copy into a plain map, marshal that.
	copy := make(map[K]uint64)
	s.m.Range(func(k, v any) bool {
		copy[k.(K)] = v.(uint64)
		return true
	})
	b, _ := json.Marshal(copy)
	return append(out, b...)
}

// ---- map + sync.RWMutex --------------------------------------------------------------------

// rwMap is Go's RWMutexMap (sync/map_reference_test.go) with LoadOrStore looking under the
// read lock first, like the C++ locked_table adapter.
type rwMap[K comparable] struct {
	mu sync.RWMutex
	m  map[K]uint64
}

func newRWMap[K comparable]() *rwMap[K] { return &rwMap[K]{m: make(map[K]uint64)} }

func (r *rwMap[K]) Load(k K) (uint64, bool) {
	r.mu.RLock()
	v, ok := r.m[k]
	r.mu.RUnlock()
	return v, ok
}

func (r *rwMap[K]) LoadOrStore(k K, v uint64) (uint64, bool) {
	r.mu.RLock()
	a, ok := r.m[k]
	r.mu.RUnlock()
	if ok {
		return a, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.m[k]; ok {
		return a, true
	}
	r.m[k] = v
	return v, false
}

func (r *rwMap[K]) LoadAndDelete(k K) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[k]
	if ok {
		delete(r.m, k)
	}
	return v, ok
}

func (r *rwMap[K]) Store(k K, v uint64) {
	r.mu.Lock()
	r.m[k] = v
	r.mu.Unlock()
}

func (r *rwMap[K]) Swap(k K, v uint64) (uint64, bool, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.m[k]
	r.m[k] = v
	return p, ok, true
}

func (r *rwMap[K]) CompareAndSwap(k K, old, new uint64) (bool, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[k]; ok && v == old {
		r.m[k] = new
		return true, true
	}
	return false, true
}

func (r *rwMap[K]) Range(f func(k K, v uint64) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k, v := range r.m {
		if !f(k, v) {
			return
		}
	}
}

func (r *rwMap[K]) Serialize(out []byte) []byte {
	r.mu.RLock()
	b, _ := json.Marshal(r.m)
	r.mu.RUnlock()
	return append(out, b...)
}

// ---- plain map (one goroutine only) --------------------------------------------------------

type plainMap[K comparable] struct{ m map[K]uint64 }

func newPlainMap[K comparable]() *plainMap[K] { return &plainMap[K]{m: make(map[K]uint64)} }

func (p *plainMap[K]) Load(k K) (uint64, bool) {
	v, ok := p.m[k]
	return v, ok
}

func (p *plainMap[K]) LoadOrStore(k K, v uint64) (uint64, bool) {
	if a, ok := p.m[k]; ok {
		return a, true
	}
	p.m[k] = v
	return v, false
}

func (p *plainMap[K]) LoadAndDelete(k K) (uint64, bool) {
	v, ok := p.m[k]
	if ok {
		delete(p.m, k)
	}
	return v, ok
}

func (p *plainMap[K]) Store(k K, v uint64) { p.m[k] = v }

func (p *plainMap[K]) Swap(k K, v uint64) (uint64, bool, bool) {
	old, ok := p.m[k]
	p.m[k] = v
	return old, ok, true
}

func (p *plainMap[K]) CompareAndSwap(k K, old, new uint64) (bool, bool) {
	if v, ok := p.m[k]; ok && v == old {
		p.m[k] = new
		return true, true
	}
	return false, true
}

func (p *plainMap[K]) Range(f func(k K, v uint64) bool) {
	for k, v := range p.m {
		if !f(k, v) {
			return
		}
	}
}

func (p *plainMap[K]) Serialize(out []byte) []byte {
	b, _ := json.Marshal(p.m)
	return append(out, b...)
}

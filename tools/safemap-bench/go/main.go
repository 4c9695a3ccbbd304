// Command safemap-bench-go runs safemap-bench's workloads on Go's maps - sync.Map, a map
// behind a sync.RWMutex, and a plain map (one goroutine only) - and prints the results in
// safemap-bench's CSV schema, so `scripts/bench --with-go` shows them in the same table.
//
// The workloads, key streams, thread bases and checksums are the C++ engine's
// (tools/safemap-bench/engine/workloads.hpp): the same splitmix64 streams, the same periodic
// checksum predictions. Zipf key streams use math.Pow, which may differ from glibc's pow in the
// last bit, so a Zipf stream can differ from the C++ one in rare keys; its own checksum
// prediction still holds.
//
// Standard library only; go run . -h for the flags.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---- keys (engine/keys.hpp) ----------------------------------------------------------------

func fmix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

type splitmix64 struct{ state uint64 }

func (s *splitmix64) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	return fmix64(s.state)
}

func (s *splitmix64) nextUnit() float64 { return float64(s.next()>>11) * (1.0 / (1 << 53)) }

func stringKey(index uint64) string {
	const hex = "0123456789abcdef"
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	r := fmix64(index ^ 0x5bd1e9955bd1e995)
	prefix := r % 9
	var b strings.Builder
	for j := uint64(0); j < prefix; j++ {
		r = fmix64(r + j)
		b.WriteByte(letters[r%uint64(len(letters))])
	}
	v := fmix64(index)
	for j := 0; j < 16; j++ {
		b.WriteByte(hex[v&15])
		v >>= 4
	}
	return b.String()
}

func mixOps(writePct uint64, zipf bool, s float64, keys, length int) []uint32 {
	ops := make([]uint32, length)
	rng := splitmix64{0x5afe3a9b}
	if zipf {
		cdf := make([]float64, keys)
		sum := 0.0
		for r := 0; r < keys; r++ {
			sum += 1.0 / math.Pow(float64(r+1), s)
			cdf[r] = sum
		}
		for r := range cdf {
			cdf[r] /= sum
		}
		cdf[keys-1] = 1
		for j := range ops {
			u := rng.nextUnit()
			r := sort.Search(keys, func(i int) bool { return cdf[i] > u })
			if r == keys {
				r = keys - 1
			}
			ops[j] = uint32(r)
		}
	} else {
		for j := range ops {
			ops[j] = uint32(rng.next() % uint64(keys))
		}
	}
	for j := range ops {
		if (uint64(j)+1)*writePct/100 > uint64(j)*writePct/100 {
			ops[j] |= 1 << 31
		}
	}
	return ops
}

func threadOffset(t int, length uint64) uint64 {
	return (uint64(t) * 0x9e3779b97f4a7c15 >> 20) & (length - 1)
}

// ---- workloads (engine/workloads.hpp) ------------------------------------------------------

const (
	mostlyPeriod   = 1024
	balancedPeriod = 256
	balancedHits   = 128
	goMapSize      = 1024
	serializeKeys  = 1024
	serializeEvery = 64
	impossible     = uint64(1) << 40
)

type workload struct {
	name     string
	kind     string
	group    string
	det      string // always, single, never
	strings  bool
	writePct uint64
	zipf     bool
}

func catalog(dists []string) []workload {
	var v []workload
	for _, n := range []string{"load-mostly-hits", "load-mostly-misses", "load-or-store-balanced",
		"load-or-store-unique", "load-or-store-collision", "load-and-delete-balanced",
		"load-and-delete-unique", "load-and-delete-collision", "range", "adversarial-alloc",
		"adversarial-delete", "delete-collision", "swap-collision"} {
		det := "always"
		if n == "load-and-delete-collision" {
			det = "single"
		} else if n == "adversarial-delete" {
			det = "never"
		}
		v = append(v, workload{name: n, kind: n, group: "go-suite", det: det})
	}
	for _, d := range dists {
		for _, w := range []uint64{1, 10, 50, 90} {
			name := fmt.Sprintf("mix-%d-%d", 100-w, w)
			if d == "zipf" {
				name += "-zipf"
			}
			v = append(v, workload{name: name, kind: "mix", group: "mixes", det: "always",
				writePct: w, zipf: d == "zipf"})
		}
	}
	for _, d := range dists {
		name := "mix-90-10-string"
		if d == "zipf" {
			name += "-zipf"
		}
		v = append(v, workload{name: name, kind: "mix", group: "extra", det: "always",
			strings: true, writePct: 10, zipf: d == "zipf"})
	}
	v = append(v, workload{name: "serialize-json", kind: "serialize-json", group: "extra", det: "always"})
	v = append(v, workload{name: "compare-and-swap-collision", kind: "cas-collision", group: "extra",
		det: "single"})
	return v
}

func selectWorkloads(names, dists []string) ([]workload, error) {
	sel := catalog(dists)
	all := catalog([]string{"uniform", "zipf"})
	picked := map[string]bool{}
	for _, n := range names {
		found := false
		for _, w := range sel {
			base := strings.TrimSuffix(w.name, "-zipf")
			if n == "all" || n == w.group || n == base {
				picked[w.name], found = true, true
			}
		}
		if !found {
			for _, w := range all {
				if w.name == n {
					picked[w.name], found = true, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown workload %q", n)
		}
	}
	var out []workload
	for _, w := range all {
		if picked[w.name] {
			out = append(out, w)
		}
	}
	return out, nil
}

type plan struct {
	w        *workload
	keys     int
	ops      []uint32
	u64Keys  []uint64
	strKeys  []string
	jsonLen  uint64
	prefix   []uint64 // periodic workloads
	hasTable bool
}

func prefixOf(period uint64, g func(j uint64) uint64) []uint64 {
	p := make([]uint64, period+1)
	for j := uint64(0); j < period; j++ {
		p[j+1] = p[j] + g(j)
	}
	return p
}

func makePlan(w *workload, keys int, zipfS float64) *plan {
	p := &plan{w: w}
	switch w.kind {
	case "load-mostly-hits":
		p.prefix = prefixOf(mostlyPeriod, func(j uint64) uint64 {
			if j < 1023 {
				return j + 1
			}
			return 0
		})
	case "load-mostly-misses":
		p.prefix = prefixOf(mostlyPeriod, func(j uint64) uint64 {
			if j == 0 {
				return 1
			}
			return 0
		})
	case "load-or-store-balanced":
		p.prefix = prefixOf(balancedPeriod, func(j uint64) uint64 {
			if j < balancedHits {
				return j + 1
			}
			return 1
		})
	case "load-or-store-unique", "load-or-store-collision", "swap-collision", "load-and-delete-collision":
		p.prefix = prefixOf(1, func(uint64) uint64 { return 1 })
	case "cas-collision":
		p.prefix = prefixOf(1, func(uint64) uint64 { return 2 })
	case "range":
		p.prefix = prefixOf(1, func(uint64) uint64 { return goMapSize * (goMapSize + 1) / 2 })
	case "mix":
		p.keys = keys
		p.ops = mixOps(w.writePct, w.zipf, zipfS, keys, 1<<16)
		if w.strings {
			for k := 0; k < keys; k++ {
				p.strKeys = append(p.strKeys, stringKey(uint64(k)))
			}
		} else {
			for k := 0; k < keys; k++ {
				p.u64Keys = append(p.u64Keys, fmix64(uint64(k)))
			}
		}
		p.prefix = prefixOf(uint64(len(p.ops)), func(j uint64) uint64 {
			if p.ops[j]>>31 != 0 {
				return 0
			}
			return uint64(p.ops[j]&0x7fffffff) + 2
		})
	case "serialize-json":
		p.keys = serializeKeys
		ref := newPlainMap[uint64]()
		for k := uint64(0); k < serializeKeys; k++ {
			p.u64Keys = append(p.u64Keys, fmix64(k))
			ref.Store(fmix64(k), k+1)
		}
		p.jsonLen = uint64(len(ref.Serialize(nil)))
		p.prefix = prefixOf(serializeEvery, func(j uint64) uint64 {
			if j == 0 {
				return p.jsonLen
			}
			return 0
		})
	}
	return p
}

func threadBase(t int) uint64 { return uint64(t) << 40 }

func (p *plan) start(t int) uint64 {
	if len(p.ops) == 0 {
		return threadBase(t)
	}
	return threadBase(t) + threadOffset(t, uint64(len(p.ops)))
}

func periodicSum(prefix []uint64, start, n uint64) uint64 {
	period := uint64(len(prefix) - 1)
	upto := func(x uint64) uint64 { return (x/period)*prefix[period] + prefix[x%period] }
	return upto(start+n) - upto(start)
}

type threadOps struct{ start, count uint64 }

func expected(p *plan, threads []threadOps) (uint64, bool) {
	w := p.w
	if w.det == "never" || (w.det == "single" && len(threads) != 1) {
		return 0, false
	}
	var sum uint64
	switch w.kind {
	case "load-and-delete-unique":
		return 0, true
	case "delete-collision":
		for _, t := range threads {
			if t.count > 0 {
				return 1, true
			}
		}
		return 0, true
	case "adversarial-alloc":
		for _, t := range threads {
			k := uint64(0)
			for k*(k+3)/2 < t.count {
				k++
			}
			sum += k
		}
		return sum, true
	case "load-and-delete-balanced":
		for r := uint64(0); r < balancedHits; r++ {
			for _, t := range threads {
				first := t.start + (r+balancedPeriod-t.start%balancedPeriod)%balancedPeriod
				if first < t.start+t.count {
					sum += r + 1
					break
				}
			}
		}
		return sum, true
	}
	for _, t := range threads {
		sum += periodicSum(p.prefix, t.start, t.count)
	}
	return sum, true
}

// ---- ops (engine/runner.hpp) ---------------------------------------------------------------

func found(v, want uint64) uint64 {
	if v == want {
		return v + 1
	}
	return impossible
}

type state struct {
	checksum        uint64
	stores          uint64
	loadsSinceStore uint64
	buf             []byte
}

// setupU64 is Go's setup of each benchmark (priming included).
func setupU64(m mapAPI[uint64], p *plan) {
	hits := func(n uint64) {
		for k := uint64(0); k < n; k++ {
			m.LoadOrStore(k, k)
		}
		for k := uint64(0); k < 2*n; k++ {
			m.Load(k % n)
		}
	}
	switch p.w.kind {
	case "load-mostly-hits":
		hits(mostlyPeriod - 1)
	case "load-mostly-misses":
		hits(1)
	case "load-or-store-balanced", "load-and-delete-balanced":
		hits(balancedHits)
	case "load-or-store-collision", "load-and-delete-collision", "delete-collision", "swap-collision",
		"cas-collision":
		m.LoadOrStore(0, 0)
	case "range", "adversarial-delete":
		for k := uint64(0); k < goMapSize; k++ {
			m.Store(k, k)
		}
	case "mix", "serialize-json":
		for k := 0; k < p.keys; k++ {
			m.Store(p.u64Keys[k], uint64(k)+1)
		}
	}
}

// opU64 returns the op function of workload p for one thread, or "" and nil when the map
// cannot run it.
func opU64(m mapAPI[uint64], p *plan, s *state) (func(i uint64), string) {
	switch p.w.kind {
	case "load-mostly-hits", "load-mostly-misses":
		return func(i uint64) {
			k := i % mostlyPeriod
			if v, ok := m.Load(k); ok {
				s.checksum += found(v, k)
			}
		}, ""
	case "load-or-store-balanced":
		return func(i uint64) {
			j := i % balancedPeriod
			if j < balancedHits {
				if v, loaded := m.LoadOrStore(j, i); loaded {
					s.checksum += found(v, j)
				} else {
					s.checksum += impossible
				}
			} else if v, loaded := m.LoadOrStore(i, i); !loaded && v == i {
				s.checksum++
			} else {
				s.checksum += impossible
			}
		}, ""
	case "load-or-store-unique":
		return func(i uint64) {
			if v, loaded := m.LoadOrStore(i, i); !loaded && v == i {
				s.checksum++
			} else {
				s.checksum += impossible
			}
		}, ""
	case "load-or-store-collision":
		return func(i uint64) {
			if v, loaded := m.LoadOrStore(0, 0); loaded {
				s.checksum += found(v, 0)
			} else {
				s.checksum += impossible
			}
		}, ""
	case "load-and-delete-balanced":
		return func(i uint64) {
			j := i % balancedPeriod
			if j < balancedHits {
				if v, ok := m.LoadAndDelete(j); ok {
					s.checksum += found(v, j)
				}
			} else if _, ok := m.LoadAndDelete(i); ok {
				s.checksum += impossible
			}
		}, ""
	case "load-and-delete-unique":
		return func(i uint64) {
			if _, ok := m.LoadAndDelete(i); ok {
				s.checksum += impossible
			}
		}, ""
	case "load-and-delete-collision":
		return func(i uint64) {
			if v, ok := m.LoadAndDelete(0); ok {
				s.checksum += found(v, 0)
				m.Store(0, 0)
			}
		}, ""
	case "range":
		return func(i uint64) {
			var sum uint64
			m.Range(func(_ uint64, v uint64) bool {
				sum += v + 1
				return true
			})
			s.checksum += sum
		}, ""
	case "adversarial-alloc":
		return func(i uint64) {
			if _, ok := m.Load(i); ok {
				s.checksum += impossible
			}
			s.loadsSinceStore++
			if s.loadsSinceStore > s.stores {
				if v, loaded := m.LoadOrStore(i, s.stores); !loaded && v == s.stores {
					s.checksum++
				} else {
					s.checksum += impossible
				}
				s.loadsSinceStore = 0
				s.stores++
			}
		}, ""
	case "adversarial-delete":
		return func(i uint64) {
			if v, ok := m.Load(i); ok {
				s.checksum += v + 1
			}
			if i%goMapSize == 0 {
				var first uint64
				seen := false
				m.Range(func(k, _ uint64) bool {
					first, seen = k, true
					return false
				})
				if seen {
					m.LoadAndDelete(first)
				}
				m.Store(i, i)
			}
		}, ""
	case "delete-collision":
		return func(i uint64) {
			if _, ok := m.LoadAndDelete(0); ok { // sync.Map.Delete is LoadAndDelete
				s.checksum++
			}
		}, ""
	case "swap-collision":
		if _, _, ok := m.Swap(0, 0); !ok {
			return nil, "sync.Map.Swap needs Go 1.20"
		}
		return func(i uint64) {
			if v, loaded, _ := m.Swap(0, 0); loaded {
				s.checksum += found(v, 0)
			} else {
				s.checksum += impossible
			}
		}, ""
	case "cas-collision":
		if _, ok := m.CompareAndSwap(1<<63, 0, 0); !ok {
			return nil, "sync.Map.CompareAndSwap needs Go 1.20"
		}
		return func(i uint64) {
			if ok, _ := m.CompareAndSwap(0, 0, 42); ok {
				s.checksum++
				if ok2, _ := m.CompareAndSwap(0, 42, 0); ok2 {
					s.checksum++
				}
			}
		}, ""
	case "mix":
		mask := uint64(len(p.ops) - 1)
		return func(i uint64) {
			o := p.ops[i&mask]
			k := o & 0x7fffffff
			if o>>31 != 0 {
				m.Store(p.u64Keys[k], uint64(k)+1)
			} else if v, ok := m.Load(p.u64Keys[k]); ok {
				s.checksum += found(v, uint64(k)+1)
			} else {
				s.checksum += impossible
			}
		}, ""
	case "serialize-json":
		s.buf = make([]byte, 0, 2*p.jsonLen+64)
		return func(i uint64) {
			if i%serializeEvery == 0 {
				s.buf = m.Serialize(s.buf[:0])
				s.checksum += uint64(len(s.buf))
			} else {
				k := i % serializeKeys
				m.Store(p.u64Keys[k], k+1)
			}
		}, ""
	}
	return nil, "unknown workload"
}

func opString(m mapAPI[string], p *plan, s *state) func(i uint64) {
	mask := uint64(len(p.ops) - 1)
	return func(i uint64) {
		o := p.ops[i&mask]
		k := o & 0x7fffffff
		if o>>31 != 0 {
			m.Store(p.strKeys[k], uint64(k)+1)
		} else if v, ok := m.Load(p.strKeys[k]); ok {
			s.checksum += found(v, uint64(k)+1)
		} else {
			s.checksum += impossible
		}
	}
}

// ---- runner -------------------------------------------------------------------------------

type reservoir struct {
	data     []uint64
	interval uint64
}

func (r *reservoir) add(ns uint64) {
	if len(r.data) == cap(r.data) {
		half := len(r.data) / 2
		for i := 0; i < half; i++ {
			r.data[i] = r.data[2*i]
		}
		r.data = r.data[:half]
		r.interval *= 2
	}
	r.data = append(r.data, ns)
}

type repeatResult struct {
	wallNs   float64
	ops      uint64
	checksum uint64
	threads  []threadOps
	samples  []uint64
	mallocs  uint64
	bytes    uint64
}

type options struct {
	duration time.Duration
	ops      uint64
}

func runOnce(mapName string, p *plan, threads int, o options) (repeatResult, string) {
	var res repeatResult
	states := make([]*state, threads)
	fns := make([]func(uint64), threads)
	for t := range states {
		states[t] = &state{}
	}
	if p.w.strings {
		var m mapAPI[string]
		switch mapName {
		case "go:sync.Map":
			m = &syncMap[string]{}
		case "go:RWMutex":
			m = newRWMap[string]()
		default:
			m = newPlainMap[string]()
		}
		for k := 0; k < p.keys; k++ {
			m.Store(p.strKeys[k], uint64(k)+1)
		}
		for t := range fns {
			fns[t] = opString(m, p, states[t])
		}
	} else {
		var m mapAPI[uint64]
		switch mapName {
		case "go:sync.Map":
			m = &syncMap[uint64]{}
		case "go:RWMutex":
			m = newRWMap[uint64]()
		default:
			m = newPlainMap[uint64]()
		}
		setupU64(m, p)
		for t := range fns {
			var why string
			fns[t], why = opU64(m, p, states[t])
			if fns[t] == nil {
				return res, why
			}
		}
	}
	type slot struct {
		ops     uint64
		end     time.Time
		samples []uint64
	}
	slots := make([]slot, threads)
	var prepared, done sync.WaitGroup
	prepared.Add(threads)
	done.Add(threads)
	start := make(chan struct{})
	var stop atomic.Bool
	for t := 0; t < threads; t++ {
		go func(t int) {
			defer done.Done()
			r := reservoir{data: make([]uint64, 0, 1<<14), interval: 64}
			op := fns[t]
			i := p.start(t)
			n := uint64(0)
			blockLen := uint64(64)
			prepared.Done()
			<-start
			for {
				block := blockLen
				if o.ops > 0 {
					if n >= o.ops {
						break
					}
					if o.ops-n < block {
						block = o.ops - n
					}
				} else if stop.Load() {
					break
				}
				if n&(r.interval-1) == 0 {
					a := time.Now()
					op(i)
					ns := uint64(time.Since(a).Nanoseconds())
					r.add(ns)
					// A slow sampled op (a CowMap copy) shortens the blocks until a sampled op
					// is fast again: one preemption must not put a stop check on every later op.
					if ns > 20000 {
						blockLen = 1
					} else {
						blockLen = 64
					}
					i++
					n++
					block--
				}
				for ; block > 0; block-- {
					op(i)
					i++
					n++
				}
			}
			slots[t] = slot{ops: n, end: time.Now(), samples: r.data}
		}(t)
	}
	prepared.Wait()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	begin := time.Now()
	close(start)
	if o.ops == 0 {
		time.Sleep(o.duration)
		stop.Store(true)
	}
	done.Wait()
	runtime.ReadMemStats(&m1)
	end := begin
	for t := 0; t < threads; t++ {
		if slots[t].end.After(end) {
			end = slots[t].end
		}
		res.ops += slots[t].ops
		res.checksum += states[t].checksum
		res.threads = append(res.threads, threadOps{p.start(t), slots[t].ops})
		res.samples = append(res.samples, slots[t].samples...)
	}
	res.wallNs = float64(end.Sub(begin).Nanoseconds())
	res.mallocs = m1.Mallocs - m0.Mallocs
	res.bytes = m1.TotalAlloc - m0.TotalAlloc
	return res, ""
}

func memoryPerEntry(mapName string, n int) float64 {
	keys := make([]uint64, n)
	for k := range keys {
		keys[k] = fmix64(uint64(k))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var m mapAPI[uint64]
	switch mapName {
	case "go:sync.Map":
		m = &syncMap[uint64]{}
	case "go:RWMutex":
		m = newRWMap[uint64]()
	default:
		m = newPlainMap[uint64]()
	}
	for k, key := range keys {
		m.Store(key, uint64(k)+1)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}

// ---- output -------------------------------------------------------------------------------

const csvHeader = "map,family,workload,key_type,dist,threads,keys,repeats,ops,ns_per_op,ns_per_op_min," +
	"ns_per_op_max,mops,allocs_per_op,bytes_per_op,mem_per_entry,p50_ns,p99_ns,p999_ns," +
	"latency_samples,checksum,expected,check,note"

func num(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

func percentile(sorted []uint64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return float64(sorted[rank-1])
}

func main() {
	nproc := runtime.NumCPU()
	defThreads := []string{}
	for t := 1; t <= nproc; t++ {
		defThreads = append(defThreads, strconv.Itoa(t))
	}
	defThreads = append(defThreads, strconv.Itoa(2*nproc))
	workloadsFlag := flag.String("workloads", "go-suite,mix-50-50", "workloads (as safemap-bench)")
	threadsFlag := flag.String("threads", strings.Join(defThreads, ","), "thread (goroutine) counts")
	mapsFlag := flag.String("maps", "go:sync.Map,go:RWMutex,go:map", "maps")
	durationFlag := flag.Duration("duration", 60*time.Millisecond, "time per run")
	opsFlag := flag.Uint64("ops", 0, "ops per goroutine instead of a duration")
	repeatFlag := flag.Int("repeat", 3, "runs per cell (median reported)")
	keysFlag := flag.Int("keys", 1<<16, "keys in the mixes and the memory measurement")
	distFlag := flag.String("dist", "uniform", "key choice of the mixes: uniform,zipf")
	zipfFlag := flag.Float64("zipf-s", 0.99, "Zipf exponent")
	outFlag := flag.String("out", "", "CSV file (default stdout)")
	quietFlag := flag.Bool("q", false, "no progress on stderr")
	flag.Parse()

	workloads, err := selectWorkloads(strings.Split(*workloadsFlag, ","), strings.Split(*distFlag, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "safemap-bench-go:", err)
		os.Exit(2)
	}
	var threads []int
	for _, s := range strings.Split(*threadsFlag, ",") {
		t, err := strconv.Atoi(s)
		if err != nil || t < 1 {
			fmt.Fprintf(os.Stderr, "safemap-bench-go: bad thread count %q\n", s)
			os.Exit(2)
		}
		threads = append(threads, t)
	}
	maps := strings.Split(*mapsFlag, ",")
	out := os.Stdout
	if *outFlag != "" {
		f, err := os.Create(*outFlag)
		if err != nil {
			fmt.Fprintln(os.Stderr, "safemap-bench-go:", err)
			os.Exit(2)
		}
		defer f.Close()
		out = f
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	fmt.Fprintln(w, csvHeader)

	memory := map[string]float64{}
	for _, m := range maps {
		memory[m] = memoryPerEntry(m, *keysFlag)
	}
	began := time.Now()
	for wi := range workloads {
		wl := &workloads[wi]
		p := makePlan(wl, *keysFlag, *zipfFlag)
		for _, t := range threads {
			for _, m := range maps {
				if !*quietFlag {
					fmt.Fprintf(os.Stderr, "[go %s] %s %s %d goroutines\n",
						time.Since(began).Round(time.Second), wl.name, m, t)
				}
				keyType, dist := "u64", "-"
				if wl.strings {
					keyType = "string"
				}
				if wl.kind == "mix" {
					dist = "uniform"
					if wl.zipf {
						dist = "zipf"
					}
				}
				keys := p.keys
				if wl.kind == "range" || wl.kind == "adversarial-delete" {
					keys = goMapSize
				}
				prefix := fmt.Sprintf("%s,go,%s,%s,%s,%d,%d", m, wl.name, keyType, dist, t, keys)
				if m == "go:map" && t > 1 {
					fmt.Fprintf(w, "%s,0,0,,,,,,,%s,,,,0,0,,n/a,skipped: a plain map is for one goroutine\n",
						prefix, num(memory[m]))
					continue
				}
				var reps []repeatResult
				why := ""
				for r := 0; r < *repeatFlag && why == ""; r++ {
					var res repeatResult
					res, why = runOnce(m, p, t, options{*durationFlag, *opsFlag})
					if why == "" {
						reps = append(reps, res)
					}
					runtime.GC()
				}
				if why != "" {
					fmt.Fprintf(w, "%s,0,0,,,,,,,%s,,,,0,0,,n/a,skipped: %s\n", prefix, num(memory[m]), why)
					continue
				}
				nsPer := make([]float64, len(reps))
				order := make([]int, len(reps))
				var totalOps, mallocs, bytes uint64
				var samples []uint64
				for i, r := range reps {
					nsPer[i] = r.wallNs / float64(r.ops)
					order[i] = i
					totalOps += r.ops
					mallocs += r.mallocs
					bytes += r.bytes
					samples = append(samples, r.samples...)
				}
				sort.Slice(order, func(a, b int) bool { return nsPer[order[a]] < nsPer[order[b]] })
				sorted := append([]float64(nil), nsPer...)
				sort.Float64s(sorted)
				n := len(sorted)
				median := sorted[n/2]
				if n%2 == 0 {
					median = (sorted[n/2-1] + sorted[n/2]) / 2
				}
				med := reps[order[(n-1)/2]]
				sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
				check, exp := "n/a", ""
				if e, ok := expected(p, med.threads); ok {
					exp = strconv.FormatUint(e, 10)
					check = "ok"
					for _, r := range reps {
						if e2, _ := expected(p, r.threads); e2 != r.checksum {
							check = "MISMATCH"
						}
					}
				}
				fmt.Fprintf(w, "%s,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%d,%s,%s,\n",
					prefix, len(reps), med.ops, num(median), num(sorted[0]), num(sorted[n-1]),
					num(1e3/median), num(float64(mallocs)/float64(totalOps)),
					num(float64(bytes)/float64(totalOps)), num(memory[m]),
					num(percentile(samples, 50)), num(percentile(samples, 99)),
					num(percentile(samples, 99.9)), len(samples), med.checksum, exp, check)
			}
		}
	}
}

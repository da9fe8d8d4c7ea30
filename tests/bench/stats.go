package bench

import (
	"slices"
	"time"
)

// Latency summarises publish → receipt times, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Summarise sorts a copy of ns (nanoseconds) and reads its percentiles
// (nearest rank).
func Summarise(ns []int64) Latency {
	if len(ns) == 0 {
		return Latency{}
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return Latency{
		Count: len(s),
		P50:   ms(Percentile(s, 50)),
		P90:   ms(Percentile(s, 90)),
		P99:   ms(Percentile(s, 99)),
		Max:   ms(s[len(s)-1]),
		Mean:  sum / float64(len(s)) / float64(time.Millisecond),
	}
}

// Percentile is the nearest-rank p-th percentile of sorted (p in (0, 100]).
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	// Rank ⌈p/100 × n⌉, 1-based.
	r := int(p / 100 * float64(len(sorted)))
	if float64(r) < p/100*float64(len(sorted)) {
		r++
	}
	r = min(max(r, 1), len(sorted))
	return sorted[r-1]
}

func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

package bench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	sorted := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		p    float64
		want int64
	}{
		{name: "p50", p: 50, want: 5},
		{name: "p90", p: 90, want: 9},
		{name: "p99", p: 99, want: 10},
		{name: "p100", p: 100, want: 10},
		{name: "tiny", p: 0.1, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(sorted, tt.p); got != tt.want {
				t.Fatalf("Percentile(%v) = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Fatalf("Percentile(nil) = %d", got)
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	l := Summarise([]int64{int64(3 * time.Millisecond), int64(time.Millisecond), int64(2 * time.Millisecond)})
	if l.Count != 3 || l.P50 != 2 || l.Max != 3 || l.Mean != 2 {
		t.Fatalf("Summarise = %+v", l)
	}
}

func TestPayloadCarriesItsPublishTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int
	}{
		{name: "small", size: 10},
		{name: "1 KiB", size: 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b := Payload(prefix, 1732790000123456789, 42, tt.size)
			body := b[len(prefix):]
			if !json.Valid(body) {
				t.Fatalf("not JSON: %s", body)
			}
			if tt.size > 60 && len(body) != tt.size {
				t.Fatalf("%d bytes, want %d", len(body), tt.size)
			}
			if got := PublishedAt(body); got != 1732790000123456789 {
				t.Fatalf("PublishedAt = %d", got)
			}
		})
	}
}

func TestPublishedAt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want int64
	}{
		{name: "compact", body: `{"pub_ns":123,"x":1}`, want: 123},
		{name: "spaced", body: `{ "pub_ns" : 456 }`, want: 456},
		{name: "absent", body: `{"x":1}`, want: 0},
		{name: "not a number", body: `{"pub_ns":"x"}`, want: 0},
		{name: "empty", body: ``, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PublishedAt([]byte(tt.body)); got != tt.want {
				t.Fatalf("PublishedAt(%s) = %d, want %d", tt.body, got, tt.want)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := []byte("1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3 {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", cpu, err)
	}
	status := []byte("Name:\tdeliverer\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\nThreads:\t8\n")
	m, err := parseStatus(status)
	if err != nil || m.Peak != 20<<20 || m.RSS != 10<<20 {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Fatal("parseStatus without VmHWM: no error")
	}
}

func TestChartIsAPNG(t *testing.T) {
	t.Parallel()
	rep := &Report{Started: time.Now(), Machine: Machine{Cores: 2, CPUModel: "test cpu"}, Modes: []Mode{{
		Sync: SyncAlways,
		Scenarios: []Scenario{
			{Name: "limit (bare client)", Path: "bare", DeliveriesPerSec: 1000},
			{Name: "1×1 nats", Path: "nats", DeliveriesPerSec: 500, OfLimit: 0.5,
				CPU: map[string]CPUUse{ProcDeliverer: {Seconds: 1, Per1000: 0.2}}},
			{Name: "latency 1000/s nats", Path: "nats", Rate: 1000, Latency: Latency{P50: 1, P90: 2, P99: 3, Max: 4}},
		},
	}}}
	var buf bytes.Buffer
	if err := png.Encode(&buf, rep.Chart()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != chartW || b.Dy() < 200 {
		t.Fatalf("chart is %v", b)
	}
}

func TestGrowth(t *testing.T) {
	t.Parallel()
	var flat, rising []SoakSample
	for i := range 10 {
		flat = append(flat, SoakSample{Seconds: float64(i * 60), RSS: 50 << 20})
		rising = append(rising, SoakSample{Seconds: float64(i * 60), RSS: int64(50+2*i) << 20})
	}
	if g := growth(flat); g != 0 {
		t.Fatalf("flat growth = %v", g)
	}
	if g := growth(rising); g < 1.99 || g > 2.01 {
		t.Fatalf("rising growth = %v, want 2 MiB/min", g)
	}
}

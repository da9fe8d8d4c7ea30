package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/color"
	"image/png"
	"strings"
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

func TestCheckSync(t *testing.T) {
	t.Parallel()
	for _, sync := range []string{SyncAlways, SyncDefault, SyncR3} {
		if err := CheckSync(sync); err != nil {
			t.Errorf("CheckSync(%q) = %v", sync, err)
		}
	}
	err := CheckSync("r5")
	if err == nil || !strings.Contains(err.Error(), `"r5"`) || !strings.Contains(err.Error(), "always, default, r3") {
		t.Fatalf("CheckSync(r5) = %v, want an error naming it and the accepted settings", err)
	}
	if got := Defaults.Syncs; strings.Join(got, ",") != "always,default,r3" {
		t.Fatalf("default syncs %v, want always, default, r3", got)
	}
}

func TestModeLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sync, label, nats string
		nodes             int
	}{
		{sync: SyncAlways, label: "sync_interval: always", nats: "nats-server", nodes: 1},
		{sync: SyncDefault, label: "sync_interval: default (2m)", nats: "nats-server", nodes: 1},
		{sync: SyncR3, label: "3-node cluster, R3, sync_interval: always", nats: "nats-server ×3", nodes: 3},
	}
	for _, tt := range tests {
		t.Run(tt.sync, func(t *testing.T) {
			m := newMode(tt.sync)
			if m.Label() != tt.label || m.Setting != tt.label {
				t.Fatalf("label %q, setting %q; want %q", m.Label(), m.Setting, tt.label)
			}
			if m.NATSNodes != tt.nodes {
				t.Fatalf("%d nats nodes, want %d", m.NATSNodes, tt.nodes)
			}
			if got := m.ProcLabel(ProcNATS); got != tt.nats {
				t.Fatalf("ProcLabel(nats-server) = %q, want %q", got, tt.nats)
			}
			if got := m.ProcLabel(ProcDeliverer); got != ProcDeliverer {
				t.Fatalf("ProcLabel(deliverer) = %q", got)
			}
		})
	}
}

// An r3 mode says in the JSON that it is a cluster, and in the table that
// nats-server's numbers are the sum over its nodes.
func TestR3ModeReport(t *testing.T) {
	t.Parallel()
	m := newMode(SyncR3)
	m.StreamReplicas = 3
	m.PeakRSS[ProcNATS] = 3 << 20
	m.Scenarios = []Scenario{{Name: "1×1 nats", Path: "nats", Received: 10, Deliveries: 10,
		CPU: map[string]CPUUse{ProcNATS: {Seconds: 3, Per1000: 0.3}}}}
	rep := &Report{Started: time.Now(), Modes: []Mode{m}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Modes []map[string]any `json:"modes"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sync": "r3", "setting": "3-node cluster, R3, sync_interval: always",
		"nats_nodes": 3.0, "stream_replicas": 3.0}
	for k, v := range want {
		if got.Modes[0][k] != v {
			t.Errorf("JSON %s = %v, want %v", k, got.Modes[0][k], v)
		}
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	for _, s := range []string{"== 3-node cluster, R3, sync_interval: always ==", "nats-server ×3", "nats-server ×3 3.0 MiB",
		"summed over the 3 nodes"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestSumOver(t *testing.T) {
	t.Parallel()
	read := func(pid int) (float64, error) {
		if pid < 0 {
			return 0, errors.New("gone")
		}
		return float64(pid), nil
	}
	tests := []struct {
		name string
		pids []int
		want float64
		ok   bool
	}{
		{name: "one", pids: []int{5}, want: 5, ok: true},
		{name: "three nodes", pids: []int{1, 2, 4}, want: 7, ok: true},
		{name: "a node unreadable", pids: []int{1, -1, 4}, ok: false},
		{name: "none", pids: nil, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sumOver(tt.pids, read)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("sumOver(%v) = %v, %v; want %v, %v", tt.pids, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// The chart gives each mode its own colour and names all three in the
// legend.
func TestChartColoursEveryMode(t *testing.T) {
	t.Parallel()
	rep := &Report{Started: time.Now(), Machine: Machine{Cores: 2, CPUModel: "test cpu"}}
	for _, sync := range []string{SyncAlways, SyncDefault, SyncR3} {
		m := newMode(sync)
		m.Scenarios = []Scenario{{Name: "1×1 nats", Path: "nats", DeliveriesPerSec: 500}}
		rep.Modes = append(rep.Modes, m)
	}
	legend := strings.Join(rep.legend(), "\n")
	for _, s := range []string{"blue: sync_interval: always", "orange: sync_interval: default (2m)",
		"green: 3-node cluster, R3, sync_interval: always", "grey: bare go http client"} {
		if !strings.Contains(legend, s) {
			t.Errorf("legend lacks %q:\n%s", s, legend)
		}
	}
	for _, l := range rep.legend() {
		if w := textWidth(l, textScale); w > chartW-2*margin {
			t.Errorf("legend line %q is %d px wide, the chart %d", l, w, chartW)
		}
	}
	img := rep.Chart()
	for _, col := range []color.RGBA{colAlways, colDefault, colR3} {
		found := false
		for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y && !found; y++ {
			for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
				if img.RGBAAt(x, y) == col {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("no bar of colour %v", col)
		}
	}
}

func TestPrintStoredByStream(t *testing.T) {
	t.Parallel()
	scenarios := []Scenario{
		{Name: "1×1 nats", Received: 20000, StoredByStream: map[string]uint64{
			"EVENTS": 20000, "KV_hookline_deliveries": 20000, "ATTEMPTS": 150, "DELIVERIES": 400, "DEADLETTER": 0}},
		{Name: "limit", Path: "bare", Received: 5000},
		{Name: "nothing received", StoredByStream: map[string]uint64{"EVENTS": 3}},
	}
	var buf bytes.Buffer
	printStoredByStream(&buf, scenarios)
	want := "\nmessages stored per delivery, by stream (under sync_interval: always, one fsync each at most)\n" +
		"  1×1 nats: EVENTS 1.000, KV_hookline_deliveries 1.000, DELIVERIES 0.020, ATTEMPTS 0.007 (total 2.027)\n"
	if got := buf.String(); got != want {
		t.Fatalf("printStoredByStream =\n%q\nwant\n%q", got, want)
	}
	buf.Reset()
	printStoredByStream(&buf, scenarios[1:])
	if buf.Len() != 0 {
		t.Fatalf("printStoredByStream without a stored count printed %q", buf.String())
	}
}

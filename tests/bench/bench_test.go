package bench_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/bench"
	"github.com/hookline/hookline/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// Flags of `make bench` (go test … -args -events=…).
var (
	flagEvents      = flag.Int("events", bench.Defaults.Events, "events per 1×1 scenario (nats, api batch, api single)")
	flagFanout      = flag.Int("fanout-events", bench.Defaults.FanoutEvents, "events of the 1×10 scenario (ten deliveries each)")
	flagRate        = flag.Int("latency-rate", bench.Defaults.LatencyRate, "events/s of the latency scenario")
	flagDuration    = flag.Duration("latency-duration", bench.Defaults.LatencyDuration, "duration of the latency scenario")
	flagLatPaths    = flag.String("latency-paths", strings.Join(bench.Defaults.LatencyPaths, ","), "latency scenario publish paths: nats, ingest (the producer's NATS ingest), api (comma-separated)")
	flagPayload     = flag.Int("payload", bench.Defaults.PayloadBytes, "event payload bytes")
	flagConc        = flag.Int("concurrency", bench.Defaults.Concurrency, "deliverer workers = subscription max_in_flight = bare client concurrency")
	flagLimit       = flag.Int("limit-requests", 0, "requests of the bare client (default: 5 × -events)")
	flagOnly        = flag.String("only", "", "run only these scenarios: limit, nats, ingest, default, ordered, fair, batch, single, fanout, latency (comma-separated; default all)")
	flagSyncs       = flag.String("syncs", strings.Join(bench.Defaults.Syncs, ","), "nats-server settings to run: always (one node, sync_interval: always), default (one node, default sync), r3 (three-node cluster, R3, sync_interval: always)")
	flagProfile     = flag.Bool("profile", false, "capture CPU profiles of the deliverer and producer (pprof) under the throughput scenarios")
	flagArrivals    = flag.Bool("arrivals", false, "write each paced scenario's latencies in the order they arrived (victims, latency) under the output folder")
	flagProfileSecs = flag.Int("profile-seconds", bench.Defaults.ProfileSeconds, "length of each CPU profile")
	flagOut         = flag.String("out", defaultOut(), "folder for the JSON, the chart and the profiles")
	flagSoak        = flag.Duration("soak-duration", 10*time.Minute, "length of the soak")
	flagSoakTasks   = flag.Int("soak-in-flight", 10000, "tasks kept in flight during the soak")
	flagEnv         = flag.String("env", "", "extra settings of both services for A/B runs: KEY=VALUE;KEY=VALUE (values may hold commas)")
)

// defaultOut is results/ at the repository root.
func defaultOut() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "results"
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "results")
}

func configFromFlags() bench.Config {
	return bench.Config{
		Events:          *flagEvents,
		FanoutEvents:    *flagFanout,
		LatencyRate:     *flagRate,
		LatencyDuration: *flagDuration,
		LatencyPaths:    splitList(*flagLatPaths),
		PayloadBytes:    *flagPayload,
		Concurrency:     *flagConc,
		LimitRequests:   *flagLimit,
		Syncs:           splitList(*flagSyncs),
		Only:            splitList(*flagOnly),
		Profile:         *flagProfile,
		Arrivals:        *flagArrivals,
		ProfileSeconds:  *flagProfileSecs,
		Env:             envFromFlag(*flagEnv),
	}
}

// envFromFlag parses -env; a malformed pair stops the run with its name.
func envFromFlag(s string) harness.Env {
	env := harness.Env{}
	for _, kv := range strings.Split(s, ";") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(os.Stderr, "bench: -env %q: want KEY=VALUE\n", kv)
			os.Exit(2)
		}
		env[k] = v
	}
	return env
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// BenchmarkPipeline is `make bench`: every scenario under every sync
// setting, once (-benchtime 1x). It prints the table and writes the JSON
// and the chart under -out.
func BenchmarkPipeline(b *testing.B) {
	cfg := configFromFlags().WithDefaults()
	out, err := filepath.Abs(*flagOut)
	if err != nil {
		b.Fatal(err)
	}
	rep := bench.Run(b, cfg, out, func(name string, f func(tb testing.TB)) {
		b.Run(name, func(b *testing.B) { f(b) })
	})
	rep.WriteTable(os.Stdout)
	for _, m := range rep.Modes {
		for _, s := range m.Scenarios {
			if s.Path != "bare" && s.Rate == 0 {
				b.ReportMetric(s.DeliveriesPerSec, m.Sync+"_"+strings.NewReplacer(" ", "_", "×", "x").Replace(s.Name)+"_deliv/s")
			}
		}
	}
}

// BenchmarkSoak is `make soak`: the deliverer's memory over -soak-duration
// with -soak-in-flight tasks outstanding.
func BenchmarkSoak(b *testing.B) {
	out, err := filepath.Abs(*flagOut)
	if err != nil {
		b.Fatal(err)
	}
	sc := bench.SoakDefaults
	sc.Duration, sc.InFlight, sc.Bench = *flagSoak, *flagSoakTasks, configFromFlags()
	if syncs := splitList(*flagSyncs); len(syncs) == 1 {
		sc.Sync = syncs[0]
	}
	rep := bench.Soak(b, sc, out)
	rep.WriteTable(os.Stdout)
	b.ReportMetric(float64(rep.PeakRSS)/(1<<20), "peak_rss_MiB")
	b.ReportMetric(rep.GrowthMiBPerMin, "rss_MiB/min")
}

// TestSmoke runs the whole bench at a tiny size under the NATS default sync
// and checks that it measured deliveries on every path; it does not judge
// the numbers.
func TestSmoke(t *testing.T) {
	cfg := bench.Config{
		Events:          40,
		FanoutEvents:    10,
		LatencyRate:     50,
		LatencyDuration: time.Second,
		LatencyPaths:    []string{"nats", "ingest", "api"},
		Concurrency:     8,
		LimitRequests:   100,
		Syncs:           []string{bench.SyncDefault},
	}.WithDefaults()
	out := t.TempDir()
	rep := bench.Run(t, cfg, out, func(name string, f func(tb testing.TB)) {
		t.Run(name, func(t *testing.T) { f(t) })
	})
	if len(rep.Modes) != 1 {
		t.Fatalf("%d modes, want 1", len(rep.Modes))
	}
	m := rep.Modes[0]
	if m.Error != "" {
		t.Fatalf("mode failed: %s", m.Error)
	}
	want := map[string]bool{"limit (bare client)": true, "1×1 nats": true, "1×1 nats ingest": true, "1×1 api batch": true,
		"1×1 api single": true, "1×10 nats": true, "latency 50/s nats": true, "latency 50/s ingest": true, "latency 50/s api": true}
	// CPU comes from /proc in clock ticks (10 ms): a scenario of 40 events
	// may cost the deliverer less than one, so only the run's total must
	// be positive; each scenario must have measured it.
	var delivererCPU float64
	for _, s := range m.Scenarios {
		delete(want, s.Name)
		if s.Error != "" || s.Received != s.Deliveries || s.DeliveriesPerSec <= 0 || s.Latency.Count == 0 {
			t.Errorf("%s: error %q, received %d of %d, %.0f/s, %d latencies", s.Name, s.Error, s.Received, s.Deliveries, s.DeliveriesPerSec, s.Latency.Count)
		}
		if s.Path == "bare" {
			continue
		}
		cpu, ok := s.CPU[bench.ProcDeliverer]
		if !ok || cpu.Seconds < 0 {
			t.Errorf("%s: no deliverer CPU measured: %+v", s.Name, s.CPU)
		}
		delivererCPU += cpu.Seconds
	}
	if delivererCPU <= 0 {
		t.Errorf("the deliverer used no measurable CPU over the whole run")
	}
	for name := range want {
		t.Errorf("scenario %s missing", name)
	}
	for _, p := range []string{bench.ProcNATS, bench.ProcRedis, bench.ProcProducer, bench.ProcDeliverer} {
		if m.PeakRSS[p] <= 0 {
			t.Errorf("no peak RSS of %s", p)
		}
	}
	if len(rep.Files) < 2 {
		t.Errorf("files written: %v, want the JSON and the chart", rep.Files)
	}
	for _, f := range rep.Files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

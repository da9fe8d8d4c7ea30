package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// Sync settings of nats-server.
const (
	SyncAlways  = "always"
	SyncDefault = "default"
)

// Config sizes a run. Zero values take the defaults of Defaults.
type Config struct {
	// Events per 1×1 scenario (each of nats, api-batch, api-single).
	Events int `json:"events"`
	// FanoutEvents for 1×10 (deliveries are ten times as many).
	FanoutEvents int `json:"fanout_events"`
	// LatencyRate events/s for LatencyDuration, on each of LatencyPaths.
	LatencyRate     int           `json:"latency_rate"`
	LatencyDuration time.Duration `json:"latency_duration_ns"`
	// LatencyPaths: "nats" and/or "api".
	LatencyPaths []string `json:"latency_paths"`
	PayloadBytes int      `json:"payload_bytes"`
	// Concurrency is the deliverer's HOOKLINE_DELIVER_WORKERS, every
	// subscription's max_in_flight and the bare client's concurrency.
	Concurrency int `json:"concurrency"`
	// LimitRequests the bare client sends (default 5 × Events).
	LimitRequests        int `json:"limit_requests"`
	APIBatchSize         int `json:"api_batch_size"`
	APIBatchConcurrency  int `json:"api_batch_concurrency"`
	APISingleConcurrency int `json:"api_single_concurrency"`
	// Only, when set, runs just these scenarios (limit, nats, batch, single,
	// fanout, latency) — for quick A/B runs; the limit always runs when a
	// ratio is wanted.
	Only []string `json:"only,omitempty"`
	// Syncs are the nats-server settings to run under, in order.
	Syncs []string `json:"syncs"`
	// Profile captures CPU profiles for ProfileSeconds into ProfileDir: the
	// deliverer (pprof) under 1×1 nats, 1×1 api batch and 1×10; nats-server
	// (perf) under 1×1 nats; the producer (pprof when it serves it, else
	// perf) under 1×1 api batch and api single. Profiling perturbs the
	// numbers a little: compare tables of runs without it.
	Profile        bool   `json:"profile"`
	ProfileSeconds int    `json:"profile_seconds,omitempty"`
	ProfileDir     string `json:"-"`
	// LogDir keeps the processes' logs of a mode in which a scenario failed.
	LogDir string `json:"-"`
	// Idle is how long a scenario waits without any new delivery before it
	// gives up.
	Idle time.Duration `json:"idle_ns"`
	// Env adds to both services' environment.
	Env harness.Env `json:"env,omitempty"`
}

// Defaults: about five minutes for both sync settings on two busy cores
// (the latency scenario is 10 s rather than 30 s for that reason; raise it
// with -latency-duration=30s).
var Defaults = Config{
	Events:               10000,
	FanoutEvents:         1000,
	LatencyRate:          1000,
	LatencyDuration:      10 * time.Second,
	LatencyPaths:         []string{"nats"},
	PayloadBytes:         1024,
	Concurrency:          64,
	APIBatchSize:         100,
	APIBatchConcurrency:  4,
	APISingleConcurrency: 32,
	Syncs:                []string{SyncAlways, SyncDefault},
	ProfileSeconds:       10,
	Idle:                 30 * time.Second,
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	d := Defaults
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&c.Events, d.Events)
	set(&c.FanoutEvents, d.FanoutEvents)
	set(&c.LatencyRate, d.LatencyRate)
	set(&c.PayloadBytes, d.PayloadBytes)
	set(&c.Concurrency, d.Concurrency)
	// The bare client finishes -events requests in half a second, too
	// short for a stable rate on a shared machine: it sends five times as
	// many (a steadier, and if anything higher, limit).
	set(&c.LimitRequests, 5*c.Events)
	set(&c.APIBatchSize, d.APIBatchSize)
	set(&c.APIBatchConcurrency, d.APIBatchConcurrency)
	set(&c.APISingleConcurrency, d.APISingleConcurrency)
	set(&c.ProfileSeconds, d.ProfileSeconds)
	if c.LatencyDuration <= 0 {
		c.LatencyDuration = d.LatencyDuration
	}
	if c.LatencyPaths == nil {
		c.LatencyPaths = d.LatencyPaths
	}
	if len(c.Syncs) == 0 {
		c.Syncs = d.Syncs
	}
	if c.Idle <= 0 {
		c.Idle = d.Idle
	}
	return c
}

// runs reports whether the scenario called key is to run.
func (c Config) runs(key string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, k := range c.Only {
		if k == key {
			return true
		}
	}
	return false
}

// Event types of the scenarios; each has its own subscriptions.
const (
	typeNATS    = "tput.nats"
	typeBatch   = "tput.batch"
	typeSingle  = "tput.single"
	typeFanout  = "fan.ten"
	typeLatNATS = "lat.nats"
	typeLatAPI  = "lat.api"
	fanout      = 10
)

// env is a run's setting of both services on top of harness.DefaultEnv.
func (c Config) env() harness.Env {
	return harness.Env{
		"HOOKLINE_LOG_LEVEL":        "info",
		"HOOKLINE_DELIVER_WORKERS":  strconv.Itoa(c.Concurrency),
		"HOOKLINE_PPROF":            "true",
		"HOOKLINE_HTTP_TIMEOUT":     "5s",
		"HOOKLINE_ACK_WAIT":         "30s",
		"HOOKLINE_RETRY_SCHEDULE":   "0s,1s,5s",
		"HOOKLINE_SHUTDOWN_TIMEOUT": "10s",
	}.With(c.Env)
}

// rig is the running system of one mode.
type rig struct {
	tb       testing.TB
	cfg      Config
	nats     *harness.NATS
	stack    *harness.Stack
	js       jetstream.JetStream
	sink     *Sink
	api      *poster
	pids     map[string]int
	mode     string
	prefix   string
	captured []Profile
}

// RunMode starts nats-server with the given sync setting, redis-server, the
// producer, a deliverer and a sink, and runs every scenario. Failures of a
// scenario are recorded in its result, not fatal, so that one broken path
// still leaves the others' numbers; failing to start is fatal.
func RunMode(tb testing.TB, cfg Config, sync string) Mode {
	tb.Helper()
	cfg = cfg.WithDefaults()
	mode := Mode{Sync: sync, PeakRSS: map[string]int64{}}
	r := startRig(tb, cfg, sync)
	ctx := context.Background()

	if err := r.warmup(ctx); err != nil {
		mode.Error = "warm-up: " + err.Error()
		return mode
	}
	var limit Scenario
	if cfg.runs("limit") {
		limit = r.limit(ctx)
		mode.Scenarios = append(mode.Scenarios, limit)
	}
	for _, sc := range []struct {
		key string
		run func(context.Context) Scenario
	}{{"nats", r.oneNATS}, {"batch", r.oneBatch}, {"single", r.oneSingle}, {"fanout", r.fanOut}} {
		if !cfg.runs(sc.key) {
			continue
		}
		s := sc.run(ctx)
		if limit.DeliveriesPerSec > 0 {
			s.OfLimit = s.DeliveriesPerSec / limit.DeliveriesPerSec
		}
		mode.Scenarios = append(mode.Scenarios, s)
	}
	for _, path := range cfg.LatencyPaths {
		if !cfg.runs("latency") {
			break
		}
		mode.Scenarios = append(mode.Scenarios, r.latency(ctx, path))
	}
	for name, pid := range r.pids {
		if m, err := ReadMemory(pid); err == nil {
			mode.PeakRSS[name] = m.Peak
		}
	}
	mode.Profiles = r.summariseProfiles(ctx)
	if failed(mode) {
		mode.Logs = r.keepLogs()
	}
	return mode
}

func startRig(tb testing.TB, cfg Config, sync string) *rig {
	tb.Helper()
	r := &rig{tb: tb, cfg: cfg, mode: sync, prefix: sync[:1] + harness.NewIDPrefix()}
	r.nats = harness.StartNATSWith(tb, harness.NATSOptions{SyncAlways: sync == SyncAlways})
	r.stack = harness.NewStack(tb, harness.StackOptions{NATSURL: r.nats.URL(), Env: cfg.env()})
	nc, err := nats.Connect(r.nats.URL(), nats.Name("hookline-bench"))
	if err != nil {
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	r.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		tb.Fatal(err)
	}
	r.sink, err = NewSink()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.sink.Close)
	r.api = newPoster(r.stack.Producer.URL(), max(cfg.APIBatchConcurrency, cfg.APISingleConcurrency))
	tb.Cleanup(r.api.close)
	r.pids = map[string]int{
		ProcNATS:      r.nats.Pid(),
		ProcProducer:  r.stack.Producer.Pid(),
		ProcDeliverer: r.stack.Deliverers[0].Pid(),
		ProcBench:     os.Getpid(),
	}
	if pid, err := redisPid(r.stack.Redis.Addr); err == nil {
		r.pids[ProcRedis] = pid
	} else {
		tb.Logf("redis-server pid unknown (%v): its CPU is not reported", err)
	}
	r.subscribe(typeNATS, "one-nats")
	r.subscribe(typeBatch, "one-batch")
	r.subscribe(typeSingle, "one-single")
	for i := range fanout {
		r.subscribe(typeFanout, fmt.Sprintf("fan-%d", i))
	}
	r.subscribe(typeLatNATS, "lat-nats")
	r.subscribe(typeLatAPI, "lat-api")
	r.sink.Endpoint("limit")
	return r
}

// redisPid asks redis-server its process id (INFO server).
func redisPid(addr string) (int, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO server")
}

// subscribe creates a subscription of eventType to the sink endpoint name.
func (r *rig) subscribe(eventType, name string) {
	r.tb.Helper()
	ep := r.sink.Endpoint(name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sub harness.Subscription
	err := r.stack.API.Do(ctx, "POST", "/v1/subscriptions", map[string]any{
		"tenant": Tenant, "url": ep.URL, "event_types": []string{eventType},
		"max_in_flight": r.cfg.Concurrency,
	}, &sub)
	if err != nil {
		r.tb.Fatalf("create subscription %s: %v", name, err)
	}
}

// warmup sends one event of every type and waits until each endpoint got
// it: the deliverer knows every subscription. The counts are then reset.
func (r *rig) warmup(ctx context.Context) error {
	types := map[string][]string{
		typeNATS: {"one-nats"}, typeBatch: {"one-batch"}, typeSingle: {"one-single"},
		typeLatNATS: {"lat-nats"}, typeLatAPI: {"lat-api"},
	}
	for i := range fanout {
		types[typeFanout] = append(types[typeFanout], fmt.Sprintf("fan-%d", i))
	}
	for typ := range types {
		if err := publishNATS(ctx, r.js, typ, r.prefix+"_warm_"+strings.ReplaceAll(typ, ".", "_"), 1, r.cfg.PayloadBytes); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, eps := range types {
		for _, name := range eps {
			if _, err := r.sink.Endpoint(name).AwaitDistinct(wctx, 1, 60*time.Second); err != nil {
				return err
			}
		}
	}
	for _, eps := range types {
		for _, name := range eps {
			r.sink.Endpoint(name).Reset()
		}
	}
	return nil
}

// cpuSnapshot reads the CPU time of every process.
func (r *rig) cpuSnapshot() map[string]float64 {
	out := make(map[string]float64, len(r.pids))
	for name, pid := range r.pids {
		if v, err := CPUSeconds(pid); err == nil {
			out[name] = v
		}
	}
	return out
}

func cpuUse(before, after map[string]float64, deliveries int) map[string]CPUUse {
	out := map[string]CPUUse{}
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			continue
		}
		u := CPUUse{Seconds: a - b}
		if deliveries > 0 {
			u.Per1000 = u.Seconds / float64(deliveries) * 1000
		}
		out[name] = u
	}
	return out
}

// limit measures the bare client against the sink.
func (r *rig) limit(ctx context.Context) Scenario {
	s := Scenario{Name: "limit (bare client)", Path: "bare", Subscriptions: 1,
		Events: r.cfg.LimitRequests, Deliveries: r.cfg.LimitRequests}
	ep := r.sink.Endpoint("limit")
	before := r.cpuSnapshot()
	start := time.Now()
	err := bareClient(ctx, ep.URL, r.cfg.LimitRequests, r.cfg.PayloadBytes, r.cfg.Concurrency)
	elapsed := time.Since(start)
	s.CPU = cpuUse(before, r.cpuSnapshot(), r.cfg.LimitRequests)
	if err != nil {
		s.Error = err.Error()
	}
	st := ep.Stats()
	s.Received, s.Duplicates, s.MaxConcurrent = st.Distinct, st.Duplicates, st.MaxConcurrent
	s.Latency = Summarise(st.Latencies)
	s.Seconds, s.PublishSeconds = elapsed.Seconds(), elapsed.Seconds()
	s.DeliveriesPerSec = float64(st.Distinct) / elapsed.Seconds()
	s.PublishedPerSec = s.DeliveriesPerSec
	return s
}

// throughput publishes with pub and waits for events × len(endpoints)
// deliveries.
func (r *rig) throughput(ctx context.Context, name, path string, events int, endpoints []string,
	pub func(ctx context.Context) error, profile func(ctx context.Context) (stop func())) Scenario {
	s := Scenario{Name: name, Path: path, Subscriptions: len(endpoints), Events: events, Deliveries: events * len(endpoints)}
	eps := make([]*SinkEndpoint, len(endpoints))
	for i, n := range endpoints {
		eps[i] = r.sink.Endpoint(n)
	}
	var stopProfile func()
	if profile != nil {
		stopProfile = profile(ctx)
	}
	before := r.cpuSnapshot()
	start := time.Now()
	err := pub(ctx)
	published := time.Since(start)
	s.PublishSeconds = published.Seconds()
	s.PublishedPerSec = float64(events) / published.Seconds()
	if err == nil {
		for _, ep := range eps {
			if _, err = ep.AwaitDistinct(ctx, events, r.cfg.Idle); err != nil {
				break
			}
		}
	}
	after := r.cpuSnapshot()
	if stopProfile != nil {
		stopProfile()
	}
	if err != nil {
		s.Error = err.Error()
	}
	var last time.Time
	var lat []int64
	for _, ep := range eps {
		st := ep.Stats()
		s.Received += st.Distinct
		s.Duplicates += st.Duplicates
		s.MaxConcurrent += st.MaxConcurrent
		lat = append(lat, st.Latencies...)
		if st.Last.After(last) {
			last = st.Last
		}
	}
	s.CPU = cpuUse(before, after, s.Received)
	s.Latency = Summarise(lat)
	if !last.IsZero() {
		s.Seconds = last.Sub(start).Seconds()
		s.DeliveriesPerSec = float64(s.Received) / s.Seconds
	}
	return s
}

func (r *rig) oneNATS(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 nats", "nats", r.cfg.Events, []string{"one-nats"}, func(ctx context.Context) error {
		return publishNATS(ctx, r.js, typeNATS, r.prefix+"_nats", r.cfg.Events, r.cfg.PayloadBytes)
	}, profilers(r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "1x1-nats"),
		r.profiler(ProcNATS, "", "1x1-nats")))
}

func (r *rig) oneBatch(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 api batch", "api-batch", r.cfg.Events, []string{"one-batch"}, func(ctx context.Context) error {
		return publishAPIBatch(ctx, r.api, typeBatch, r.prefix+"_batch", r.cfg.Events, r.cfg.PayloadBytes,
			r.cfg.APIBatchSize, r.cfg.APIBatchConcurrency)
	}, profilers(r.profiler(ProcProducer, r.stack.Producer.URL(), "1x1-api-batch"),
		r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "1x1-api-batch")))
}

func (r *rig) oneSingle(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 api single", "api-single", r.cfg.Events, []string{"one-single"}, func(ctx context.Context) error {
		return publishAPISingle(ctx, r.api, typeSingle, r.prefix+"_single", r.cfg.Events, r.cfg.PayloadBytes,
			r.cfg.APISingleConcurrency)
	}, r.profiler(ProcProducer, r.stack.Producer.URL(), "1x1-api-single"))
}

func (r *rig) fanOut(ctx context.Context) Scenario {
	eps := make([]string, fanout)
	for i := range eps {
		eps[i] = fmt.Sprintf("fan-%d", i)
	}
	return r.throughput(ctx, "1×10 nats", "nats", r.cfg.FanoutEvents, eps, func(ctx context.Context) error {
		return publishNATS(ctx, r.js, typeFanout, r.prefix+"_fan", r.cfg.FanoutEvents, r.cfg.PayloadBytes)
	}, r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "1x10-nats"))
}

// latency publishes at a fixed rate through path (nats or api) and reads
// publish → receipt percentiles. The publish time is stamped when each
// event is due, so a publisher that falls behind shows up in the numbers.
func (r *rig) latency(ctx context.Context, path string) Scenario {
	rate, d := r.cfg.LatencyRate, r.cfg.LatencyDuration
	events := int(float64(rate) * d.Seconds())
	s := Scenario{Name: fmt.Sprintf("latency %d/s %s", rate, path), Path: path, Subscriptions: 1,
		Events: events, Deliveries: events, Rate: rate}
	prefix := r.prefix + "_lat_" + path
	var ep *SinkEndpoint
	var send func(i int) error
	var finish func() error
	switch path {
	case "nats":
		ep = r.sink.Endpoint("lat-nats")
		subject := stream.EventSubject(Tenant, typeLatNATS)
		send = func(i int) error {
			m := nats.NewMsg(subject)
			m.Header.Set(stream.HeaderMsgID, eventID(prefix, i))
			m.Data = Payload(make([]byte, 0, r.cfg.PayloadBytes+32), time.Now().UnixNano(), i, r.cfg.PayloadBytes)
			for {
				_, err := r.js.PublishMsgAsync(m)
				if err == nil || ctx.Err() != nil {
					return err
				}
				if err != jetstream.ErrTooManyStalledMsgs {
					return err
				}
			}
		}
		finish = func() error {
			select {
			case <-r.js.PublishAsyncComplete():
				return nil
			case <-time.After(time.Minute):
				return fmt.Errorf("publish acks outstanding after a minute")
			}
		}
	case "api":
		ep = r.sink.Endpoint("lat-api")
		jobs := make(chan []byte, rate)
		errc := make(chan error, 1)
		go func() {
			errc <- runWorkers(ctx, r.cfg.APISingleConcurrency, func(ctx context.Context) error {
				for body := range jobs {
					if err := r.api.post(ctx, "/v1/events", body); err != nil {
						return err
					}
				}
				return nil
			})
		}()
		send = func(i int) error {
			jobs <- appendEvent(make([]byte, 0, r.cfg.PayloadBytes+160), eventID(prefix, i), typeLatAPI, i, r.cfg.PayloadBytes)
			return nil
		}
		finish = func() error { close(jobs); return <-errc }
	default:
		s.Error = "unknown latency path " + path
		return s
	}
	before := r.cpuSnapshot()
	start := time.Now()
	sent, err := paced(ctx, rate, d, send)
	if ferr := finish(); err == nil {
		err = ferr
	}
	s.PublishSeconds = time.Since(start).Seconds()
	s.PublishedPerSec = float64(sent) / s.PublishSeconds
	if err == nil {
		_, err = ep.AwaitDistinct(ctx, sent, r.cfg.Idle)
	}
	s.CPU = cpuUse(before, r.cpuSnapshot(), sent)
	if err != nil {
		s.Error = err.Error()
	}
	st := ep.Stats()
	s.Received, s.Duplicates, s.MaxConcurrent = st.Distinct, st.Duplicates, st.MaxConcurrent
	s.Latency = Summarise(st.Latencies)
	if !st.Last.IsZero() {
		s.Seconds = st.Last.Sub(start).Seconds()
		s.DeliveriesPerSec = float64(st.Distinct) / s.Seconds
	}
	return s
}

// profiler returns a function that starts a CPU profile of a process for
// ProfileSeconds — from its /debug/pprof when base serves one, else with
// perf — and returns a stop that waits for it. Nil when profiling is off.
func (r *rig) profiler(proc, base, scenario string) func(ctx context.Context) func() {
	if !r.cfg.Profile {
		return nil
	}
	return func(ctx context.Context) func() {
		p := Profile{Name: fmt.Sprintf("%s-%s-%s", proc, scenario, r.mode)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if base != "" && HasPprof(ctx, base) {
				p.Kind, p.Path = "pprof", filepath.Join(r.cfg.ProfileDir, p.Name+".pprof")
				p.Err = CapturePprof(ctx, base, r.cfg.ProfileSeconds, p.Path)
				return
			}
			p.Kind, p.Path = "perf", filepath.Join(r.cfg.ProfileDir, p.Name+".perf.data")
			p.Err = CapturePerf(ctx, r.pids[proc], r.cfg.ProfileSeconds, p.Path)
		}()
		return func() {
			<-done
			r.captured = append(r.captured, p)
		}
	}
}

// profilers runs several profilers at once.
func profilers(ps ...func(ctx context.Context) func()) func(ctx context.Context) func() {
	var on []func(ctx context.Context) func()
	for _, p := range ps {
		if p != nil {
			on = append(on, p)
		}
	}
	if len(on) == 0 {
		return nil
	}
	return func(ctx context.Context) func() {
		stops := make([]func(), len(on))
		for i, p := range on {
			stops[i] = p(ctx)
		}
		return func() {
			for _, stop := range stops {
				stop()
			}
		}
	}
}

// summariseProfiles writes the top of every captured profile.
func (r *rig) summariseProfiles(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, p := range r.captured {
		top, err := p.Summarise(ctx)
		if err != nil {
			out[p.Name] = "failed: " + err.Error()
			continue
		}
		out[p.Name] = top
	}
	return out
}

func failed(m Mode) bool {
	for _, s := range m.Scenarios {
		if s.Error != "" {
			return true
		}
	}
	return m.Error != ""
}

// keepLogs copies the logs of nats-server and the services next to the
// results (they live in the test's temporary folder, which goes away).
func (r *rig) keepLogs() map[string]string {
	out := map[string]string{}
	procs := map[string]*harness.Process{ProcNATS: r.nats.Process, ProcProducer: r.stack.Producer.Process,
		ProcDeliverer: r.stack.Deliverers[0].Process}
	for name, p := range procs {
		b, err := os.ReadFile(p.LogPath)
		if err != nil {
			continue
		}
		path := filepath.Join(r.cfg.LogDir, r.mode+"-"+name+".log")
		if err := os.MkdirAll(r.cfg.LogDir, 0o755); err != nil {
			continue
		}
		if err := os.WriteFile(path, b, 0o644); err == nil {
			out[name] = path
		}
	}
	return out
}

// Run runs every sync setting of cfg, each through runMode (a sub-test or
// sub-benchmark, so that its processes stop before the next starts), then
// writes the JSON and the chart under out and returns the report.
func Run(tb testing.TB, cfg Config, out string, runMode func(name string, f func(tb testing.TB))) *Report {
	tb.Helper()
	cfg = cfg.WithDefaults()
	rep := &Report{Started: time.Now(), Machine: ReadMachine(), Config: cfg}
	cfg.ProfileDir = filepath.Join(out, "profiles-"+rep.Started.Format("20060102-150405"))
	cfg.LogDir = filepath.Join(out, "logs-"+rep.Started.Format("20060102-150405"))
	bins := harness.Build(tb)
	rep.Versions = ReadVersions(map[string]string{
		ProcNATS: bins.NATSServer, ProcProducer: bins.Producer, ProcDeliverer: bins.Deliverer,
	})
	for _, sync := range cfg.Syncs {
		if sync != SyncAlways && sync != SyncDefault {
			tb.Fatalf("sync setting %q: want %s or %s", sync, SyncAlways, SyncDefault)
		}
		var m Mode
		ran := false
		runMode(sync, func(tb testing.TB) { m = RunMode(tb, cfg, sync); ran = true })
		if !ran {
			m = Mode{Sync: sync, Error: "the run stopped before it finished (see the log above)"}
		}
		rep.Modes = append(rep.Modes, m)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Machine.LoadEnd = LoadAvg()
	if path, err := rep.WriteJSON(out); err != nil {
		tb.Errorf("write JSON: %v", err)
	} else {
		rep.Files = append(rep.Files, path)
	}
	if path, err := rep.WriteChart(out); err != nil {
		tb.Errorf("write chart: %v", err)
	} else {
		rep.Files = append(rep.Files, path)
	}
	return rep
}

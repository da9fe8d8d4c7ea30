package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
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

// Sync settings of nats-server: how the run's NATS is laid out and how it
// fsyncs.
const (
	// SyncAlways is one nats-server with sync_interval: always.
	SyncAlways = "always"
	// SyncDefault is one nats-server with its default sync (every 2 minutes).
	SyncDefault = "default"
	// SyncR3 is production's shape: a three-node cluster with
	// sync_interval: always and every stream at three replicas
	// (HOOKLINE_STREAM_REPLICAS=3). With replicas > 1 nats-server syncs
	// on flush rather than per message, so a single node's "always"
	// numbers (fsync-bound) say little about production.
	SyncR3 = "r3"
)

// AllSyncs are the settings a run accepts, in the order `make bench` runs
// them.
var AllSyncs = []string{SyncAlways, SyncDefault, SyncR3}

// CheckSync names the accepted settings when sync is none of them.
func CheckSync(sync string) error {
	for _, s := range AllSyncs {
		if sync == s {
			return nil
		}
	}
	return fmt.Errorf("unknown nats-server setting %q: want one of %s", sync, strings.Join(AllSyncs, ", "))
}

// clusterNodes is the size of the cluster of SyncR3 (and its replicas).
const clusterNodes = 3

// Config sizes a run. Zero values take the defaults of Defaults.
type Config struct {
	// Events per 1×1 scenario (each of nats, api-batch, api-single).
	Events int `json:"events"`
	// FanoutEvents for 1×10 (deliveries are ten times as many).
	FanoutEvents int `json:"fanout_events"`
	// LatencyRate events/s for LatencyDuration, on each of LatencyPaths.
	LatencyRate     int           `json:"latency_rate"`
	LatencyDuration time.Duration `json:"latency_duration_ns"`
	// LatencyPaths: "nats", "ingest" and/or "api".
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
	// Only, when set, runs just these scenarios (limit, nats, default, batch, single,
	// fanout, latency) — for quick A/B runs; the limit always runs when a
	// ratio is wanted.
	Only []string `json:"only,omitempty"`
	// Syncs are the nats-server settings to run under, in order.
	Syncs []string `json:"syncs"`
	// Profile captures CPU profiles for ProfileSeconds into ProfileDir: the
	// deliverer (pprof) under 1×1 nats, 1×1 api batch and 1×10; nats-server
	// (perf) under 1×1 nats; the producer (pprof when it serves it, else
	// perf) under 1×1 api batch and api single. Under r3 only node 1 of
	// the cluster is profiled (the profile's name says node1), and it need
	// not lead the streams. Profiling perturbs the numbers a little:
	// compare tables of runs without it.
	Profile        bool   `json:"profile"`
	ProfileSeconds int    `json:"profile_seconds,omitempty"`
	ProfileDir     string `json:"-"`
	// LogDir keeps the processes' logs of a mode in which a scenario failed.
	LogDir string `json:"-"`
	// Arrivals writes each paced scenario's latencies (the victims', the
	// latency scenario's), in the order they arrived, one per line in ms,
	// to <sync>-<scenario>.txt under ArrivalsDir: where in a run a tail
	// comes from (the start of a flood, a stall), which a percentile hides.
	Arrivals    bool   `json:"arrivals,omitempty"`
	ArrivalsDir string `json:"-"`
	// Idle is how long a scenario waits without any new delivery before it
	// gives up.
	Idle time.Duration `json:"idle_ns"`
	// Env adds to both services' environment.
	Env harness.Env `json:"env,omitempty"`
}

// Defaults: about eight minutes for the three sync settings on two busy
// cores (the latency scenario is 10 s rather than 30 s for that reason;
// raise it with -latency-duration=30s).
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
	Syncs:                []string{SyncAlways, SyncDefault, SyncR3},
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
	typeIngest  = "tput.ingest"
	typeDefault = "tput.default"
	typeTuned   = "tput.tuned"
	typeKeys    = "tput.ordered.keys"
	typeOneKey  = "tput.ordered.onekey"
	// endpointDelay is how long the endpoints of the default-subscription
	// scenarios take to answer: a fast real endpoint, slow enough that
	// the deliverer keeps more attempts in flight than the default cap.
	endpointDelay = time.Millisecond
	typeBatch     = "tput.batch"
	typeSingle    = "tput.single"
	typeFanout    = "fan.ten"
	typeLatNATS   = "lat.nats"
	typeLatIngest = "lat.ingest"
	typeLatAPI    = "lat.api"
	fanout        = 10
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
	tb  testing.TB
	cfg Config
	// nats are the nats-server nodes: one, or three under r3.
	nats  []*harness.NATS
	stack *harness.Stack
	js    jetstream.JetStream
	sink  *Sink
	api   *poster
	// pids of every process by name; nats-server has one per node, and
	// its CPU and peak RSS are the sums over them.
	pids map[string][]int
	// replicas of the EVENTS stream, as the services created it.
	replicas int
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
	mode := newMode(sync)
	r := startRig(tb, cfg, sync)
	mode.NATSNodes, mode.StreamReplicas = len(r.nats), r.replicas
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
	}{{"nats", r.oneNATS}, {"ingest", r.oneIngest}, {"default", r.oneDefault}, {"default", r.oneTuned}, {"ordered", r.orderedKeys}, {"ordered", r.orderedOneKey}, {"batch", r.oneBatch}, {"single", r.oneSingle}, {"fanout", r.fanOut}} {
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
	if cfg.runs("fair") {
		// Last: the flood it starts is still being served when it ends.
		mode.Scenarios = append(mode.Scenarios, r.fairness(ctx)...)
	}
	for name, pids := range r.pids {
		if v, ok := sumOver(pids, peakRSS); ok {
			mode.PeakRSS[name] = int64(v)
		}
	}
	mode.Profiles = r.summariseProfiles(ctx)
	if failed(mode) {
		mode.Logs = r.keepLogs()
	}
	return mode
}

// newMode is the empty result of a sync setting.
func newMode(sync string) Mode {
	nodes := 1
	if sync == SyncR3 {
		nodes = clusterNodes
	}
	return Mode{Sync: sync, Setting: SyncLabel(sync), NATSNodes: nodes, PeakRSS: map[string]int64{}}
}

// peakRSS reads VmHWM of pid, in bytes.
func peakRSS(pid int) (float64, error) {
	m, err := ReadMemory(pid)
	return float64(m.Peak), err
}

// sumOver adds read(pid) over pids; false when pids is empty or any read
// fails (a sum missing a node would pass for a smaller number).
func sumOver(pids []int, read func(pid int) (float64, error)) (float64, bool) {
	var sum float64
	for _, pid := range pids {
		v, err := read(pid)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, len(pids) > 0
}

func startRig(tb testing.TB, cfg Config, sync string) *rig {
	tb.Helper()
	if err := CheckSync(sync); err != nil {
		tb.Fatal(err)
	}
	r := &rig{tb: tb, cfg: cfg, mode: sync, prefix: sync[:1] + harness.NewIDPrefix()}
	env, wantReplicas := cfg.env(), 1
	var url string
	if sync == SyncR3 {
		c := harness.StartCluster(tb, clusterNodes)
		r.nats, url = c.Nodes, c.URL()
		wantReplicas = clusterNodes
		env = env.With(harness.Env{"HOOKLINE_STREAM_REPLICAS": strconv.Itoa(clusterNodes)})
	} else {
		n := harness.StartNATSWith(tb, harness.NATSOptions{SyncAlways: sync == SyncAlways})
		r.nats, url = []*harness.NATS{n}, n.URL()
	}
	r.stack = harness.NewStack(tb, harness.StackOptions{NATSURL: url, Env: env})
	r.replicas = r.streamReplicas(tb)
	if sync == SyncR3 && r.replicas != wantReplicas {
		tb.Fatalf("%s: the %s stream has %d replicas, want %d", sync, stream.Events, r.replicas, wantReplicas)
	}
	nc, err := nats.Connect(url, nats.Name("hookline-bench"))
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
	r.pids = map[string][]int{
		ProcProducer:  {r.stack.Producer.Pid()},
		ProcDeliverer: {r.stack.Deliverers[0].Pid()},
		ProcBench:     {os.Getpid()},
	}
	for _, n := range r.nats {
		r.pids[ProcNATS] = append(r.pids[ProcNATS], n.Pid())
	}
	if pid, err := redisPid(r.stack.Redis.Addr); err == nil {
		r.pids[ProcRedis] = []int{pid}
	} else {
		tb.Logf("redis-server pid unknown (%v): its CPU is not reported", err)
	}
	r.subscribe(typeNATS, "one-nats")
	r.subscribe(typeIngest, "one-ingest")
	r.subscribeDefault(typeDefault, "one-default")
	r.subscribe(typeTuned, "one-tuned")
	r.sink.Endpoint("one-default").SetBehavior(endpointDelay, 0)
	r.sink.Endpoint("one-tuned").SetBehavior(endpointDelay, 0)
	// Ordered, otherwise default: what a user who turns ordering on gets.
	r.createSubscription(typeKeys, "ordered-keys", map[string]any{"ordered": true})
	r.createSubscription(typeOneKey, "ordered-onekey", map[string]any{"ordered": true})
	r.sink.Endpoint("ordered-keys").SetBehavior(endpointDelay, 0)
	r.sink.Endpoint("ordered-onekey").SetBehavior(endpointDelay, 0)
	r.subscribe(typeBatch, "one-batch")
	r.subscribe(typeSingle, "one-single")
	for i := range fanout {
		r.subscribe(typeFanout, fmt.Sprintf("fan-%d", i))
	}
	r.subscribe(typeLatNATS, "lat-nats")
	r.subscribe(typeLatIngest, "lat-ingest")
	r.subscribe(typeLatAPI, "lat-api")
	// Fairness: two tenants, every subscription with defaults.
	r.createSubscriptionOf(fairVictim, typeFairQuiet, "fair-quiet", nil)
	for _, v := range fairTasks {
		r.createSubscriptionOf(fairVictim, v.eventType, v.endpoint, nil)
		r.sink.Endpoint(v.endpoint).SetBehavior(fairTasksDelay, 0)
	}
	for _, f := range fairFloods {
		r.createSubscriptionOf(fairVictim, f.victimType, f.victimEndpoint, nil)
		for i := range f.subs {
			r.createSubscriptionOf(f.tenant, f.eventType, f.endpoint(i), nil)
		}
	}
	r.sink.Endpoint("limit")
	return r
}

// streamReplicas reads how many replicas the services gave the EVENTS
// stream.
func (r *rig) streamReplicas(tb testing.TB) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.stack.JS.Stream(ctx, stream.Events)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream.Events, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatalf("stream %s info: %v", stream.Events, err)
	}
	return info.Config.Replicas
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

// subscribe creates a subscription of eventType to the sink endpoint name
// with max_in_flight = the run's concurrency; subscribeDefault with every
// setting at its default, as a new user creates it.
func (r *rig) subscribe(eventType, name string) {
	r.createSubscription(eventType, name, map[string]any{"max_in_flight": r.cfg.Concurrency})
}

func (r *rig) subscribeDefault(eventType, name string) { r.createSubscription(eventType, name, nil) }

func (r *rig) createSubscription(eventType, name string, settings map[string]any) {
	r.createSubscriptionOf(Tenant, eventType, name, settings)
}

func (r *rig) createSubscriptionOf(tenant, eventType, name string, settings map[string]any) {
	r.tb.Helper()
	ep := r.sink.Endpoint(name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := map[string]any{"tenant": tenant, "url": ep.URL, "event_types": []string{eventType}}
	for k, v := range settings {
		body[k] = v
	}
	var sub harness.Subscription
	if err := r.stack.API.Do(ctx, "POST", "/v1/subscriptions", body, &sub); err != nil {
		r.tb.Fatalf("create subscription %s: %v", name, err)
	}
}

// warmup sends one event of every type and waits until each endpoint got
// it: the deliverer knows every subscription. The counts are then reset.
func (r *rig) warmup(ctx context.Context) error {
	types := map[string][]string{
		typeNATS: {"one-nats"}, typeIngest: {"one-ingest"}, typeDefault: {"one-default"}, typeTuned: {"one-tuned"}, typeBatch: {"one-batch"}, typeSingle: {"one-single"},
		typeKeys: {"ordered-keys"}, typeOneKey: {"ordered-onekey"},
		typeLatNATS: {"lat-nats"}, typeLatIngest: {"lat-ingest"}, typeLatAPI: {"lat-api"},
	}
	for i := range fanout {
		types[typeFanout] = append(types[typeFanout], fmt.Sprintf("fan-%d", i))
	}
	for typ := range types {
		if err := publishNATS(ctx, r.js, typ, r.prefix+"_warm_"+strings.ReplaceAll(typ, ".", "_"), 1, r.cfg.PayloadBytes); err != nil {
			return err
		}
	}
	type warm struct{ tenant, eventType string }
	fair := map[warm][]string{{fairVictim, typeFairQuiet}: {"fair-quiet"}}
	for _, v := range fairTasks {
		fair[warm{fairVictim, v.eventType}] = []string{v.endpoint}
	}
	for _, f := range fairFloods {
		fair[warm{fairVictim, f.victimType}] = []string{f.victimEndpoint}
		for i := range f.subs {
			fair[warm{f.tenant, f.eventType}] = append(fair[warm{f.tenant, f.eventType}], f.endpoint(i))
		}
	}
	for w, eps := range fair {
		if err := publishNATSOf(ctx, r.js, w.tenant, w.eventType, r.prefix+"_warm_"+strings.ReplaceAll(w.eventType, ".", "_"), 1, r.cfg.PayloadBytes, nil); err != nil {
			return err
		}
		types[w.eventType] = eps
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

// cpuSnapshot reads the CPU time of every process (summed over the nodes
// of nats-server).
func (r *rig) cpuSnapshot() map[string]float64 {
	out := make(map[string]float64, len(r.pids))
	for name, pids := range r.pids {
		if v, ok := sumOver(pids, CPUSeconds); ok {
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
	stored := r.storedTasks(ctx)
	seqs := r.streamSeqs(ctx)
	direct := r.directAttempts(ctx)
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
	s.Stored = r.storedTasks(ctx) - stored
	s.StoredByStream = storedSince(r.settledSeqs(ctx), seqs)
	s.Direct = since(r.directAttempts(ctx), direct)
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

// oneIngest is 1×1 published with NATS to the producer's ingest subject,
// which stores the events in atomic batches (one fsync per batch under
// sync_interval: always).
func (r *rig) oneIngest(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 nats ingest", "nats", r.cfg.Events, []string{"one-ingest"}, func(ctx context.Context) error {
		return publishIngest(ctx, r.js, typeIngest, r.prefix+"_ingest", r.cfg.Events, r.cfg.PayloadBytes)
	}, profilers(r.profiler(ProcProducer, r.stack.Producer.URL(), "1x1-ingest")))
}

// oneDefault is a burst of 1×1 nats to a subscription created with
// defaults (its in-flight cap is the deliverer's default, not the worker
// count), whose endpoint answers in endpointDelay.
func (r *rig) oneDefault(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 nats default sub 1ms", "nats", r.cfg.Events, []string{"one-default"}, func(ctx context.Context) error {
		return publishNATS(ctx, r.js, typeDefault, r.prefix+"_default", r.cfg.Events, r.cfg.PayloadBytes)
	}, r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "1x1-default"))
}

// oneTuned is oneDefault's burst to a subscription whose max_in_flight is
// the worker count: what the default subscription is measured against.
func (r *rig) oneTuned(ctx context.Context) Scenario {
	return r.throughput(ctx, "1×1 nats tuned sub 1ms", "nats", r.cfg.Events, []string{"one-tuned"}, func(ctx context.Context) error {
		return publishNATS(ctx, r.js, typeTuned, r.prefix+"_tuned", r.cfg.Events, r.cfg.PayloadBytes)
	}, nil)
}

// orderedKeys is oneDefault's burst to an ordered subscription (otherwise
// default), its events spread over orderedKeyCount ordering keys: one
// attempt in flight per key, keys in parallel up to the cap.
func (r *rig) orderedKeys(ctx context.Context) Scenario {
	return r.throughput(ctx, fmt.Sprintf("1×1 nats ordered %d keys 1ms", orderedKeyCount), "nats", r.cfg.Events, []string{"ordered-keys"}, func(ctx context.Context) error {
		return publishNATSKeyed(ctx, r.js, typeKeys, r.prefix+"_keys", r.cfg.Events, r.cfg.PayloadBytes,
			func(i int) string { return "key-" + strconv.Itoa(i%orderedKeyCount) })
	}, r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "1x1-ordered-keys"))
}

// orderedOneKey is the same burst with one ordering key: strictly one
// attempt at a time, so its rate is 1 / (the endpoint's latency plus what
// Hookline spends between two events of a key).
func (r *rig) orderedOneKey(ctx context.Context) Scenario {
	n := max(r.cfg.Events/5, 1)
	return r.throughput(ctx, "1×1 nats ordered one key 1ms", "nats", n, []string{"ordered-onekey"}, func(ctx context.Context) error {
		return publishNATSKeyed(ctx, r.js, typeOneKey, r.prefix+"_onekey", n, r.cfg.PayloadBytes,
			func(int) string { return "the-key" })
	}, nil)
}

// orderedKeyCount is the number of keys of the many-keys ordered scenario.
const orderedKeyCount = 1000

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
	case "nats", "ingest":
		ep = r.sink.Endpoint("lat-nats")
		subject := stream.EventSubject(Tenant, typeLatNATS)
		if path == "ingest" {
			// The producer's NATS ingest (group commit), to the same
			// subscription.
			ep = r.sink.Endpoint("lat-ingest")
			subject = "ingest." + Tenant + "." + typeLatIngest
		}
		send = func(i int) error {
			m := nats.NewMsg(subject)
			m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(Tenant, eventID(prefix, i)))
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
	return r.pacedScenario(ctx, s, ep, rate, d, send, finish)
}

// pacedScenario publishes rate events/s for d with send (finish waits for
// the publishes), then waits for them at ep and fills s: publish rate,
// CPU, receipts, latency.
func (r *rig) pacedScenario(ctx context.Context, s Scenario, ep *SinkEndpoint, rate int, d time.Duration,
	send func(i int) error, finish func() error) Scenario {
	stored := r.storedTasks(ctx)
	seqs := r.streamSeqs(ctx)
	direct := r.directAttempts(ctx)
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
	s.Stored = r.storedTasks(ctx) - stored
	s.StoredByStream = storedSince(r.settledSeqs(ctx), seqs)
	s.Direct = since(r.directAttempts(ctx), direct)
	if err != nil {
		s.Error = err.Error()
	}
	st := ep.Stats()
	s.Received, s.Duplicates, s.MaxConcurrent = st.Distinct, st.Duplicates, st.MaxConcurrent
	s.Latency = Summarise(st.Latencies)
	r.writeArrivals(s.Name, st.Latencies)
	if !st.Last.IsZero() {
		s.Seconds = st.Last.Sub(start).Seconds()
		s.DeliveriesPerSec = float64(st.Distinct) / s.Seconds
	}
	return s
}

// writeArrivals writes a scenario's latencies in arrival order (Config.Arrivals).
func (r *rig) writeArrivals(scenario string, latencies []int64) {
	if !r.cfg.Arrivals {
		return
	}
	var b strings.Builder
	for _, l := range latencies {
		fmt.Fprintf(&b, "%.2f\n", float64(l)/1e6)
	}
	name := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			return c
		}
		return '_'
	}, r.mode+"-"+scenario)
	if err := os.MkdirAll(r.cfg.ArrivalsDir, 0o755); err == nil {
		err = os.WriteFile(filepath.Join(r.cfg.ArrivalsDir, name+".txt"), []byte(b.String()), 0o644)
		if err == nil {
			return
		}
	}
	r.tb.Logf("arrivals of %s not written", scenario)
}

// storedTasks is the number of messages DELIVERIES has stored so far (its
// last sequence): the difference over a scenario is what it stored.
func (r *rig) storedTasks(ctx context.Context) uint64 {
	st, err := r.js.Stream(ctx, stream.Deliveries)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// streamSeqs is the last sequence of every stream (KV buckets included),
// by name; nil when the streams cannot be listed.
func (r *rig) streamSeqs(ctx context.Context) map[string]uint64 {
	out := map[string]uint64{}
	l := r.js.ListStreams(ctx)
	for info := range l.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	if l.Err() != nil {
		return nil
	}
	return out
}

// settledSeqs is streamSeqs once no stream has stored anything for half a
// second (at most 15 s): what is written after a delivery without being
// waited for (its delivery state, its attempt record) is still counted
// even when it lags behind the deliveries.
func (r *rig) settledSeqs(ctx context.Context) map[string]uint64 {
	seqs := r.streamSeqs(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return seqs
		case <-time.After(500 * time.Millisecond):
		}
		next := r.streamSeqs(ctx)
		if maps.Equal(next, seqs) {
			return next
		}
		seqs = next
	}
	return seqs
}

// storedSince is what each stream stored between two streamSeqs (a stream
// created in between counts from 0); nil when either is unknown.
func storedSince(after, before map[string]uint64) map[string]uint64 {
	if after == nil || before == nil {
		return nil
	}
	out := make(map[string]uint64, len(after))
	for k, v := range after {
		if v >= before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

// directAttempts sums hookline_direct_attempts_total by result,
// hookline_admission_refused_total by reason (as "refused <reason>") and
// hookline_admission_deferred_total by reason (as "deferred for <reason>"),
// over the deliverers (nil when a deliverer's metrics cannot be read).
func (r *rig) directAttempts(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	for _, d := range r.stack.Deliverers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/metrics", nil)
		if err != nil {
			return nil
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil
		}
		// Admission's refusals (of tasks and first attempts alike) say
		// what the deliveries that did not go straight through met.
		prefixes := map[string]string{
			`hookline_direct_attempts_total{result="`:   "",
			`hookline_admission_refused_total{reason="`: "refused ",
			// A deferral (line_full, ordered, ...) is one more stored
			// message for its delivery: what the stored/deliv column
			// counts beyond one task.
			`hookline_admission_deferred_total{reason="`: "deferred for ",
		}
		for _, line := range strings.Split(string(body), "\n") {
			for prefix, label := range prefixes {
				rest, ok := strings.CutPrefix(line, prefix)
				if !ok {
					continue
				}
				result, value, ok := strings.Cut(rest, `"} `)
				if !ok {
					continue
				}
				if v, err := strconv.ParseFloat(value, 64); err == nil {
					out[label+result] += v
				}
			}
		}
	}
	return out
}

// since is after - before, per key, without the zeros.
func since(after, before map[string]float64) map[string]float64 {
	if after == nil || before == nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// profiler returns a function that starts a CPU profile of a process for
// ProfileSeconds — from its /debug/pprof when base serves one, else with
// perf — and returns a stop that waits for it. Nil when profiling is off.
func (r *rig) profiler(proc, base, scenario string) func(ctx context.Context) func() {
	if !r.cfg.Profile {
		return nil
	}
	who, pid := proc, 0
	if pids := r.pids[proc]; len(pids) > 0 {
		pid = pids[0]
		if len(pids) > 1 {
			// A cluster: profile node 1 only, and say so.
			who = proc + "-node1"
		}
	}
	return func(ctx context.Context) func() {
		p := Profile{Name: fmt.Sprintf("%s-%s-%s", who, scenario, r.mode)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if base != "" && HasPprof(ctx, base) {
				p.Kind, p.Path = "pprof", filepath.Join(r.cfg.ProfileDir, p.Name+".pprof")
				go func() {
					time.Sleep(time.Duration(r.cfg.ProfileSeconds) * time.Second / 2)
					captureGoroutines(ctx, base, filepath.Join(r.cfg.ProfileDir, p.Name+".goroutines.txt"))
				}()
				p.Err = CapturePprof(ctx, base, r.cfg.ProfileSeconds, p.Path)
				return
			}
			p.Kind, p.Path = "perf", filepath.Join(r.cfg.ProfileDir, p.Name+".perf.data")
			if pid == 0 {
				p.Err = fmt.Errorf("no pid of %s", proc)
				return
			}
			p.Err = CapturePerf(ctx, pid, r.cfg.ProfileSeconds, p.Path)
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

// keepLogs copies the logs of nats-server (every node of a cluster, as
// nats-server-n1, -n2, …) and the services next to the results (they live
// in the test's temporary folder, which goes away).
func (r *rig) keepLogs() map[string]string {
	out := map[string]string{}
	procs := map[string]*harness.Process{ProcProducer: r.stack.Producer.Process,
		ProcDeliverer: r.stack.Deliverers[0].Process}
	for _, n := range r.nats {
		name := ProcNATS
		if len(r.nats) > 1 {
			name += "-" + n.Name
		}
		procs[name] = n.Process
	}
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
	// Check every setting before building, and before the first runs for
	// minutes.
	for _, sync := range cfg.Syncs {
		if err := CheckSync(sync); err != nil {
			tb.Fatalf("-syncs: %v", err)
		}
	}
	rep := &Report{Started: time.Now(), Machine: ReadMachine(), Config: cfg}
	cfg.ProfileDir = filepath.Join(out, "profiles-"+rep.Started.Format("20060102-150405"))
	cfg.LogDir = filepath.Join(out, "logs-"+rep.Started.Format("20060102-150405"))
	cfg.ArrivalsDir = filepath.Join(out, "arrivals-"+rep.Started.Format("20060102-150405"))
	bins := harness.Build(tb)
	rep.Versions = ReadVersions(map[string]string{
		ProcNATS: bins.NATSServer, ProcProducer: bins.Producer, ProcDeliverer: bins.Deliverer,
	})
	for _, sync := range cfg.Syncs {
		var m Mode
		ran := false
		runMode(sync, func(tb testing.TB) { m = RunMode(tb, cfg, sync); ran = true })
		if !ran {
			m = newMode(sync)
			m.Error = "the run stopped before it finished (see the log above)"
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

package health_test

// The world of the end-to-end tests and the benchmark: a real embedded NATS
// with the whole topology, a real redis-server, real HTTP endpoints, and
// whole deliverers (service.Service, in process) wired with endpoint health.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/deliver/delivertest"
	"github.com/hookline/hookline/services/deliverer/internal/service"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const tenant = "acme"

type world struct {
	ns    *natstest.Server
	redis *redistest.Server
	js    jetstream.JetStream
	store *subscription.Store
	cache *subscription.Cache
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	ns := natstest.Start(tb)
	_, js := ns.Connect(tb)
	if err := stream.Ensure(context.Background(), js, stream.Config{AckWait: 10 * time.Second, MemoryStorage: true}); err != nil {
		tb.Fatal(err)
	}
	store, err := subscription.NewStore(context.Background(), js)
	if err != nil {
		tb.Fatal(err)
	}
	rs := redistest.Start(tb)
	return &world{ns: ns, redis: rs, js: js, store: store, cache: subscription.NewCache(rs.Client(tb), store)}
}

// baseEnv is a deliverer configured for tests: loopback endpoints allowed,
// a short HTTP timeout and a short retry schedule.
func (w *world) baseEnv() map[string]string {
	return map[string]string{
		"HOOKLINE_NATS_URL":            w.ns.ClientURL(),
		"HOOKLINE_REDIS_URL":           "redis://" + w.redis.Addr + "/0",
		"HOOKLINE_HTTP_ADDR":           "127.0.0.1:0",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8",
		"HOOKLINE_HTTP_TIMEOUT":        "1s",
		"HOOKLINE_ACK_WAIT":            "10s",
		"HOOKLINE_RETRY_SCHEDULE":      "0s,1s",
		"HOOKLINE_RETRY_JITTER":        "0",
		"HOOKLINE_DELIVER_WORKERS":     "16",
		"HOOKLINE_SHUTDOWN_TIMEOUT":    "10s", // at least the HTTP timeout (up to 5s here) + 5s
		"HOOKLINE_LOG_LEVEL":           "error",
	}
}

// deliverer is one running deliverer replica.
type deliverer struct {
	svc *service.Service
	reg *prometheus.Registry
}

// startDeliverer runs a deliverer with baseEnv overridden by overrides
// until the test ends, wired as in production (endpoint health included).
func (w *world) startDeliverer(tb testing.TB, overrides map[string]string) *deliverer {
	tb.Helper()
	return w.startDelivererWith(tb, overrides, false)
}

// startDelivererWith can leave endpoint health out (every attempt
// admitted), for the benchmark's comparison.
func (w *world) startDelivererWith(tb testing.TB, overrides map[string]string, withoutHealth bool) *deliverer {
	tb.Helper()
	m := w.baseEnv()
	maps.Copy(m, overrides)
	cfg, err := config.Load(m)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(w.ns.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	rdb, err := redisconn.Open(cfg.Redis)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	log := zap.NewNop()
	if os.Getenv("HOOKLINE_TEST_LOG") != "" { // debugging: the deliverer's logs in the test output
		log = zaptest.NewLogger(tb, zaptest.Level(zap.InfoLevel))
	}
	var adm deliver.Admission // nil: the service builds endpoint health from cfg.Health
	if withoutHealth {
		adm = delivertest.AdmitAll{}
	}
	svc, err := service.New(ctx, cfg, service.Deps{NATS: nc, Redis: rdb, Log: log, Version: "test", Registry: reg, Admission: adm})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("deliverer run: %v", err)
		}
	})
	return &deliverer{svc: svc, reg: reg}
}

// counter sums a counter's series whose labels include labels.
func (d *deliverer) counter(tb testing.TB, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := d.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

var idSeq atomic.Int64

// subscribe creates a subscription of tenant acme to order.* events (or
// the given types) at url.
func (w *world) subscribe(tb testing.TB, url string, mutate func(*hooklinev1.Subscription)) *hooklinev1.Subscription {
	tb.Helper()
	now := time.Now()
	sub := &hooklinev1.Subscription{
		Id:         fmt.Sprintf("sub_%s%d", ulid.Make().String(), idSeq.Add(1)),
		Tenant:     tenant,
		Url:        url,
		EventTypes: []string{"order.*"},
		CreatedAt:  timestamppb.New(now),
		UpdatedAt:  timestamppb.New(now),
		Keys:       []*hooklinev1.SigningKey{{Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", CreatedAt: timestamppb.New(now)}},
	}
	if mutate != nil {
		mutate(sub)
	}
	rev, err := w.store.Create(context.Background(), sub)
	if err != nil {
		tb.Fatal(err)
	}
	// Write through to the cache, as the producer does: visible at once.
	if err := w.cache.Apply(context.Background(), rev, tenant, sub.GetId(), sub); err != nil {
		tb.Fatal(err)
	}
	return sub
}

// publish publishes n events of type to EVENTS, waits for their acks and
// returns their ids.
func (w *world) publish(tb testing.TB, eventType string, n int) []string {
	tb.Helper()
	ids, futures := w.publishAsync(tb, eventType, n)
	waitAcks(tb, futures)
	return ids
}

// publishAsync publishes n events of type without waiting for their acks.
// The body carries the publish time (sent_ns) for latency measurements.
func (w *world) publishAsync(tb testing.TB, eventType string, n int) ([]string, []jetstream.PubAckFuture) {
	tb.Helper()
	ids := make([]string, 0, n)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for range n {
		id := "evt_" + ulid.Make().String()
		body, _ := json.Marshal(map[string]any{"sent_ns": time.Now().UnixNano()})
		m := nats.NewMsg(stream.EventSubject(tenant, eventType))
		m.Data = body
		f, err := w.js.PublishMsgAsync(m, jetstream.WithMsgID(id))
		if err != nil {
			tb.Fatal(err)
		}
		futures = append(futures, f)
		ids = append(ids, id)
	}
	return ids, futures
}

func waitAcks(tb testing.TB, futures []jetstream.PubAckFuture) {
	tb.Helper()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatal(err)
		case <-time.After(30 * time.Second):
			tb.Fatal("publish not acknowledged")
		}
	}
}

// records reads every message of a stream on subject, through a consumer
// it deletes afterwards.
func (w *world) records(tb testing.TB, streamName, subject string) []jetstream.Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := w.js.CreateConsumer(ctx, streamName, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = w.js.DeleteConsumer(context.WithoutCancel(ctx), streamName, c.CachedInfo().Name) }()
	want := int(c.CachedInfo().NumPending)
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := c.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			tb.Fatalf("read %d of %d messages of %s", len(out), want, subject)
		}
	}
	return out
}

// attempts are the attempt records of a subscription, in order.
func (w *world) attempts(tb testing.TB, sub *hooklinev1.Subscription) []*hooklinev1.Attempt {
	tb.Helper()
	var out []*hooklinev1.Attempt
	for _, m := range w.records(tb, stream.Attempts, stream.AttemptSubject(tenant, sub.GetId())) {
		for _, line := range stream.AttemptRecords(m.Data()) {
			a := &hooklinev1.Attempt{}
			if err := protojson.Unmarshal(line, a); err != nil {
				tb.Fatal(err)
			}
			out = append(out, a)
		}
	}
	return out
}

// deadLetters are the DEADLETTER messages of a subscription.
func (w *world) deadLetters(tb testing.TB, sub *hooklinev1.Subscription) []jetstream.Msg {
	tb.Helper()
	return w.records(tb, stream.DeadLetter, stream.DeadLetterSubject(tenant, sub.GetId()))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronising
	}
}

// receiver is an HTTP endpoint that records what it receives and answers
// with respond (200 when nil).
type receiver struct {
	*httptest.Server
	respond func(w http.ResponseWriter, r *http.Request, n int64)
	stop    chan struct{}

	requests    atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64

	mu       sync.Mutex
	byID     map[string]int
	log      []request
	latency  []time.Duration // publish → receipt of 2xx answers
	received time.Time       // last 2xx receipt
}

type request struct {
	id       string
	n        int64
	start    time.Time
	end      time.Time
	inFlight int64
}

func newReceiver(tb testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int64)) *receiver {
	tb.Helper()
	rc := &receiver{respond: respond, stop: make(chan struct{}), byID: map[string]int{}}
	rc.Server = httptest.NewServer(rc)
	tb.Cleanup(func() {
		close(rc.stop)
		rc.Close()
	})
	return rc
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cur := rc.inFlight.Add(1)
	defer rc.inFlight.Add(-1)
	for m := rc.maxInFlight.Load(); cur > m && !rc.maxInFlight.CompareAndSwap(m, cur); m = rc.maxInFlight.Load() {
	}
	n := rc.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	rw := &statusWriter{ResponseWriter: w, status: 200}
	if rc.respond != nil {
		rc.respond(rw, r, n)
	}
	end := time.Now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	id := r.Header.Get("webhook-id")
	rc.log = append(rc.log, request{id: id, n: n, start: start, end: end, inFlight: cur})
	if rw.status >= 200 && rw.status < 300 && !rw.hijacked {
		rc.byID[id]++
		rc.received = end
		var ev struct {
			SentNS int64 `json:"sent_ns"`
		}
		if json.Unmarshal(body, &ev) == nil && ev.SentNS > 0 {
			rc.latency = append(rc.latency, end.Sub(time.Unix(0, ev.SentNS)))
		}
	}
}

// delivered counts distinct event ids answered with 2xx.
func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.byID)
}

// duplicates counts 2xx deliveries beyond the first of an id.
func (rc *receiver) duplicates() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := 0
	for _, n := range rc.byID {
		d += n - 1
	}
	return d
}

func (rc *receiver) requestLog() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.log...)
}

// hang blocks until the client gives up (its timeout) or the test ends.
func (rc *receiver) hang(_ http.ResponseWriter, r *http.Request, _ int64) {
	select {
	case <-r.Context().Done():
	case <-rc.stop:
	}
}

type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// reset answers by resetting the connection (RST, not FIN).
func reset(w http.ResponseWriter, _ *http.Request, _ int64) {
	sw := w.(*statusWriter)
	sw.hijacked = true
	conn, _, err := http.NewResponseController(sw.ResponseWriter).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, _ *http.Request, _ int64) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

// closedURL is a loopback URL nothing listens on.
func closedURL(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/hook"
}

// header reads a header of a JetStream message.
func header(m jetstream.Msg, key string) string { return m.Headers().Get(key) }

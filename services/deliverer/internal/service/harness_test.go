package service_test

import (
	"context"
	"fmt"
	"github.com/hookline/hookline/pkg/natsconn"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/service"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const tenant = "acme"

// env is a running deliverer on a real embedded nats-server and a real
// redis-server, with a Store and a Cache of its own to manage
// subscriptions the way the producer does.
type env struct {
	nats  *natstest.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	redis *redistest.Server
	rdb   *redis.Client
	store *subscription.Store
	cache *subscription.Cache
	svc   *service.Service
	logs  *observer.ObservedLogs
	seq   atomic.Int64
	// stop stops the service and drains its connection, as main does.
	stop func() error
}

// start runs the service until the test ends. overrides change the test
// defaults (a "0s,1s,1s" schedule without jitter, loopback allowed).
func start(t *testing.T, overrides map[string]string) *env {
	t.Helper()
	return startWith(t, overrides)
}

// startWith is start on a nats-server changed by natsOpts.
func startWith(t *testing.T, overrides map[string]string, natsOpts ...natstest.Option) *env {
	t.Helper()
	return startTraced(t, overrides, nil, natsOpts...)
}

// startTraced is startWith with tracing tr (nil: off, the default).
func startTraced(t *testing.T, overrides map[string]string, tr *tracing.Tracing, natsOpts ...natstest.Option) *env {
	t.Helper()
	m := map[string]string{
		"HOOKLINE_HTTP_ADDR":           "127.0.0.1:0",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8",
		"HOOKLINE_RETRY_SCHEDULE":      "0s,1s,1s",
		"HOOKLINE_RETRY_JITTER":        "0",
		"HOOKLINE_DISPATCH_WORKERS":    "4",
		"HOOKLINE_DELIVER_WORKERS":     "16",
		"HOOKLINE_HTTP_TIMEOUT":        "5s",
		"HOOKLINE_ACK_WAIT":            "10s",
		"HOOKLINE_SHUTDOWN_TIMEOUT":    "10s",
	}
	for k, v := range overrides {
		m[k] = v
	}
	cfg, err := config.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{nats: natstest.Start(t, natsOpts...), redis: redistest.Start(t)}
	e.nc, e.js = e.nats.Connect(t)
	e.rdb = e.redis.Client(t)
	ctx := context.Background()
	sc := cfg.Stream()
	sc.MemoryStorage = true
	if err := stream.Ensure(ctx, e.js, sc); err != nil {
		t.Fatal(err)
	}
	if e.store, err = subscription.NewStore(ctx, e.js); err != nil {
		t.Fatal(err)
	}
	e.cache = subscription.NewCache(e.rdb, e.store)

	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	// The service gets connections of its own, drained at the end as in
	// production.
	nc, err := nats.Connect(e.nats.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	e.svc, err = service.New(ctx, cfg, service.Deps{NATS: nc, Redis: rdb, Log: zap.New(core), Version: "test", Tracing: tr})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(runCtx) }()
	var (
		once    sync.Once
		stopErr error
	)
	e.stop = func() error {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				stopErr = fmt.Errorf("service Run: %w", err)
			} else if err := natsconn.Drain(nc, 5*time.Second); err != nil {
				stopErr = err
			}
			_ = rdb.Close()
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// subscribe creates a subscription the way the producer does (KV, then
// the cache write-through) and returns it with its secret.
func (e *env) subscribe(t *testing.T, url string, types ...string) (*hooklinev1.Subscription, string) {
	t.Helper()
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := timestamppb.Now()
	sub := &hooklinev1.Subscription{
		Id: fmt.Sprintf("sub_%d", e.seq.Add(1)), Tenant: tenant, Url: url, EventTypes: types,
		Keys:      []*hooklinev1.SigningKey{{Secret: secret, CreatedAt: now}},
		CreatedAt: now, UpdatedAt: now,
	}
	ctx := context.Background()
	rev, err := e.store.Create(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, tenant, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	e.seen(t, rev)
	return sub, secret
}

// seen waits until the deliverer's subscription memo has seen KV revision
// rev: an event published after that is looked up with the change. (The
// memo learns of changes from a KV watch, milliseconds after the API call
// returns; a test that publishes at once would race it.)
func (e *env) seen(t *testing.T, rev uint64) {
	t.Helper()
	eventually(t, await, fmt.Sprintf("the deliverer to see subscription revision %d", rev), func() bool {
		return e.svc.SubscriptionsCurrent(rev)
	})
}

// update changes a subscription in KV and the cache.
func (e *env) update(t *testing.T, id string, fn func(*hooklinev1.Subscription)) {
	t.Helper()
	ctx := context.Background()
	sub, rev, err := e.store.Update(ctx, id, func(s *hooklinev1.Subscription) error { fn(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, sub.GetTenant(), id, sub); err != nil {
		t.Fatal(err)
	}
	e.seen(t, rev)
}

// remove deletes a subscription in KV and the cache.
func (e *env) remove(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	tn, rev, err := e.store.Delete(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, tn, id, nil); err != nil {
		t.Fatal(err)
	}
	e.seen(t, rev)
}

// publish publishes an event the way the producer does.
func (e *env) publish(t *testing.T, eventType, id, body string) {
	t.Helper()
	e.publishAs(t, tenant, eventType, id, body)
}

// publishAs is publish for another tenant.
func (e *env) publishAs(t *testing.T, tenant, eventType, id, body string) {
	t.Helper()
	m := nats.NewMsg(stream.EventSubject(tenant, eventType))
	m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, id))
	m.Header.Set(stream.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano))
	m.Data = []byte(body)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// publishRaw publishes a message as a platform service with `nats pub` would.
func (e *env) publishRaw(t *testing.T, subject string, h nats.Header, body string) {
	t.Helper()
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

// attemptRecord is one record of an ATTEMPTS message.
type attemptRecord struct {
	msg  *jetstream.RawStreamMsg
	data []byte
	of   int // records in msg
}

// attemptRecords reads every record stored in ATTEMPTS, in order.
func (e *env) attemptRecords(t *testing.T) []attemptRecord {
	t.Helper()
	var out []attemptRecord
	for _, m := range natstest.Messages(t, e.js, stream.Attempts) {
		lines := stream.AttemptRecords(m.Data)
		for _, l := range lines {
			out = append(out, attemptRecord{msg: m, data: l, of: len(lines)})
		}
	}
	return out
}

func (e *env) streamMsgs(t *testing.T, name, filter string) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := s.Info(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if filter == "" {
		return info.State.Msgs
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// idle reports that nothing is left to do: every event dispatched, no task
// or scheduled retry in DELIVERIES, nothing in flight.
func (e *env) idle(t *testing.T) bool {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct{ stream, consumer string }{
		{stream.Events, stream.DispatchConsumer},
		{stream.Deliveries, stream.DeliverConsumer},
	} {
		cons, err := e.js.Consumer(ctx, c.stream, c.consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return false
		}
	}
	return e.streamMsgs(t, stream.Deliveries, "") == 0
}

// deadLetters reads every message of DEADLETTER.
func (e *env) deadLetters(t *testing.T) []jetstream.RawStreamMsg {
	t.Helper()
	var out []jetstream.RawStreamMsg
	for _, m := range natstest.Messages(t, e.js, stream.DeadLetter) {
		out = append(out, *m)
	}
	return out
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint on loopback; respond picks the status of
// the n-th request (1-based).
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []received
	respond func(n int) int
}

func newReceiver(t *testing.T, respond func(n int) int) *receiver {
	t.Helper()
	r := &receiver{respond: respond}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, received{header: req.Header.Clone(), body: b})
		n := len(r.reqs)
		r.mu.Unlock()
		w.WriteHeader(r.respond(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func always(status int) func(int) int { return func(int) int { return status } }

func (r *receiver) URL() string { return r.srv.URL + "/hook?token=s3cret-query" }

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// ids is the webhook-id of every request, in order.
func (r *receiver) ids() []string {
	var out []string
	for _, q := range r.requests() {
		out = append(out, q.header.Get("webhook-id"))
	}
	return out
}

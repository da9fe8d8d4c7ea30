package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/ingest"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/hookline/hookline/services/producer/internal/publish"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts a real nats-server with Hookline's streams, the producer's
// publisher with its batch group commit (the default) and the ingest on
// it; it returns a JetStream client of a platform service, EVENTS, and
// the ingest's answers counted so far, by answer.
func serve(t *testing.T) (jetstream.JetStream, jetstream.Stream, func(answer string) float64) {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	pub, err := publish.New(nc, publish.Config{Timeout: 5 * time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	pub.WithBatchGroupCommit()
	rctx, cancel := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { pub.Run(rctx); close(pubDone) }()
	in := ingest.New(nc, pub, zap.NewNop(), 5*time.Second)
	in.Answers = m.IngestAnswers
	inDone := make(chan error, 1)
	go func() { inDone <- in.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-inDone; err != nil {
			t.Error(err)
		}
		<-pubDone
	})
	client, cjs := ns.Connect(t)
	// The ingest's subscription is in place once a publish is answered.
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	awaitAnswer(t, cjs)
	warm := map[string]float64{} // the warm-up's answers (it may have been published more than once)
	for _, a := range metrics.IngestAnswerValues {
		warm[a] = testutil.ToFloat64(m.IngestAnswers.WithLabelValues(a))
	}
	return cjs, s, func(answer string) float64 {
		return testutil.ToFloat64(m.IngestAnswers.WithLabelValues(answer)) - warm[answer]
	}
}

// awaitAnswer publishes to the ingest until it answers (its subscription
// is made by Run, concurrently): a warm-up event of its own tenant.
func awaitAnswer(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := nats.NewMsg("ingest.warmup.ping")
		m.Header.Set(stream.HeaderMsgID, "warm")
		m.Data = []byte(`{}`)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingest never answered: %v", err)
		}
	}
}

// stored is how many messages EVENTS holds.
func stored(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func msg(subject, id, data string) *nats.Msg {
	m := nats.NewMsg(subject)
	if id != "" {
		m.Header.Set(stream.HeaderMsgID, id)
	}
	m.Data = []byte(data)
	return m
}

// An event published with js.Publish to ingest.<tenant>.<type> is stored
// in EVENTS as the API would store it (events.<tenant>.<type>, its id
// scoped to its tenant) and acknowledged as JetStream would; publishing it
// again with the same id, bare or scoped, is acknowledged as a duplicate
// and stores nothing.
func TestIngestStoresAndAcknowledges(t *testing.T) {
	t.Parallel()
	js, s, answers := serve(t)
	ctx := context.Background()
	ack, err := js.PublishMsg(ctx, msg("ingest.acme.order.created", "evt_1", `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != stream.Events || ack.Sequence == 0 || ack.Duplicate {
		t.Fatalf("ack %+v; want EVENTS, a sequence, not a duplicate", ack)
	}
	stored, err := s.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Subject != "events.acme.order.created" || stored.Header.Get(stream.HeaderMsgID) != stream.EventMsgID("acme", "evt_1") ||
		string(stored.Data) != `{"n":1}` || stored.Header.Get(stream.HeaderOccurredAt) == "" {
		t.Fatalf("stored %s %v %q", stored.Subject, stored.Header, stored.Data)
	}
	for _, id := range []string{"evt_1", "acme:evt_1"} {
		again, err := js.PublishMsg(ctx, msg("ingest.acme.order.created", id, `{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if !again.Duplicate {
			t.Fatalf("republished as %q: %+v; want a duplicate", id, again)
		}
	}
	// Expecting EVENTS is what the ingest does anyway.
	if _, err := js.PublishMsg(ctx, msg("ingest.acme.order.created", "evt_2", `{}`), jetstream.WithExpectStream(stream.Events)); err != nil {
		t.Fatalf("expecting EVENTS: %v", err)
	}
	// Another tenant's event of the same id is its own.
	other, err := js.PublishMsg(ctx, msg("ingest.globex.order.created", "evt_1", `{}`))
	if err != nil || other.Duplicate {
		t.Fatalf("another tenant's evt_1: %+v, %v; want stored", other, err)
	}
	// Without an id, one is made up.
	gen, err := js.PublishMsg(ctx, msg("ingest.acme.order.created", "", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.GetMsg(ctx, gen.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if id := g.Header.Get(stream.HeaderMsgID); !strings.HasPrefix(id, "acme:evt_") {
		t.Fatalf("made-up id %q; want acme:evt_<ULID>", id)
	}
	// evt_1, evt_2, globex's evt_1 and the made-up one; evt_1 twice again.
	if st, dup := answers(metrics.IngestStored), answers(metrics.IngestDuplicate); st != 4 || dup != 2 {
		t.Fatalf("answers counted: %g stored, %g duplicate; want 4 and 2", st, dup)
	}
}

// Many publishers at once (PublishAsync, as a busy platform publishes):
// every event is acknowledged and stored once.
func TestIngestStoresConcurrentPublishesOnce(t *testing.T) {
	t.Parallel()
	js, s, _ := serve(t)
	before := stored(t, s)
	const n = 2000
	futures := make([]jetstream.PubAckFuture, n)
	for i := range n {
		f, err := js.PublishMsgAsync(msg("ingest.acme.order.created", fmt.Sprintf("evt_c%d", i), `{}`))
		if err != nil {
			t.Fatal(err)
		}
		futures[i] = f
	}
	seqs := map[uint64]bool{}
	for i, f := range futures {
		select {
		case a := <-f.Ok():
			if a.Duplicate || seqs[a.Sequence] {
				t.Fatalf("event %d: %+v (sequence seen before: %v)", i, a, seqs[a.Sequence])
			}
			seqs[a.Sequence] = true
		case err := <-f.Err():
			t.Fatalf("event %d: %v", i, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d not acknowledged", i)
		}
	}
	after := stored(t, s)
	if got := after - before; got != n {
		t.Fatalf("EVENTS stored %d; want %d", got, n)
	}
}

// What the API would refuse is refused with a 400 that says why, and
// nothing is stored.
func TestIngestRefusesBadInput(t *testing.T) {
	t.Parallel()
	js, s, answers := serve(t)
	ctx := context.Background()
	before := stored(t, s)
	long := strings.Repeat("x", 300)
	bad := func(m *nats.Msg, h map[string]string) *nats.Msg {
		for k, v := range h {
			m.Header.Set(k, v)
		}
		return m
	}
	batch := bad(msg("ingest.acme.order.created", "e7", `{}`), map[string]string{"Nats-Batch-Id": "b1", "Nats-Batch-Sequence": "1"})
	cases := []struct {
		name string
		m    *nats.Msg
		want string
		opts []jetstream.PublishOpt
	}{
		{"reserved type", msg("ingest.acme.hookline.subscription.disabled", "e1", `{}`), "Hookline's own", nil},
		{"no type", msg("ingest.acme", "e2", `{}`), "is not ingest.<tenant>.<type>", nil},
		{"no data", msg("ingest.acme.order.created", "e3", ``), "data is required", nil},
		{"bad id", msg("ingest.acme.order.created", long, `{}`), stream.HeaderMsgID, nil},
		{"bad ordering key", bad(msg("ingest.acme.order.created", "e4", `{}`), map[string]string{stream.HeaderOrderingKey: long}), stream.HeaderOrderingKey, nil},
		{"bad occurred-at", bad(msg("ingest.acme.order.created", "e5", `{}`), map[string]string{stream.HeaderOccurredAt: "yesterday"}), "RFC 3339", nil},
		{"oversized", msg("ingest.acme.order.created", "e6", strings.Repeat("a", 1<<20-2048)), "at most", nil}, // under max_payload, over what EVENTS takes
		// Data the API would refuse: acknowledged, it would be dead-lettered as invalid_payload.
		{"not JSON", msg("ingest.acme.order.created", "j1", "not json"), "JSON", nil},
		{"null", msg("ingest.acme.order.created", "j2", "null"), "JSON", nil},
		{"truncated JSON", msg("ingest.acme.order.created", "j3", `{"a":`), "JSON", nil},
		{"not UTF-8", msg("ingest.acme.order.created", "j4", "\xff\xfe"), "JSON", nil},
		// A scope without an id names no event (a made-up id would store each retry again).
		{"scope without an id", msg("ingest.acme.order.created", "acme:", `{}`), stream.HeaderMsgID, nil},
		// JetStream expectations the ingest cannot check: an ack would say they held.
		{"expected last sequence", msg("ingest.acme.order.created", "x1", `{}`), "not supported", []jetstream.PublishOpt{jetstream.WithExpectLastSequence(1)}},
		{"expected last subject sequence", msg("ingest.acme.order.created", "x2", `{}`), "not supported", []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(7)}},
		{"another stream expected", msg("ingest.acme.order.created", "x3", `{}`), "not supported", []jetstream.PublishOpt{jetstream.WithExpectStream("ORDERS")}},
		{"a TTL", msg("ingest.acme.order.created", "x4", `{}`), "not supported", []jetstream.PublishOpt{jetstream.WithMsgTTL(time.Minute)}},
		{"an atomic batch's message", batch, "not supported", nil},
	}
	for _, c := range cases {
		_, err := js.PublishMsg(ctx, c.m, c.opts...)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != 400 || !strings.Contains(apiErr.Description, c.want) {
			t.Errorf("%s: %v; want a 400 saying %q", c.name, err, c.want)
		}
	}
	after := stored(t, s)
	if after != before {
		t.Fatalf("EVENTS stored %d refused events", after-before)
	}
	if n := answers(metrics.IngestRefused); n != float64(len(cases)) {
		t.Fatalf("refusals counted: %g; want %d", n, len(cases))
	}
}

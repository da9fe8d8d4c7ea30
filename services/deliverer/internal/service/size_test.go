package service_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// jsonBody is a JSON event body of exactly n bytes.
func jsonBody(n int) []byte {
	return []byte(`{"x":"` + strings.Repeat("a", n-8) + `"}`)
}

// An event must fit in a task and a dead letter, which add Hookline's
// headers to its body. EVENTS refuses a larger one at publish time (the
// publisher gets the error; nothing accepted is lost), and one stored
// before that cap existed is dropped, logged and counted once instead of
// being redone forever.
func TestOversizedEvents(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	e := startWith(t, nil, func(o *server.Options) { o.MaxPayload = maxPayload })
	rcv := newReceiver(t, always(200))
	e.subscribe(t, rcv.URL(), "order.*")
	ctx := context.Background()

	s, err := e.js.Stream(ctx, stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	limit := stream.EventsLimit(maxPayload)
	if got := s.CachedInfo().Config.MaxMsgSize; got != limit {
		t.Fatalf("EVENTS max_msg_size = %d, want %d (max_payload less the envelope headroom)", got, limit)
	}

	// Just under the cap: stored, fanned out and delivered whole.
	under := jsonBody(int(limit) - 512)
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: stream.EventSubject(tenant, "order.created"), Data: under,
		Header: nats.Header{stream.HeaderMsgID: {"evt_under"}}}); err != nil {
		t.Fatalf("an event under the cap: %v", err)
	}
	eventually(t, await, "the event under the cap delivered", func() bool { return rcv.count() == 1 })

	// Over the cap: refused with JetStream's error.
	_, err = e.js.PublishMsg(ctx, &nats.Msg{Subject: stream.EventSubject(tenant, "order.created"), Data: jsonBody(int(limit) + 1)})
	if !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		t.Fatalf("an event over the cap: %v, want %v", err, jetstream.ErrStreamMessageExceedsMaximum)
	}

	// Stored without the cap (an older deployment): dropped and counted.
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = -1
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: stream.EventSubject(tenant, "order.created"), Data: jsonBody(maxPayload - 200),
		Header: nats.Header{stream.HeaderMsgID: {"evt_huge"}}}); err != nil {
		t.Fatalf("storing an event without the cap: %v", err)
	}
	tooLarge := e.svc.Metrics.EventsInvalid.WithLabelValues("too_large")
	eventually(t, await, "the stored oversized event counted", func() bool { return testutil.ToFloat64(tooLarge) == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if n := testutil.ToFloat64(tooLarge); n != 1 {
		t.Fatalf("too_large counted %v times, want once (not redone)", n)
	}
	if rcv.count() != 1 {
		t.Fatalf("receiver got %d requests, want 1", rcv.count())
	}
	if got := e.logs.FilterMessageSnippet("event too large").FilterField(zap.String("event_id", "evt_huge")).Len(); got != 1 {
		t.Fatalf("%d error lines for evt_huge, want 1", got)
	}
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// verify checks a received webhook with the Standard Webhooks reference
// library, as a receiver would.
func verify(t *testing.T, secret string, h *harness.Hits) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(h.Body, h.Header); err != nil {
		t.Fatalf("signature does not verify with the reference library: %v (headers %v)", err, h.Header)
	}
}

func TestPublishOverHTTPDeliversSignedWebhook(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	ep, sub := s.Subscribe("acme", "orders", []string{"order.created"}, harness.OK)

	data := `{"order_id":1,"items":[{"sku":"A-1","qty":2}],"note":"ünïcode ✓"}`
	id := s.Publish("acme", "order.created", "", data)
	h := ep.AwaitDelivered(t, id, 30*time.Second)

	verify(t, sub.Secret, h)
	if got := h.Header.Get("webhook-id"); got != id {
		t.Errorf("webhook-id = %q; want the event id %q", got, id)
	}
	// A new subscription gets the envelope, data byte for byte inside.
	env, err := harness.ParseEnvelope(h.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Data) != data || env.ID != id || env.Type != "order.created" || env.Timestamp == "" {
		t.Errorf("envelope %s; want id %s, type order.created and the event data byte for byte: %s", h.Body, id, data)
	}
	if ct := h.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if ua := h.Header.Get("User-Agent"); !strings.Contains(ua, "Hookline") {
		t.Errorf("User-Agent = %q; want it to name Hookline", ua)
	}
	for _, k := range []string{"webhook-signature", "webhook-timestamp"} {
		if h.Header.Get(k) == "" {
			t.Errorf("no %s header", k)
		}
	}
	r := s.Checker.Await(t, 30*time.Second, time.Second)
	r.Verify(t, 0)
	if r.Delivered != 1 || r.Requests != 1 {
		t.Fatalf("want exactly one request: %s", r)
	}
}

func TestPublishOverNATSIsDelivered(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	ep, sub := s.Subscribe("acme", "orders", []string{"order.*"}, harness.OK, map[string]any{"payload_format": "raw"})
	ctx := context.Background()

	// With Nats-Msg-Id: the id is the event id, and a second publish of the
	// same id is stored (and delivered) once.
	withID := "evt_" + harness.NewIDPrefix() + "_nats"
	for range 2 {
		if _, err := harness.PublishNATS(ctx, s.JS, s.Checker, "acme", "order.created", withID, []byte(`{"order_id":2}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Without any header, as `nats pub events.acme.order.created '{…}'`:
	// the id derives from the stream sequence.
	noID, err := harness.PublishNATS(ctx, s.JS, s.Checker, "acme", "order.created", "", []byte(`{"order_id":3}`))
	if err != nil {
		t.Fatal(err)
	}
	// A plain core-NATS publish (no JetStream ack at all) is stored too.
	if err := s.NC.Publish(stream.EventSubject("acme", "order.updated"), []byte(`{"order_id":4}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.NC.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ id, body string }{{withID, `{"order_id":2}`}, {noID, `{"order_id":3}`}} {
		h := ep.AwaitDelivered(t, c.id, 30*time.Second)
		verify(t, sub.Secret, h)
		if string(h.Body) != c.body {
			t.Errorf("%s: body %s; want %s", c.id, h.Body, c.body)
		}
	}
	if !strings.HasPrefix(noID, "evt_seq_") {
		t.Errorf("id of a header-less event = %q; want evt_seq_<sequence>_<stored time>", noID)
	}
	// The core-NATS event has an id we learn from the receiver.
	harness.Eventually(t, 30*time.Second, func() error {
		if n := len(ep.EventIDs()); n < 3 {
			return errNotYet
		}
		return nil
	})
	for _, id := range ep.EventIDs() {
		if id != withID && id != noID {
			s.Checker.Accept(id, "acme", "order.updated")
		}
	}
	r := s.Checker.Await(t, 30*time.Second, time.Second)
	r.Verify(t, 0)
	if r.Accepted != 3 || r.Delivered != 3 {
		t.Fatalf("want three events delivered once each: %s", r)
	}
}

// An endpoint that answers 500 then 200 receives the event exactly once
// more, with the same webhook-id.
func TestFailThenSucceedIsDeliveredOnceMore(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	ep, sub := s.Subscribe("acme", "flaky", []string{"order.created"}, harness.FailFirst(1))
	id := s.Publish("acme", "order.created", "", `{"order_id":5}`)
	r := s.Checker.Await(t, 30*time.Second, 1500*time.Millisecond)
	r.Verify(t, 0)
	h := ep.Hits(id)
	if h.Attempts != 2 || h.Delivered != 1 {
		t.Fatalf("attempts %d (statuses %v), delivered %d; want 2 attempts, 1 delivered", h.Attempts, h.Statuses, h.Delivered)
	}
	verify(t, sub.Secret, h)
	if r.DeadLettered != 0 {
		t.Fatalf("dead-lettered a delivered event: %s", r)
	}
}

// Over NATS the dedup id is <tenant>:<event id>: two tenants publishing the
// same event id both deliver it, each receiver sees the bare id as
// webhook-id, and a bare Nats-Msg-Id (a publisher from before the scoped
// contract) is still read as the event id. (The checker keys events by id
// alone, so this test counts at the endpoints.)
func TestSameEventIDFromTwoTenantsOverNATS(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	acme, _ := s.Subscribe("acme", "acme", []string{"order.created"}, harness.OK)
	globex, _ := s.Subscribe("globex", "globex", []string{"order.created"}, harness.OK)
	ctx := context.Background()
	publish := func(tenant, msgID string) {
		m := nats.NewMsg(stream.EventSubject(tenant, "order.created"))
		m.Header.Set(stream.HeaderMsgID, msgID)
		m.Data = []byte(`{}`)
		ack, err := s.JS.PublishMsg(ctx, m)
		if err != nil || ack.Duplicate {
			t.Fatalf("publish %s for %s: %+v %v; want stored", msgID, tenant, ack, err)
		}
	}
	id := "ord_" + harness.NewIDPrefix() + "_created"
	publish("acme", stream.EventMsgID("acme", id))
	publish("globex", stream.EventMsgID("globex", id))
	legacy := "ord_" + harness.NewIDPrefix() + "_legacy"
	publish("acme", legacy)

	acme.AwaitDelivered(t, id, 30*time.Second)
	globex.AwaitDelivered(t, id, 30*time.Second)
	acme.AwaitDelivered(t, legacy, 30*time.Second)
	if a, g := acme.Stats().Attempts, globex.Stats().Attempts; a != 2 || g != 1 {
		t.Fatalf("acme got %d requests and globex %d; want 2 and 1", a, g)
	}
	if n := s.Deliverers[0].Metric(t, "hookline_events_unscoped_id_total"); n != 1 {
		t.Fatalf("hookline_events_unscoped_id_total = %g; want 1 (the legacy publish)", n)
	}
}

// oddData is event data with odd whitespace, a number beyond float64 and
// an escape: decoding and re-encoding it would change its bytes.
const oddData = "{ \"b\" :1,\n\t\"big\":  123456789012345678901234567890.100000000000000000001 , \"s\":\"\\u00e9\\n\" ,\"a\":[ ] }"

// Both payload formats verify with the Standard Webhooks reference
// library; the raw body is the published data and the envelope's data is
// the same bytes; every request carries the informative headers, and a
// subscription's custom headers.
func TestPayloadFormatsVerifyWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	envEp, envSub := s.Subscribe("acme", "envelope", []string{"order.*"}, harness.OK,
		map[string]any{"headers": map[string]string{"Authorization": "Bearer r3ceiver_t0ken", "X-Region": "eu"}})
	rawEp, rawSub := s.Subscribe("acme", "raw", []string{"order.*"}, harness.OK, map[string]any{"payload_format": "raw"})

	// Over NATS: the bytes published are the bytes stored (an HTTP client
	// built on encoding/json would compact them before they left).
	id, err := harness.PublishNATS(context.Background(), s.JS, s.Checker, "acme", "order.paid", "evt_"+harness.NewIDPrefix()+"_odd", []byte(oddData))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ep     *harness.Endpoint
		sub    harness.Subscription
		format string
	}{{envEp, envSub, "envelope"}, {rawEp, rawSub, "raw"}} {
		h := c.ep.AwaitDelivered(t, id, 30*time.Second)
		verify(t, c.sub.Secret, h)
		data := h.Body
		if c.format == "envelope" {
			env, err := harness.ParseEnvelope(h.Body)
			if err != nil {
				t.Fatal(err)
			}
			if env.ID != id || env.Type != "order.paid" {
				t.Errorf("envelope id %q type %q", env.ID, env.Type)
			}
			if _, err := time.Parse(time.RFC3339Nano, env.Timestamp); err != nil {
				t.Errorf("envelope timestamp %q: %v", env.Timestamp, err)
			}
			if env.Timestamp != h.Header.Get("Hookline-Occurred-At") {
				t.Errorf("timestamp %q, Hookline-Occurred-At %q", env.Timestamp, h.Header.Get("Hookline-Occurred-At"))
			}
			data = env.Data
			if h.Header.Get("Authorization") != "Bearer r3ceiver_t0ken" || h.Header.Get("X-Region") != "eu" {
				t.Errorf("custom headers: %v", h.Header)
			}
		} else if h.Header.Get("Authorization") != "" {
			t.Errorf("raw subscription got another's custom header")
		}
		if string(data) != oddData {
			t.Errorf("%s: data %q; want the published bytes %q", c.format, data, oddData)
		}
		for k, v := range map[string]string{
			"Hookline-Event-Type": "order.paid", "Hookline-Attempt": "1", "Hookline-Subscription-Id": c.sub.ID,
		} {
			if h.Header.Get(k) != v {
				t.Errorf("%s: %s = %q; want %q", c.format, k, h.Header.Get(k), v)
			}
		}
	}
	r := s.Checker.Await(t, 30*time.Second, time.Second)
	r.Verify(t, 0)
}

// A platform service publishing with js.Publish to the producer's NATS
// ingest, ingest.<tenant>.<type>, gets a JetStream acknowledgement once
// the event is stored (through the producer's group commit), the same
// event id again is a duplicate, and the event is delivered once.
func TestPublishThroughTheNATSIngestIsDelivered(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	ep, sub := s.Subscribe("acme", "orders", []string{"order.*"}, harness.OK, map[string]any{"payload_format": "raw"})
	ctx := context.Background()
	id := "evt_" + harness.NewIDPrefix() + "_ingest"
	m := nats.NewMsg("ingest.acme.order.created")
	m.Header.Set(stream.HeaderMsgID, id)
	m.Data = []byte(`{"order_id":5}`)
	s.Checker.Attempt(id, "acme", "order.created")
	var ack *jetstream.PubAck
	harness.Eventually(t, 30*time.Second, func() error {
		// No answer until the producer serves the ingest: publish again,
		// as a platform service would (the id deduplicates).
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		ack, err = s.JS.PublishMsg(rctx, m)
		return err
	})
	s.Checker.Accept(id, "acme", "order.created")
	if ack.Stream != stream.Events || ack.Sequence == 0 {
		t.Fatalf("ack %+v; want EVENTS and its sequence", ack)
	}
	again, err := s.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate {
		t.Fatalf("the same id again: %+v; want a duplicate", again)
	}
	h := ep.AwaitDelivered(t, id, 30*time.Second)
	verify(t, sub.Secret, h)
	if string(h.Body) != `{"order_id":5}` {
		t.Errorf("body %s", h.Body)
	}
	r := s.Checker.Await(t, 30*time.Second, time.Second)
	r.Verify(t, 0)
	if r.Delivered != 1 || r.Requests != 1 {
		t.Fatalf("want exactly one request: %s", r)
	}
}

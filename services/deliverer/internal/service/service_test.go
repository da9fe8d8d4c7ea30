package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	webhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const await = 20 * time.Second

func TestDeliveredSignedWithHeaders(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, always(200))
	_, secret := e.subscribe(t, rcv.URL(), "order.*")
	body := `{"order_id":1,"total":"9.99"}`
	e.publish(t, "order.created", "evt_signed", body)
	eventually(t, await, "delivery", func() bool { return rcv.count() == 1 })

	got := rcv.requests()[0]
	wh, err := webhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.header); err != nil {
		t.Fatalf("signature does not verify with the Standard Webhooks library: %v", err)
	}
	if string(got.body) != body {
		t.Errorf("body %q, want it untouched: %q", got.body, body)
	}
	for k, want := range map[string]string{
		"webhook-id":   "evt_signed",
		"Content-Type": "application/json",
		"User-Agent":   "Hookline/test",
	} {
		if v := got.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if ts, err := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64); err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
		t.Errorf("webhook-timestamp %q", got.header.Get("webhook-timestamp"))
	}
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if n := testutil.ToFloat64(e.svc.Metrics.Attempts.WithLabelValues("success")); n != 1 {
		t.Errorf("hookline_attempts_total{outcome=success} = %v", n)
	}

	// One attempt line with the stable keys, and never the URL or secret.
	eventually(t, await, "attempt record", func() bool { return len(e.attemptRecords(t)) == 1 })
	lines := e.logs.FilterMessage("attempt").All()
	if len(lines) != 1 {
		t.Fatalf("%d attempt log lines, want 1", len(lines))
	}
	if lines[0].Level != zapcore.DebugLevel {
		t.Errorf("a successful attempt is logged at %s, want debug (failures at info)", lines[0].Level)
	}
	fields := lines[0].ContextMap()
	for _, k := range []string{"event_id", "event_type", "subscription_id", "attempt", "status", "duration_s", "outcome"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("attempt log line lacks %s: %v", k, fields)
		}
	}
	for _, entry := range e.logs.All() {
		line := fmt.Sprint(entry.Message, entry.ContextMap())
		for _, leak := range []string{"s3cret-query", secret, got.header.Get("webhook-signature")} {
			if strings.Contains(line, leak) {
				t.Fatalf("log line leaks %q: %s", leak, line)
			}
		}
	}
}

func TestAttemptRecordFormat(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, func(n int) int { return map[bool]int{true: 500, false: 200}[n == 1] })
	sub, _ := e.subscribe(t, rcv.URL(), "order.created")
	e.publish(t, "order.created", "evt_record", `{}`)
	eventually(t, await, "two attempt records", func() bool { return len(e.attemptRecords(t)) == 2 })
	var recs []*hooklinev1.Attempt
	for _, r := range e.attemptRecords(t) {
		m := r.msg
		if m.Subject != stream.AttemptSubject(tenant, sub.GetId()) {
			t.Fatalf("record on %s", m.Subject)
		}
		// The event id header is there when the message holds one record.
		if id := m.Header.Get(stream.HeaderEventID); (r.of == 1) != (id == "evt_record") || (r.of > 1 && id != "") {
			t.Fatalf("message of %d records has %s %q", r.of, stream.HeaderEventID, id)
		}
		var raw map[string]any
		if err := json.Unmarshal(r.data, &raw); err != nil {
			t.Fatal(err)
		}
		if _, ok := raw["subscription_id"]; !ok {
			t.Fatalf("record is not snake_case proto JSON: %s", r.data)
		}
		a := &hooklinev1.Attempt{}
		if err := protojson.Unmarshal(r.data, a); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, a)
	}
	slices.SortFunc(recs, func(a, b *hooklinev1.Attempt) int { return int(a.GetAttempt()) - int(b.GetAttempt()) })
	first, second := recs[0], recs[1]
	if first.GetAttempt() != 1 || first.GetStatus() != 500 || first.GetOutcome() != "retry" || first.GetErrorClass() != "http_status" ||
		first.GetError() == "" || first.GetStartedAt() == nil || first.GetEventType() != "order.created" || first.GetTenant() != tenant {
		t.Errorf("first record %v", first)
	}
	if second.GetAttempt() != 2 || second.GetStatus() != 200 || second.GetOutcome() != "success" || second.GetErrorClass() != "" {
		t.Errorf("second record %v", second)
	}
}

func TestFailThenSucceedDeliversOnceMore(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, func(n int) int { return map[bool]int{true: 500, false: 200}[n == 1] })
	e.subscribe(t, rcv.URL(), "order.created")
	e.publish(t, "order.created", "evt_retry", `{"x":1}`)
	eventually(t, await, "the retry", func() bool { return rcv.count() >= 2 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if ids := rcv.ids(); len(ids) != 2 || ids[0] != "evt_retry" || ids[1] != "evt_retry" {
		t.Fatalf("requests %v, want exactly two with webhook-id evt_retry", ids)
	}
	if n := len(e.deadLetters(t)); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

func TestAlwaysFailingEndsInOneCompleteDeadLetter(t *testing.T) {
	t.Parallel()
	e := start(t, nil) // schedule 0s,1s,1s: three attempts
	rcv := newReceiver(t, always(500))
	sub, _ := e.subscribe(t, rcv.URL(), "order.created")
	e.publish(t, "order.created", "evt_dead", `{"x":1}`)
	eventually(t, await, "a dead letter", func() bool { return len(e.deadLetters(t)) >= 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	if n := rcv.count(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	dls := e.deadLetters(t)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.Subject != stream.DeadLetterSubject(tenant, sub.GetId()) || string(dl.Data) != `{"x":1}` {
		t.Errorf("dead letter on %s with body %q", dl.Subject, dl.Data)
	}
	h := dl.Header
	want := map[string]string{
		stream.HeaderReason:          wire.DeadLetterAttemptsExhausted,
		stream.HeaderLastStatus:      "500",
		stream.HeaderAttempt:         "3",
		stream.HeaderOriginalSubject: stream.DeliverySubject(tenant, sub.GetId()),
		stream.HeaderEventID:         "evt_dead",
		stream.HeaderTenant:          tenant,
		stream.HeaderEventType:       "order.created",
		stream.HeaderSubscriptionID:  sub.GetId(),
		stream.HeaderMsgID:           stream.DeadLetterMsgID("evt_dead", sub.GetId(), ""),
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(h.Get(stream.HeaderLastError), "500") {
		t.Errorf("%s = %q", stream.HeaderLastError, h.Get(stream.HeaderLastError))
	}
	times := map[string]time.Time{}
	for _, k := range []string{stream.HeaderFirstAttemptAt, stream.HeaderLastAttemptAt, stream.HeaderDeadLetteredAt, stream.HeaderOccurredAt} {
		ts, err := time.Parse(time.RFC3339Nano, h.Get(k))
		if err != nil {
			t.Errorf("%s = %q: %v", k, h.Get(k), err)
		}
		times[k] = ts
	}
	if !times[stream.HeaderFirstAttemptAt].Before(times[stream.HeaderLastAttemptAt]) ||
		times[stream.HeaderDeadLetteredAt].Before(times[stream.HeaderLastAttemptAt]) {
		t.Errorf("attempt times out of order: %v", times)
	}
	for k := range h {
		if strings.HasPrefix(k, "Nats-Sched") {
			t.Errorf("scheduler header %s leaked into the dead letter", k)
		}
	}
	if n := e.streamMsgs(t, stream.Deliveries, ""); n != 0 {
		t.Errorf("DELIVERIES holds %d messages, want 0", n)
	}
	if n := testutil.ToFloat64(e.svc.Metrics.DeadLetters.WithLabelValues(wire.DeadLetterAttemptsExhausted)); n != 1 {
		t.Errorf("hookline_dead_letters_total{reason=attempts_exhausted} = %v", n)
	}
}

func TestOneFailingSubscriptionDoesNotDuplicateTheOthers(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	healthy1 := newReceiver(t, always(200))
	healthy2 := newReceiver(t, always(204))
	failing := newReceiver(t, always(503))
	e.subscribe(t, healthy1.URL(), "order.created")
	e.subscribe(t, healthy2.URL(), "order.>")
	e.subscribe(t, failing.URL(), "*.created")
	e.publish(t, "order.created", "evt_fanout", `{}`)
	eventually(t, await, "the failing endpoint's dead letter", func() bool { return len(e.deadLetters(t)) == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if healthy1.count() != 1 || healthy2.count() != 1 || failing.count() != 3 {
		t.Fatalf("healthy got %d and %d, failing %d; want 1, 1, 3", healthy1.count(), healthy2.count(), failing.count())
	}
}

// The scenario of docs/architecture.md: with a small MaxAckPending, deliveries waiting
// on a dead endpoint's (long) retries must not delay a healthy endpoint.
// With NakWithDelay the waiting tasks would hold every ack-pending slot and
// the healthy task would wait for an hour.
func TestDeadEndpointDoesNotStarveHealthyOne(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		"HOOKLINE_MAX_ACK_PENDING": "5",
		"HOOKLINE_RETRY_SCHEDULE":  "0s,1h,1h",
		// Every dead task's first attempt must be made: no circuit breaker.
		"HOOKLINE_BREAKER_FAILURES":             "1000",
		"HOOKLINE_DESTINATION_BREAKER_FAILURES": "0",
	})
	dead := newReceiver(t, always(503))
	healthy := newReceiver(t, always(200))
	deadSub, _ := e.subscribe(t, dead.URL(), "dead.event")
	e.subscribe(t, healthy.URL(), "healthy.event")
	const waiting = 25
	for i := range waiting {
		e.publish(t, "dead.event", fmt.Sprintf("evt_dead_%d", i), `{}`)
	}
	eventually(t, await, "every dead task's first attempt", func() bool { return dead.count() == waiting })
	retries := func() uint64 { return e.streamMsgs(t, stream.Deliveries, stream.RetryPrefix+"."+deadSub.GetId()+".*") }
	eventually(t, await, "the dead endpoint's retries scheduled", func() bool { return retries() == waiting })

	e.publish(t, "healthy.event", "evt_healthy", `{}`)
	eventually(t, await, "the healthy delivery", func() bool { return healthy.count() == 1 })
	if n := retries(); n != waiting {
		t.Fatalf("%d of the dead endpoint's retries still pending, want %d: the healthy delivery did not overtake them", n, waiting)
	}
	if n := dead.count(); n != waiting {
		t.Fatalf("dead endpoint got %d requests, want %d (no retry yet)", n, waiting)
	}
}

func TestSubscriptionChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	a := newReceiver(t, always(200))
	b := newReceiver(t, always(200))
	sub, _ := e.subscribe(t, a.URL(), "order.created")

	e.publish(t, "order.created", "evt_1", `{}`)
	eventually(t, await, "delivery to A", func() bool { return a.count() == 1 })

	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.Url = b.URL() })
	e.publish(t, "order.created", "evt_2", `{}`)
	eventually(t, await, "delivery to B after the URL change", func() bool { return b.count() == 1 })

	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.Disabled = true; s.DisabledReason = "manual" })
	e.publish(t, "order.created", "evt_3", `{}`)
	eventually(t, await, "the event for the disabled subscription counted as unmatched", func() bool {
		return testutil.ToFloat64(e.svc.Metrics.EventsUnmatched) == 1
	})
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if a.count() != 1 || b.count() != 1 || b.ids()[0] != "evt_2" {
		t.Fatalf("A got %v, B got %v", a.ids(), b.ids())
	}
}

func TestPendingRetryOfDisabledOrDeletedSubscriptionIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_RETRY_SCHEDULE": "0s,2s,2s"})
	tests := []struct {
		name   string
		change func(id string)
		reason string
	}{
		{"disabled", func(id string) { e.update(t, id, func(s *hooklinev1.Subscription) { s.Disabled = true }) }, wire.DeadLetterSubscriptionDisabled},
		{"deleted", func(id string) { e.remove(t, id) }, wire.DeadLetterSubscriptionDeleted},
	}
	for _, tt := range tests {
		rcv := newReceiver(t, always(500))
		sub, _ := e.subscribe(t, rcv.URL(), "order."+tt.name)
		e.publish(t, "order."+tt.name, "evt_"+tt.name, `{}`)
		eventually(t, await, tt.name+": first attempt", func() bool { return rcv.count() == 1 })
		tt.change(sub.GetId())
		eventually(t, await, tt.name+": dead letter", func() bool {
			for _, dl := range e.deadLetters(t) {
				if dl.Header.Get(stream.HeaderSubscriptionID) == sub.GetId() {
					if got := dl.Header.Get(stream.HeaderReason); got != tt.reason {
						t.Fatalf("%s: reason %q, want %q", tt.name, got, tt.reason)
					}
					if dl.Header.Get(stream.HeaderAttempt) != "1" || dl.Header.Get(stream.HeaderLastStatus) != "500" {
						t.Fatalf("%s: dead letter headers %v", tt.name, dl.Header)
					}
					return true
				}
			}
			return false
		})
		if n := rcv.count(); n != 1 {
			t.Fatalf("%s: %d attempts, want 1", tt.name, n)
		}
	}
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
}

func TestFlushAllLosesNothing(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, always(200))
	e.subscribe(t, rcv.URL(), "order.created")
	const total = 60
	for i := range total / 2 {
		e.publish(t, "order.created", fmt.Sprintf("evt_%d", i), `{}`)
	}
	eventually(t, await, "some deliveries", func() bool { return rcv.count() > 0 })
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := total / 2; i < total; i++ {
		e.publish(t, "order.created", fmt.Sprintf("evt_%d", i), `{}`)
	}
	eventually(t, await, "every delivery", func() bool { return rcv.count() >= total })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	ids := rcv.ids()
	slices.Sort(ids)
	if ids = slices.Compact(ids); len(ids) != total {
		t.Fatalf("%d distinct events delivered, want %d", len(ids), total)
	}
	if n := len(e.deadLetters(t)); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

func TestBadInputNeverPanicsAndNothingIsDropped(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, always(200))
	sub, _ := e.subscribe(t, rcv.URL(), "order.created", "ping")

	// Raw `nats pub` without headers: delivered, id derived from the sequence.
	e.publishRaw(t, "events.acme.order.created", nil, `{"raw":true}`)
	eventually(t, await, "the raw event", func() bool { return rcv.count() == 1 })
	if id := rcv.ids()[0]; !strings.HasPrefix(id, "evt_seq_") {
		t.Fatalf("raw event webhook-id %q, want evt_seq_<seq>", id)
	}
	// Garbage body: dead-lettered for the matching subscription, not sent.
	e.publishRaw(t, "events.acme.order.created", nats.Header{stream.HeaderMsgID: {"evt_garbage"}}, `{"unterminated`)
	// Empty body is not JSON either.
	e.publishRaw(t, "events.acme.ping", nats.Header{stream.HeaderMsgID: {"evt_empty"}}, ``)
	// No type token: matches nothing, acked and counted.
	e.publishRaw(t, "events.acme", nil, `{}`)
	// Tasks that did not come from dispatch.
	e.publishRaw(t, stream.DeliverySubject(tenant, sub.GetId()), nil, `{}`)
	e.publishRaw(t, stream.DeliverySubject(tenant, sub.GetId()), nats.Header{
		stream.HeaderEventID: {"evt_bad_attempt"}, stream.HeaderTenant: {tenant}, stream.HeaderEventType: {"order.created"},
		stream.HeaderSubscriptionID: {sub.GetId()}, stream.HeaderAttempt: {"many"},
	}, `{}`)
	e.publishRaw(t, "deliveries.acme", nil, `{}`)
	// And the pipeline keeps flowing.
	e.publish(t, "order.created", "evt_after", `{"ok":true}`)
	eventually(t, await, "the event after the bad ones", func() bool { return slices.Contains(rcv.ids(), "evt_after") })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	reasons := map[string][]string{}
	for _, dl := range e.deadLetters(t) {
		r := dl.Header.Get(stream.HeaderReason)
		reasons[r] = append(reasons[r], dl.Header.Get(stream.HeaderEventID))
	}
	if got := reasons[wire.DeadLetterInvalidPayload]; len(got) != 2 {
		t.Errorf("invalid_payload dead letters for %v, want evt_garbage and evt_empty", got)
	}
	if got := reasons[wire.DeadLetterMalformedTask]; len(got) != 3 {
		t.Errorf("malformed_task dead letters for %v, want 3", got)
	}
	if n := rcv.count(); n != 2 {
		t.Errorf("receiver got %d requests (%v), want the raw event and evt_after", n, rcv.ids())
	}
	if n := testutil.ToFloat64(e.svc.Metrics.EventsInvalid.WithLabelValues("no_type")); n != 1 {
		t.Errorf("hookline_events_invalid_total{problem=no_type} = %v", n)
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	<-e.svc.Started()
	base := "http://" + e.svc.AdminAddr()
	eventually(t, await, "ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for path, want := range map[string]int{"/livez": 200, "/metrics": 200, "/debug/pprof/": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/metrics" && !strings.Contains(string(body), "hookline_attempts_total") {
			t.Errorf("/metrics lacks hookline_attempts_total")
		}
	}
}

func TestShutdownFinishesAttemptInFlight(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var (
		once    sync.Once
		arrived = make(chan struct{})
		release = make(chan struct{})
	)
	rcv := newReceiver(t, func(int) int {
		once.Do(func() { close(arrived) })
		<-release
		return 200
	})
	e.subscribe(t, rcv.URL(), "order.created")
	e.publish(t, "order.created", "evt_inflight", `{}`)
	<-arrived
	// Stop the service while the attempt is in flight: Run must wait for it
	// and ack it, not abandon it.
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	eventually(t, await, "task acked", func() bool { return e.idle(t) })
	if n := testutil.ToFloat64(e.svc.Metrics.Attempts.WithLabelValues("success")); n != 1 {
		t.Fatalf("success attempts %v, want 1", n)
	}
}

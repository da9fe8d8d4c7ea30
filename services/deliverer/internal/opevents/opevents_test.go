package opevents_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/opevents"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{MemoryStorage: true, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	return js
}

func events(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	return natstest.Messages(t, js, stream.Events)
}

// Two replicas that see the same circuit open report one event: its id
// is derived from the subscription and the streak's start. The subject is
// the subscription's own tenant; the body names the host, never the URL.
func TestFailingIsOneEventPerStreak(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sub := &hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Url: "https://u:p@hooks.example.com:8443/p/s3cret?token=x"}
	since := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for range 2 {
		p := opevents.New(js) // a replica each
		if err := p.Failing(context.Background(), sub, opevents.Failing{FailingSince: since, Failures: 5, LastStatus: 500}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := events(t, js)
	if len(msgs) != 1 {
		t.Fatalf("%d events stored, want 1", len(msgs))
	}
	if msgs[0].Subject != "events.acme.hookline.subscription.failing" {
		t.Fatalf("subject %s", msgs[0].Subject)
	}
	var f opevents.Failing
	if err := json.Unmarshal(msgs[0].Data, &f); err != nil {
		t.Fatal(err)
	}
	if f.URLHost != "hooks.example.com:8443" || f.SubscriptionID != "sub_1" || !f.FailingSince.Equal(since) {
		t.Fatalf("body %s", msgs[0].Data)
	}
}

// Dead letters are reported once per subscription per window; a dead
// letter of an operational event is not reported (no loop), nor one
// filed under no tenant.
func TestDeadLetteredIsDebounced(t *testing.T) {
	t.Parallel()
	js := setup(t)
	clock := func() time.Time { return time.Date(2026, 12, 4, 10, 7, 0, 0, time.UTC) }
	p := opevents.New(js)
	opevents.SetClock(p, clock)
	ctx := context.Background()
	letter := func(tenant, sub, typ string) deadletter.Letter {
		return deadletter.Letter{DeadLetter: wire.DeadLetter{Tenant: tenant, SubscriptionID: sub, EventID: "evt_1", EventType: typ, Reason: "attempts_exhausted", Attempts: 3}}
	}
	for _, l := range []deadletter.Letter{
		letter("acme", "sub_1", "order.created"),
		letter("acme", "sub_1", "order.paid"),
		letter("acme", "sub_2", "order.created"),
		letter("acme", "sub_3", "hookline.subscription.failing"),
		letter("unknown", "sub_4", "order.created"),
	} {
		if err := p.DeadLettered(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// Another replica reports sub_1 in the same window: deduplicated.
	other := opevents.New(js)
	opevents.SetClock(other, clock)
	if err := other.DeadLettered(ctx, letter("acme", "sub_1", "order.shipped")); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range events(t, js) {
		var d opevents.DeadLettered
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		if m.Subject != "events.acme.hookline.delivery.dead_lettered" {
			t.Fatalf("subject %s", m.Subject)
		}
		got[d.SubscriptionID]++
	}
	if got["sub_1"] != 1 || got["sub_2"] != 1 || len(got) != 2 {
		t.Fatalf("reports per subscription %v, want sub_1 and sub_2 once each", got)
	}
}

// A destination's circuit is reported to the tenant of the subscription
// whose attempt opened it, under that tenant's subject, naming the host
// and never the URL; a retried publish (another replica reporting the
// same opening) stores one event.
func TestDestinationFailingGoesToTheAttemptsTenant(t *testing.T) {
	t.Parallel()
	js := setup(t)
	sub := &hooklinev1.Subscription{Id: "sub_9", Tenant: "globex", Url: "https://u:p@shared.example.com/p/s3cret?token=x"}
	opened := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for range 2 {
		p := opevents.New(js)
		f := opevents.DestinationFailing{LastStatus: 503, OpenedAt: opened, RetryAt: opened.Add(30 * time.Second)}
		if err := p.DestinationFailing(context.Background(), sub, f); err != nil {
			t.Fatal(err)
		}
	}
	r := opevents.DestinationRecovered{SubscriptionID: sub.GetId(), URLHost: opevents.URLHost(sub.GetUrl()), RecoveredAt: opened.Add(time.Minute)}
	if err := opevents.New(js).DestinationRecovered(context.Background(), sub.GetTenant(), r); err != nil {
		t.Fatal(err)
	}
	msgs := events(t, js)
	if len(msgs) != 2 {
		t.Fatalf("%d events stored, want 2 (failing once, recovered)", len(msgs))
	}
	if msgs[0].Subject != "events.globex.hookline.destination.failing" || msgs[1].Subject != "events.globex.hookline.destination.recovered" {
		t.Fatalf("subjects %s, %s", msgs[0].Subject, msgs[1].Subject)
	}
	var f opevents.DestinationFailing
	if err := json.Unmarshal(msgs[0].Data, &f); err != nil {
		t.Fatal(err)
	}
	if f.URLHost != "shared.example.com" || f.SubscriptionID != "sub_9" || f.LastStatus != 503 || !f.OpenedAt.Equal(opened) {
		t.Fatalf("body %s", msgs[0].Data)
	}
	for _, m := range msgs {
		if s := string(m.Data); strings.Contains(s, "s3cret") || strings.Contains(s, "u:p") {
			t.Fatalf("body holds the URL's secrets: %s", s)
		}
	}
}

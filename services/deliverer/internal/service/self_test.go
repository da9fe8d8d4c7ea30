package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
)

// TestOwnAdminPortIsRefused: with the deliverer's own address allowed
// (127.0.0.0/8), a webhook to its admin port (/metrics, /debug/pprof) is
// refused at connect time and dead-lettered blocked_destination, while a
// receiver on another port of the same address is reached.
func TestOwnAdminPortIsRefused(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_PPROF": "true"})
	<-e.svc.Started()
	admin := e.svc.AdminAddr()
	ok := newReceiver(t, always(200))
	own, _ := e.subscribe(t, "http://"+admin+"/debug/pprof/cmdline", "order.*")
	ownByName, _ := e.subscribe(t, "http://localhost:"+admin[strings.LastIndex(admin, ":")+1:]+"/metrics", "order.*")
	_, _ = e.subscribe(t, ok.URL(), "order.*")

	e.publish(t, "order.created", "evt_self_1", `{"n":1}`)
	eventually(t, 10*time.Second, "two dead letters and one delivery", func() bool {
		return ok.count() == 1 && e.streamMsgs(t, stream.DeadLetter, "") == 2
	})
	for _, m := range e.deadLetters(t) {
		sub := m.Header.Get(stream.HeaderSubscriptionID)
		if sub != own.GetId() && sub != ownByName.GetId() {
			t.Fatalf("dead letter for %s", sub)
		}
		if r := m.Header.Get(stream.HeaderReason); r != wire.DeadLetterBlockedDestination {
			t.Errorf("%s: reason %q, want %s", sub, r, wire.DeadLetterBlockedDestination)
		}
		if last := m.Header.Get(stream.HeaderLastError); !strings.Contains(last, "deliverer's own") || strings.Contains(last, admin) {
			t.Errorf("%s: last error %q", sub, last)
		}
	}
	if n := scrapeBlocked(t, e); n < 2 {
		t.Errorf("hookline_blocked_destinations_total = %v, want at least 2", n)
	}
}

// scrapeBlocked reads hookline_blocked_destinations_total from the
// service's registry.
func scrapeBlocked(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.svc.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hookline_blocked_destinations_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

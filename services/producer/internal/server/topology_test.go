package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
)

// With HOOKLINE_TOPOLOGY=check (the default) the producer creates nothing:
// on an empty NATS it stays unready and logs what is missing and how to
// create it; once an admin step has ensured the topology it becomes ready.
func TestCheckOnlyWaitsForTheTopology(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	rs := redistest.Start(t)
	e := startOn(t, ns.URL(), rs.Addr, map[string]string{"HOOKLINE_TOPOLOGY": "check"})

	var msg string
	eventually(t, "a log line naming the missing topology", func() bool {
		for _, entry := range e.logs.All() {
			if err, ok := entry.ContextMap()["error"].(string); ok && strings.Contains(err, "topology check failed") {
				msg = err
				return true
			}
		}
		return false
	})
	for _, want := range []string{"stream EVENTS is missing", "kv bucket hookline_subscriptions is missing", "deliverer topology", "HOOKLINE_TOPOLOGY=ensure"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the log says %q; it lacks %q", msg, want)
		}
	}
	resp, err := http.Get(e.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("ready without a topology")
	}
	names := js.StreamNames(context.Background())
	for n := range names.Name() {
		t.Errorf("the producer created stream %s in check mode", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	e.awaitReady()
}

package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Event data is bounded by what the EVENTS stream accepts: the server's
// max_payload less room for the headers of the tasks and dead letters an
// event becomes. Larger data is the client's error (413, or 422 naming the
// batch entry), never a 503 to retry forever.
func TestDataOverTheEventStreamLimit(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	ns := natstest.Start(t, func(o *natsserver.Options) { o.MaxPayload = maxPayload })
	_, js := ns.Connect(t)
	rs := redistest.Start(t)
	e := startOn(t, ns.URL(), rs.Addr, nil)
	e.nats, e.js, e.redis, e.rdb = ns, js, rs, rs.Client(t)
	e.awaitReady()

	// The largest data accepted: the stream's cap less the event's own
	// headers (an id of at most 128 bytes, a timestamp).
	maxData := int(stream.EventsLimit(maxPayload)) - 512
	data := func(n int) string { return `{"x":"` + strings.Repeat("a", n-8) + `"}` }
	event := func(id string, n int) string {
		return `{"tenant":"acme","type":"order.created","id":"` + id + `","data":` + data(n) + `}`
	}
	expect(t, e.do("POST", "/v1/events", event(strings.Repeat("i", 128), maxData)), http.StatusAccepted)

	r := e.do("POST", "/v1/events", event("evt_big", maxData+1))
	expect(t, r, http.StatusRequestEntityTooLarge)
	if !strings.Contains(string(r.Body), "larger than the event stream accepts") {
		t.Fatalf("413 body %s does not say why", r.Body)
	}

	r = e.do("POST", "/v1/events/batch", `{"events":[`+event("evt_small", 100)+`,`+event("evt_big2", maxData+1)+`]}`)
	expect(t, r, http.StatusUnprocessableEntity)
	if !problemFields(t, r.json(t))["events[1].data"] {
		t.Fatalf("422 %s does not name events[1].data", r.Body)
	}
	if n := e.msgs(stream.Events); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want only the one accepted", n)
	}
}

package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
)

// An event id stays a duplicate after the duplicate window: the producer
// marks each stored id (KV hookline_event_ids, kept as long as EVENTS
// keeps events) and looks up an id the publisher chose before publishing
// it. A generated id sent back explicitly is caught too, in a batch too;
// another tenant's id of the same name is not.
func TestEventIDStaysADuplicateAfterTheWindow(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_DUPLICATE_WINDOW": "1s"})
	first := e.do("POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord_1","data":1}`)
	expect(t, first, http.StatusAccepted)
	gen := e.do("POST", "/v1/events", `{"tenant":"acme","type":"order.created","data":2}`)
	expect(t, gen, http.StatusAccepted)
	genID := gen.json(t)["id"].(string)
	awaitWindowPassed(t, e.js)

	for _, tt := range []struct{ name, path, body string }{
		{"chosen id", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord_1","data":1}`},
		{"generated id sent back", "/v1/events", `{"tenant":"acme","type":"order.created","id":"` + genID + `","data":2}`},
		{"in a batch", "/v1/events/batch", `{"events":[{"tenant":"acme","type":"order.created","id":"ord_1","data":1}]}`},
	} {
		r := e.do("POST", tt.path, tt.body)
		expect(t, r, http.StatusAccepted)
		if !bytesContain(r.Body, `"duplicate":true`) {
			t.Errorf("%s after the window: %s, want duplicate true", tt.name, r.Body)
		}
	}
	if n := acmeEvents(t, e.js); n != 2 {
		t.Fatalf("EVENTS holds %d acme events, want 2: an id past the window was stored again", n)
	}
	other := e.do("POST", "/v1/events", `{"tenant":"globex","type":"order.created","id":"ord_1","data":1}`)
	expect(t, other, http.StatusAccepted)
	if bytesContain(other.Body, `"duplicate":true`) {
		t.Fatalf("another tenant's ord_1 is a duplicate: %s", other.Body)
	}
}

// awaitWindowPassed publishes a probe with a fixed Nats-Msg-Id until
// EVENTS stores it again: the duplicate window has then passed for what
// was published before the first probe.
func awaitWindowPassed(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	probe := func() *jetstream.PubAck {
		m := nats.NewMsg(stream.EventSubject("probe", "window"))
		m.Data = []byte("{}")
		m.Header.Set(stream.HeaderMsgID, "probe:window")
		ack, err := js.PublishMsg(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	probe()
	eventually(t, "the duplicate window passed", func() bool { return !probe().Duplicate })
}

func acmeEvents(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	n := 0
	for _, m := range natstest.Messages(t, js, stream.Events) {
		if tenant, _, _ := stream.ParseEventSubject(m.Subject); tenant == "acme" {
			n++
		}
	}
	return n
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }

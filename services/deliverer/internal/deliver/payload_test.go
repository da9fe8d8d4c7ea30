package deliver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// oddData is event data as a publisher may send it: odd whitespace, key
// order, a number beyond float64 and an escaped character. Decoding and
// re-encoding would change every one of them.
const oddData = "{ \"b\" :1,\n\t\"a\":  12345678901234567890123.000000000000000001 , \"s\":\"\\u00e9\" }"

type hit struct {
	h    http.Header
	body []byte
}

func receiver(t *testing.T) (*httptest.Server, chan hit) {
	t.Helper()
	got := make(chan hit, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		got <- hit{req.Header.Clone(), b}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// createSub stores sub (with a fresh signing key) and returns the secret.
func (r *rig) createSub(t *testing.T, sub *hooklinev1.Subscription) string {
	t.Helper()
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	sub.Tenant, sub.EventTypes = tenant, []string{">"}
	sub.Keys = []*hooklinev1.SigningKey{{Secret: secret}}
	rev, err := r.store.Create(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cache.Apply(context.Background(), rev, tenant, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (r *rig) taskWith(t *testing.T, sub *hooklinev1.Subscription, eventID, typ, occurred string, data []byte) {
	t.Helper()
	m := &nats.Msg{
		Subject: stream.DeliverySubject(tenant, sub.GetId()),
		Header:  task.NewHeader(eventID, tenant, typ, occurred, sub.GetId()),
		Data:    data,
	}
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(stream.TaskMsgID(eventID, sub.GetId()))); err != nil {
		t.Fatal(err)
	}
}

func await(t *testing.T, got chan hit) hit {
	t.Helper()
	select {
	case h := <-got:
		return h
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery")
		return hit{}
	}
}

// TestEnvelopeCarriesDataByteForByte: an envelope subscription gets
// {"id","type","timestamp","data"} with data exactly as published, signed
// over the body as sent, with the informative headers.
func TestEnvelopeCarriesDataByteForByte(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	sub := &hooklinev1.Subscription{Id: "sub_env", Url: srv.URL + "/in", PayloadFormat: subscription.PayloadEnvelope}
	secret := r.createSub(t, sub)
	r.run(t)
	const occurred = "2026-01-02T15:04:05.123Z"
	r.taskWith(t, sub, "evt_env", "order.paid", occurred, []byte(oddData))

	h := await(t, got)
	if err := signing.VerifyHeaders(h.h, h.body, time.Now(), time.Minute, secret); err != nil {
		t.Fatalf("signature over the body as sent: %v", err)
	}
	var env struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(h.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("envelope %s: %v", h.body, err)
	}
	if env.ID != "evt_env" || env.Type != "order.paid" || env.Timestamp != occurred {
		t.Fatalf("envelope %+v", env)
	}
	if string(env.Data) != oddData {
		t.Fatalf("data %q, want the published bytes %q", env.Data, oddData)
	}
	want := `{"id":"evt_env","type":"order.paid","timestamp":"` + occurred + `","data":` + oddData + `}`
	if string(h.body) != want {
		t.Fatalf("body %q, want %q", h.body, want)
	}
	for k, v := range map[string]string{
		"Hookline-Event-Type": "order.paid", "Hookline-Occurred-At": occurred,
		"Hookline-Attempt": "1", "Hookline-Subscription-Id": "sub_env",
	} {
		if h.h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.h.Get(k), v)
		}
	}
}

// TestRawIsTheDataAlone: a record without payload_format (written before
// the field) and one with "raw" get the published bytes as the body.
func TestRawIsTheDataAlone(t *testing.T) {
	t.Parallel()
	srv, got := receiver(t)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	legacy := &hooklinev1.Subscription{Id: "sub_legacy", Url: srv.URL + "/in"}
	raw := &hooklinev1.Subscription{Id: "sub_raw", Url: srv.URL + "/in", PayloadFormat: subscription.PayloadRaw}
	secrets := map[string]string{"sub_legacy": r.createSub(t, legacy), "sub_raw": r.createSub(t, raw)}
	r.run(t)
	r.taskWith(t, legacy, "evt_a", "order.created", "2026-01-02T15:04:05Z", []byte(oddData))
	r.taskWith(t, raw, "evt_b", "order.created", "2026-01-02T15:04:05Z", []byte(oddData))
	for range 2 {
		h := await(t, got)
		id := h.h.Get("Hookline-Subscription-Id")
		if string(h.body) != oddData {
			t.Fatalf("%s: body %q, want the published bytes", id, h.body)
		}
		if err := signing.VerifyHeaders(h.h, h.body, time.Now(), time.Minute, secrets[id]); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if h.h.Get("Hookline-Event-Type") != "order.created" {
			t.Fatalf("%s: event type header %q", id, h.h.Get("Hookline-Event-Type"))
		}
	}
}

// TestCustomHeadersAreOpenedAndSent: sealed custom headers reach the
// receiver in clear; the cached record keeps them sealed, and the attempt
// record does not hold them.
func TestCustomHeadersAreOpenedAndSent(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := subscription.SealHeaders(box, map[string]string{"authorization": "Bearer t0k_s3cret", "X-Tenant": "acme-eu"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for n, v := range sealed {
		if !strings.HasPrefix(v, "enc:v1:") {
			t.Fatalf("%s stored as %q", n, v)
		}
	}
	srv, got := receiver(t)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.opts.Headers = deliver.OpenedHeaders(box)
	sub := &hooklinev1.Subscription{Id: "sub_hdr", Url: srv.URL + "/in", Headers: sealed}
	r.createSub(t, sub)
	r.run(t)
	r.taskWith(t, sub, "evt_hdr", "order.created", "2026-01-02T15:04:05Z", []byte(`{}`))
	h := await(t, got)
	if h.h.Get("Authorization") != "Bearer t0k_s3cret" || h.h.Get("X-Tenant") != "acme-eu" {
		t.Fatalf("headers %v", h.h)
	}
	eventually(t, "the task settled", func() bool { return r.settled(t) })
	c, err := r.cache.Get(context.Background(), tenant, sub.GetId())
	if err != nil || c.GetHeaders()["Authorization"] != sealed["Authorization"] {
		t.Fatalf("the cached record changed: %v", err)
	}
	eventually(t, "the attempt record", func() bool { return r.streamMsgs(t, stream.Attempts) > 0 })
	att, err := r.js.Stream(context.Background(), stream.Attempts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := att.GetLastMsgForSubject(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), "s3cret") {
		t.Fatalf("attempt record %s", m.Data)
	}
}

// TestSealedHeadersWithoutKeyArePermanent: a deliverer that cannot open
// the headers dead-letters the task rather than POST without the
// receiver's credential; the dead letter names the header, not its value.
func TestSealedHeadersWithoutKeyArePermanent(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := subscription.SealHeaders(box, map[string]string{"Authorization": "Bearer t0k_s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, http.StatusOK, 0)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	sub := &hooklinev1.Subscription{Id: "sub_hnokey", Url: ep.srv.URL + "/in", Headers: sealed}
	r.createSub(t, sub)
	r.run(t) // no Headers option: no key
	r.taskWith(t, sub, "evt_hnokey", "order.created", "2026-01-02T15:04:05Z", []byte(`{}`))
	eventually(t, "a dead letter", func() bool { return r.streamMsgs(t, stream.DeadLetter) == 1 })
	dl := r.deadLetter(t, 1)
	if reason := dl.Header.Get(stream.HeaderReason); reason != wire.DeadLetterPermanentFailure {
		t.Fatalf("reason %q", reason)
	}
	last := dl.Header.Get(stream.HeaderLastError)
	if !strings.Contains(last, "Authorization") || !strings.Contains(last, "HOOKLINE_SECRET_KEY") || strings.Contains(last, "t0k") {
		t.Fatalf("last error %q", last)
	}
	if ep.n.Load() != 0 {
		t.Fatal("POSTed without the custom headers")
	}
}

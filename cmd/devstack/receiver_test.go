package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/encoding/protojson"
)

// syncBuffer is the terminal of a test receiver.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type receiverFixture struct {
	rc  *receiver
	out *syncBuffer
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
}

func newReceiverFixture(t *testing.T) *receiverFixture {
	t.Helper()
	s := natstest.Start(t)
	nc, js := s.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	rc := newReceiver(js, nil, "9000", newConsole(out))
	sub, err := rc.types.watch(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &receiverFixture{rc: rc, out: out, nc: nc, js: js, kv: kv}
}

func (f *receiverFixture) putSubscription(t *testing.T, s *hooklinev1.Subscription) {
	t.Helper()
	b, err := protojson.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(context.Background(), stream.SubscriptionKey(s.GetTenant(), s.GetId()), b); err != nil {
		t.Fatal(err)
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// webhook builds a request as the deliverer sends it, signed with secrets.
func webhook(t *testing.T, id string, ts time.Time, body string, secrets ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, receiverPath, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	if len(secrets) > 0 {
		sig, err := signing.Sign(id, ts, []byte(body), secrets...)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("webhook-signature", sig)
	}
	return r
}

func TestReceiverVerifiesWithTheSecretsOfItsSubscriptions(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	current, rotatedOut, stranger, elsewhere := newSecret(t), newSecret(t), newSecret(t), newSecret(t)
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_here", Tenant: "acme", Url: "http://127.0.0.1:9000/webhook", EventTypes: []string{"order.*"},
		Keys: []*hooklinev1.SigningKey{{Secret: current}, {Secret: rotatedOut}},
	})
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_elsewhere", Tenant: "acme", Url: "https://example.com/hooks", EventTypes: []string{">"},
		Keys: []*hooklinev1.SigningKey{{Secret: elsewhere}},
	})
	now := time.Now()
	body := `{"order_id": 1}`
	tests := []struct {
		name string
		req  *http.Request
		want string
	}{
		{name: "current secret", req: webhook(t, "evt_1", now, body, current), want: "webhook-id=evt_1 type=- verified=yes subscription=sub_here"},
		{name: "rotated-out secret still overlapping", req: webhook(t, "evt_2", now, body, rotatedOut), want: "webhook-id=evt_2 type=- verified=yes subscription=sub_here"},
		{name: "two entries during a rotation", req: webhook(t, "evt_3", now, body, stranger, current), want: "verified=yes subscription=sub_here"},
		{name: "unknown secret", req: webhook(t, "evt_4", now, body, stranger), want: "webhook-id=evt_4 type=- verified=no (the signature matches no key of the 1 subscription(s) pointing here)"},
		{name: "secret of a subscription that points elsewhere", req: webhook(t, "evt_5", now, body, elsewhere), want: "verified=no (the signature matches no key"},
		{name: "too old", req: webhook(t, "evt_6", now.Add(-10*time.Minute), body, current), want: "verified=no (webhook-timestamp is outside the 5-minute tolerance)"},
		{name: "unsigned", req: webhook(t, "evt_7", now, body), want: "verified=no (missing webhook-id, webhook-timestamp or webhook-signature header)"},
		{name: "tampered body", req: func() *http.Request {
			r := webhook(t, "evt_8", now, body, current)
			r.Body = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"order_id": 2}`)).Body
			return r
		}(), want: "webhook-id=evt_8 type=- verified=no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.out.String())
			w := httptest.NewRecorder()
			f.rc.ServeHTTP(w, tt.req)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d, want 204", w.Code)
			}
			got := f.out.String()[before:]
			if !strings.HasPrefix(got, "receiver  | webhook-id=") || !strings.Contains(got, tt.want) {
				t.Fatalf("printed\n%s\nwant a line with %q", got, tt.want)
			}
			if !strings.Contains(got, "receiver  |   {") {
				t.Fatalf("body not printed:\n%s", got)
			}
			for _, secret := range []string{current, rotatedOut, stranger, elsewhere} {
				if strings.Contains(got, secret) || strings.Contains(got, strings.TrimPrefix(secret, "whsec_")) {
					t.Fatal("a secret was printed")
				}
			}
		})
	}
}

func TestReceiverWithoutSubscriptionsSaysSo(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	w := httptest.NewRecorder()
	f.rc.ServeHTTP(w, webhook(t, "evt_1", time.Now(), `{}`, newSecret(t)))
	if w.Code != http.StatusNoContent || !strings.Contains(f.out.String(), "verified=no (no subscription points at this receiver)") {
		t.Fatalf("status %d, printed\n%s", w.Code, f.out.String())
	}
}

func TestReceiverNamesTheEventType(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	secret := newSecret(t)
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_here", Tenant: "acme", Url: "http://localhost:9000/webhook", EventTypes: []string{">"},
		Keys: []*hooklinev1.SigningKey{{Secret: secret}},
	})
	ctx := context.Background()

	// Published with an id (as the producer does): learnt as it passes.
	m := nats.NewMsg(stream.EventSubject("acme", "order.created"))
	m.Header.Set(stream.HeaderMsgID, "evt_http")
	m.Data = []byte(`{"order_id":1}`)
	if _, err := f.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	// Published raw (as `nats pub` does): id evt_seq_<sequence>_<stored>.
	ack, err := f.js.Publish(ctx, stream.EventSubject("acme", "invoice.paid.late"), []byte(`{"invoice":7}`))
	if err != nil {
		t.Fatal(err)
	}
	events, err := f.js.Stream(ctx, stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := events.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	rawID := stream.SeqEventID(ack.Sequence, stored.Time)
	oldID := "evt_seq_" + strconv.FormatUint(ack.Sequence, 10) // before ids carried the time
	// The same sequence of a recreated stream: another event.
	otherID := stream.SeqEventID(ack.Sequence, stored.Time.Add(time.Second))

	// The core subscription sees the first message asynchronously: await it.
	deadline := time.Now().Add(10 * time.Second)
	for f.rc.types.lookup(ctx, f.js, "evt_http") == "" {
		if time.Now().After(deadline) {
			t.Fatal("the receiver never learnt the type of evt_http")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for id, want := range map[string]string{"evt_http": "type=order.created", rawID: "type=invoice.paid.late",
		oldID: "type=invoice.paid.late", otherID: "type=-", "evt_unknown": "type=-"} {
		f.rc.ServeHTTP(httptest.NewRecorder(), webhook(t, id, time.Now(), `{}`, secret))
		if !strings.Contains(f.out.String(), "webhook-id="+id+" "+want+" verified=yes") {
			t.Errorf("no %q for %s in\n%s", want, id, f.out.String())
		}
	}
}

func TestReceiverRefusesWhatIsNotAWebhook(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{name: "GET", req: httptest.NewRequest(http.MethodGet, receiverPath, nil), want: http.StatusMethodNotAllowed},
		{name: "other path", req: httptest.NewRequest(http.MethodPost, "/other", strings.NewReader("{}")), want: http.StatusNotFound},
		{name: "too large", req: httptest.NewRequest(http.MethodPost, receiverPath, strings.NewReader(strings.Repeat("x", maxWebhookBytes+1))), want: http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			f.rc.ServeHTTP(w, tt.req)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestPointsAt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want bool
	}{
		{"http://127.0.0.1:9000/webhook", true},
		{"http://localhost:9000/webhook", true},
		{"http://[::1]:9000/webhook", true},
		{"http://127.0.0.2:9000/webhook", true},
		{"http://127.0.0.1:9001/webhook", false},
		{"http://127.0.0.1:9000/other", false},
		{"https://127.0.0.1:9000/webhook", false},
		{"http://10.0.0.1:9000/webhook", false},
		{"http://example.com:9000/webhook", false},
		{"::not a url", false},
	}
	for _, tt := range tests {
		if got := pointsAt(tt.url, "9000"); got != tt.want {
			t.Errorf("pointsAt(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body, want string }{
		{"json is compacted", "{\n  \"a\": 1\n}", `{"a":1}`},
		{"text as is", "plain text", "plain text"},
		{"binary is quoted", "\xff\x00", `"\xff\x00"`},
		{"empty", "", "(empty body)"},
		{"long is cut", strings.Repeat("a", maxPrinted+10), strings.Repeat("a", maxPrinted) + "… (2058 bytes)"},
	}
	for _, tt := range tests {
		if got := printable([]byte(tt.body)); got != tt.want {
			t.Errorf("%s: printable = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestReceiverAcceptsWhatTheReferenceLibrarySigns(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	secret := newSecret(t)
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_ref", Tenant: "acme", Url: "http://127.0.0.1:9000/webhook", Keys: []*hooklinev1.SigningKey{{Secret: secret}},
	})
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ts, body := time.Now(), `{"order_id":1}`
	sig, err := wh.Sign("evt_ref", ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := webhook(t, "evt_ref", ts, body)
	r.Header.Set("webhook-signature", sig)
	f.rc.ServeHTTP(httptest.NewRecorder(), r)
	if !strings.Contains(f.out.String(), "webhook-id=evt_ref type=- verified=yes subscription=sub_ref") {
		t.Fatalf("printed\n%s", f.out.String())
	}
}

func TestReceiverVerifiesEd25519Subscriptions(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	private, public, err := signing.NewEd25519Key()
	if err != nil {
		t.Fatal(err)
	}
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_v1a", Tenant: "acme", Url: "http://127.0.0.1:9000/webhook", SignatureScheme: "v1a",
		PublicKey: public, Keys: []*hooklinev1.SigningKey{{Secret: private}},
	})
	f.rc.ServeHTTP(httptest.NewRecorder(), webhook(t, "evt_v1a", time.Now(), `{}`, private))
	if !strings.Contains(f.out.String(), "webhook-id=evt_v1a type=- verified=yes subscription=sub_v1a") {
		t.Fatalf("printed\n%s", f.out.String())
	}
}

func TestReceiverOpensSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	f := newReceiverFixture(t)
	key, err := secretbox.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretBox([]string{"HOOKLINE_SECRET_KEY=" + key})
	if err != nil || box == nil {
		t.Fatalf("secretBox = %v, %v", box, err)
	}
	secret := newSecret(t)
	sealed, err := box.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	f.putSubscription(t, &hooklinev1.Subscription{
		Id: "sub_sealed", Tenant: "acme", Url: "http://127.0.0.1:9000/webhook", Keys: []*hooklinev1.SigningKey{{Secret: sealed}},
	})

	// Without the key: the receiver says why it cannot tell.
	f.rc.ServeHTTP(httptest.NewRecorder(), webhook(t, "evt_nokey", time.Now(), `{}`, secret))
	if !strings.Contains(f.out.String(), "webhook-id=evt_nokey type=- verified=no (the secrets are sealed at rest") {
		t.Fatalf("printed\n%s", f.out.String())
	}
	// With the key the services got from the same environment: verified.
	f.rc.box = box
	f.rc.ServeHTTP(httptest.NewRecorder(), webhook(t, "evt_key", time.Now(), `{}`, secret))
	if !strings.Contains(f.out.String(), "webhook-id=evt_key type=- verified=yes subscription=sub_sealed") {
		t.Fatalf("printed\n%s", f.out.String())
	}
}

func TestSecretBox(t *testing.T) {
	t.Parallel()
	box, err := secretBox([]string{"PATH=/usr/bin"})
	if err != nil || box != nil {
		t.Fatalf("no key: %v, %v; want encryption off", box, err)
	}
	if _, err := secretBox([]string{"HOOKLINE_SECRET_KEY=too-short"}); err == nil {
		t.Fatal("a malformed key was accepted")
	}
}

// The type comes from the webhook itself when it says: the header, else
// the envelope; a raw body of a field named type is not mistaken for one.
func TestSentType(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	if got := sentType(h, []byte(`{"id":"e","type":"order.paid","timestamp":"t","data":{}}`)); got != "order.paid" {
		t.Errorf("envelope: %q", got)
	}
	if got := sentType(h, []byte(`{"type":"not-an-envelope"}`)); got != "" {
		t.Errorf("raw body: %q", got)
	}
	h.Set("Hookline-Event-Type", "invoice.paid")
	if got := sentType(h, []byte(`{}`)); got != "invoice.paid" {
		t.Errorf("header: %q", got)
	}
}

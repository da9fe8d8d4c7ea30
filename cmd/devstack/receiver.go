package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
)

// receiverPath is where the demo receiver takes webhooks.
const receiverPath = "/webhook"

// maxWebhookBytes bounds a body the receiver reads.
const maxWebhookBytes = 1 << 20

// receiver is the demo endpoint: POST /webhook. It verifies each webhook's
// Standard Webhooks signature with the secrets of the subscriptions whose URL
// points at it (read from the registry, the KV bucket), prints the webhook,
// and answers 204 whatever the verdict, so a demo never piles up retries.
type receiver struct {
	js    jetstream.JetStream
	box   *secretbox.Box // opens secrets sealed at rest (nil: none configured)
	port  string         // subscriptions to a loopback host on this port are ours
	con   *console
	types *eventTypes
}

func newReceiver(js jetstream.JetStream, box *secretbox.Box, port string, con *console) *receiver {
	return &receiver{js: js, box: box, port: port, con: con, types: newEventTypes(10000)}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != receiverPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		rc.con.Line("receiver", "rejected a webhook: %v", err)
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	v := rc.verify(r.Context(), body, r.Header)
	id := r.Header.Get(signing.HeaderID)
	typ := sentType(r.Header, body)
	if typ == "" { // a deliverer from before the type was sent
		typ = rc.types.lookup(r.Context(), rc.js, id)
	}
	if v.OK {
		rc.con.Line("receiver", "webhook-id=%s type=%s verified=yes subscription=%s", orDash(id), orDash(typ), v.SubscriptionID)
	} else {
		rc.con.Line("receiver", "webhook-id=%s type=%s verified=no (%s)", orDash(id), orDash(typ), v.Reason)
	}
	rc.con.Line("receiver", "  %s", printable(body))
	w.WriteHeader(http.StatusNoContent)
}

// sentType is the event type the webhook carries: the Hookline-Event-Type
// header, else the envelope's "type" ("" when neither says).
func sentType(h http.Header, body []byte) string {
	if t := h.Get("Hookline-Event-Type"); t != "" {
		return t
	}
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &env) == nil && env.Data != nil {
		return env.Type
	}
	return ""
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxWebhookBytes)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("body larger than %d bytes", maxWebhookBytes)
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	return buf.Bytes(), nil
}

// verify checks the signature against the subscriptions that point here.
func (rc *receiver) verify(ctx context.Context, body []byte, h http.Header) verdict {
	subs, err := rc.subscriptions(ctx)
	if err != nil {
		return verdict{Reason: "cannot read the subscriptions: " + err.Error()}
	}
	return verify(body, h, subs, rc.box, time.Now())
}

// subscriptions reads the registry and keeps those whose URL points at this
// receiver.
func (rc *receiver) subscriptions(ctx context.Context) ([]*hooklinev1.Subscription, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := rc.js.KeyValue(ctx, stream.SubscriptionsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", stream.SubscriptionsBucket, err)
	}
	watcher, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read kv %s: %w", stream.SubscriptionsBucket, err)
	}
	defer func() { _ = watcher.Stop() }()
	var subs []*hooklinev1.Subscription
	for {
		select {
		case e := <-watcher.Updates():
			if e == nil { // the initial values are all in
				return subs, nil
			}
			var s hooklinev1.Subscription
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(e.Value(), &s); err != nil {
				continue // not ours to judge; the producer validates what it stores
			}
			if pointsAt(s.GetUrl(), rc.port) {
				subs = append(subs, &s)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("read kv %s: %w", stream.SubscriptionsBucket, ctx.Err())
		}
	}
}

// pointsAt reports whether a subscription URL reaches the demo receiver:
// http on a loopback host, the receiver's port, path /webhook.
func pointsAt(raw, port string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() != port || u.Path != receiverPath {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// verdict is the receiver's judgement of one webhook.
type verdict struct {
	OK             bool
	SubscriptionID string // whose key verified it
	Reason         string // why not, when !OK
}

// verify checks a webhook with pkg/signing against the keys of each
// subscription in subs: its whsec_/whsk_ secrets (opened with box when they
// are sealed at rest) and its whpk_ public key.
func verify(body []byte, h http.Header, subs []*hooklinev1.Subscription, box *secretbox.Box, now time.Time) verdict {
	if h.Get(signing.HeaderID) == "" || h.Get(signing.HeaderTimestamp) == "" || h.Get(signing.HeaderSignature) == "" {
		return verdict{Reason: "missing webhook-id, webhook-timestamp or webhook-signature header"}
	}
	if len(subs) == 0 {
		return verdict{Reason: "no subscription points at this receiver"}
	}
	var outOfTolerance, sealed bool
	for _, s := range subs {
		keys, unreadable := verificationKeys(s, box)
		sealed = sealed || unreadable
		if len(keys) == 0 {
			continue
		}
		err := signing.VerifyHeaders(h, body, now, signing.DefaultTolerance, keys...)
		switch {
		case err == nil:
			return verdict{OK: true, SubscriptionID: s.GetId()}
		case errors.Is(err, signing.ErrTooOld), errors.Is(err, signing.ErrTooNew):
			outOfTolerance = true
		case errors.Is(err, signing.ErrBadTimestamp), errors.Is(err, signing.ErrMalformedHeader):
			return verdict{Reason: err.Error()}
		}
	}
	switch {
	case outOfTolerance:
		return verdict{Reason: "webhook-timestamp is outside the 5-minute tolerance"}
	case sealed:
		return verdict{Reason: "the secrets are sealed at rest and this receiver has not the key (HOOKLINE_SECRET_KEY)"}
	}
	return verdict{Reason: fmt.Sprintf("the signature matches no key of the %d subscription(s) pointing here", len(subs))}
}

// verificationKeys are the well-formed keys of s. unreadable reports a
// sealed secret that box cannot open.
func verificationKeys(s *hooklinev1.Subscription, box *secretbox.Box) (keys []string, unreadable bool) {
	candidates := []string{s.GetPublicKey()}
	for _, k := range s.GetKeys() {
		secret := k.GetSecret()
		if secretbox.IsSealed(secret) {
			opened, err := box.Open(secret)
			if err != nil {
				unreadable = true
				continue
			}
			secret = opened
		}
		candidates = append(candidates, secret)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := signing.ParseKey(c); err == nil {
			keys = append(keys, c)
		}
	}
	return keys, unreadable
}

// maxPrinted bounds a body printed to the terminal.
const maxPrinted = 2048

// printable is the body for the terminal: compact JSON when it is JSON,
// quoted when it is not text, cut at maxPrinted bytes.
func printable(body []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, body) == nil {
		body = b.Bytes()
	}
	s := string(body)
	if !utf8.ValidString(s) {
		s = strconv.Quote(s)
	}
	if len(s) > maxPrinted {
		return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(s[:maxPrinted], ""), len(body))
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// eventTypes learns the type of each event as it is published, since a
// webhook carries the event's data but not its type. Raw `nats pub` events
// have ids evt_seq_<stream sequence>_<stored time> and are looked up in
// EVENTS instead.
type eventTypes struct {
	mu    sync.Mutex
	max   int
	byID  map[string]string
	order []string
}

func newEventTypes(max int) *eventTypes {
	return &eventTypes{max: max, byID: make(map[string]string)}
}

// watch subscribes (core NATS) to every event subject.
func (t *eventTypes) watch(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.Subscribe(stream.EventsPrefix+".>", func(m *nats.Msg) {
		if tenant, typ, err := stream.ParseEventSubject(m.Subject); err == nil {
			if id, _ := stream.EventIDFromMsgID(tenant, m.Header.Get(stream.HeaderMsgID)); id != "" {
				t.add(id, typ)
			}
		}
	})
}

func (t *eventTypes) add(id, typ string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[id]; ok {
		return
	}
	if len(t.order) >= t.max {
		delete(t.byID, t.order[0])
		t.order = t.order[1:]
	}
	t.byID[id] = typ
	t.order = append(t.order, id)
}

func (t *eventTypes) lookup(ctx context.Context, js jetstream.JetStream, id string) string {
	t.mu.Lock()
	typ, ok := t.byID[id]
	t.mu.Unlock()
	if ok {
		return typ
	}
	// An event published without a Nats-Msg-Id: evt_seq_<EVENTS
	// sequence>_<stored time> (stream.SeqEventID).
	seq, stored, ok := stream.ParseSeqEventID(id)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream.Events)
	if err != nil {
		return ""
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil || !stored.IsZero() && !m.Time.Equal(stored) {
		return "" // gone, or another event of a recreated stream
	}
	_, typ, err = stream.ParseEventSubject(m.Subject)
	if err != nil {
		return ""
	}
	return typ
}

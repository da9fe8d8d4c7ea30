package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Keys sealed at rest by the producer (HOOKLINE_SECRET_KEY) are opened to
// sign: an HMAC rotation (new sealed, old still in clear) and an ed25519
// key both verify at the receiver, each key on its own.
func TestSealedSecretsSign(t *testing.T) {
	t.Parallel()
	key, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": key})
	seal := func(s string) string {
		sealed, err := box.Seal(s)
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}

	hm := newReceiver(t, always(http.StatusOK))
	sub, oldSecret := e.subscribe(t, hm.URL(), "order.*")
	newSecret, _ := signing.NewHMACSecret()
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) {
		s.Keys[0].ExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
		s.Keys = append([]*hooklinev1.SigningKey{{Secret: seal(newSecret), CreatedAt: timestamppb.Now()}}, s.Keys...)
	})

	ed := newReceiver(t, always(http.StatusOK))
	edSub, _ := e.subscribe(t, ed.URL(), "order.*")
	edSecret, edPublic, err := signing.NewEd25519Key()
	if err != nil {
		t.Fatal(err)
	}
	e.update(t, edSub.GetId(), func(s *hooklinev1.Subscription) {
		s.SignatureScheme, s.PublicKey = signing.SchemeEd25519, edPublic
		s.Keys = []*hooklinev1.SigningKey{{Secret: seal(edSecret), CreatedAt: timestamppb.Now()}}
	})

	// No wait for any cache: the event is matched, and its tasks looked
	// up, in a view that holds both acknowledged changes (the watermark).
	e.publish(t, "order.created", "evt_sealed_1", `{"n":1}`)
	eventually(t, 10*time.Second, "both deliveries", func() bool { return hm.count() == 1 && ed.count() == 1 })

	got := hm.requests()[0]
	if n := len(strings.Fields(got.header.Get(signing.HeaderSignature))); n != 2 {
		t.Fatalf("rotation header has %d entries, want 2", n)
	}
	for _, s := range []string{newSecret, oldSecret} {
		if err := signing.VerifyHeaders(got.header, got.body, time.Now(), 0, s); err != nil {
			t.Errorf("HMAC signature does not verify with one key alone: %v", err)
		}
	}
	got = ed.requests()[0]
	if !strings.HasPrefix(got.header.Get(signing.HeaderSignature), "v1a,") {
		t.Fatalf("ed25519 subscription signed %q", got.header.Get(signing.HeaderSignature))
	}
	if err := signing.VerifyHeaders(got.header, got.body, time.Now(), 0, edPublic); err != nil {
		t.Errorf("v1a signature does not verify with the public key: %v", err)
	}
	for _, entry := range e.logs.All() {
		line := entry.Message + stringifyFields(entry.ContextMap())
		for _, s := range []string{newSecret, oldSecret, edSecret} {
			if strings.Contains(line, s[6:]) {
				t.Fatalf("a secret was logged: %s", line)
			}
		}
	}
}

// A sealed key without the operator key cannot sign: a clear error, no
// request, no secret in the dead letter.
func TestSealedSecretWithoutKey(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, _ := secretbox.Config{Key: key}.Box()
	e := start(t, nil)
	r := newReceiver(t, always(http.StatusOK))
	sub, secret := e.subscribe(t, r.URL(), "order.*")
	sealed, _ := box.Seal(secret)
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.Keys[0].Secret = sealed })
	e.publish(t, "order.created", "evt_nokey_1", `{}`)
	eventually(t, 10*time.Second, "a dead letter", func() bool { return len(e.deadLetters(t)) == 1 })
	dl := e.deadLetters(t)[0]
	if r.count() != 0 {
		t.Fatalf("the endpoint got %d requests signed with nothing", r.count())
	}
	if last := dl.Header.Get(stream.HeaderLastError); !strings.Contains(last, "HOOKLINE_SECRET_KEY") || strings.Contains(last, sealed[7:20]) {
		t.Fatalf("dead letter last error %q", last)
	}
}

// A destination in a blocked range (loopback here, with no allow-list) is
// refused at connect time: the endpoint sees nothing, the attempt is
// classed "blocked" and dead-lettered at once (not retried), and
// hookline_blocked_destinations_total counts it. Neither the URL's query
// nor the address leaks into the dead letter.
func TestBlockedDestination(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_ALLOW_PRIVATE_CIDRS": ""})
	canary := newReceiver(t, always(http.StatusOK))
	e.subscribe(t, canary.URL(), "order.*")
	e.publish(t, "order.created", "evt_blocked_1", `{}`)
	eventually(t, 10*time.Second, "a dead letter", func() bool { return len(e.deadLetters(t)) == 1 })
	dl := e.deadLetters(t)[0]
	if reason := dl.Header.Get(stream.HeaderReason); reason != "blocked_destination" {
		t.Fatalf("dead letter reason %q, want blocked_destination", reason)
	}
	if a := dl.Header.Get(stream.HeaderAttempt); a != "1" {
		t.Fatalf("dead-lettered after %s attempts, want 1 (a blocked destination is not retried)", a)
	}
	last := dl.Header.Get(stream.HeaderLastError)
	if strings.Contains(last, "127.0.0.1") || strings.Contains(last, "s3cret-query") || !strings.Contains(last, "loopback") {
		t.Fatalf("dead letter last error %q: want the class, not the address or URL", last)
	}
	if canary.count() != 0 {
		t.Fatalf("the canary got %d requests", canary.count())
	}
	if n := counter(t, e, "hookline_blocked_destinations_total", ""); n < 1 {
		t.Fatalf("hookline_blocked_destinations_total = %v, want ≥ 1", n)
	}
	if n := counter(t, e, "hookline_attempt_errors_total", "blocked"); n != 1 {
		t.Fatalf(`hookline_attempt_errors_total{error_class="blocked"} = %v, want 1`, n)
	}
}

// counter reads a counter from the service's registry; label is the value
// of its only label ("" for none).
func counter(t *testing.T, e *env, name, label string) float64 {
	t.Helper()
	mfs, err := e.svc.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

func stringifyFields(m map[string]any) string {
	var b strings.Builder
	for k, v := range m {
		b.WriteString(" " + k + "=")
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

// sealingKey is a fresh HOOKLINE_SECRET_KEY and the box it opens.
func sealingKey(t *testing.T) (string, *secretbox.Box) {
	t.Helper()
	key, err := secretbox.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	return key, box
}

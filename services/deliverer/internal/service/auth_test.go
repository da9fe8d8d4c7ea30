package service_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

const oauthSecret = "cl1ent-s3cret-never-shown"

// oauthServers is a token endpoint handing out tok-1, tok-2, … (an hour
// each) to the right client, and a receiver that accepts only the
// newest token issued (revoke, when set, refuses every token).
type oauthServers struct {
	tokenURL string
	issued   atomic.Int64
	failing  atomic.Bool
	revoke   atomic.Bool
	mu       sync.Mutex
	seen     []string
	receiver string
}

func newOAuthServers(t *testing.T) *oauthServers {
	t.Helper()
	o := &oauthServers{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if o.failing.Load() || !ok || id != "hookline" || secret != oauthSecret {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"bad secret `+secret+`"}`)
			return
		}
		n := o.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"acc3ss-tok-%d","token_type":"Bearer","expires_in":3600}`, n)
	}))
	t.Cleanup(ts.Close)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Authorization")
		o.mu.Lock()
		o.seen = append(o.seen, tok)
		o.mu.Unlock()
		if o.revoke.Load() || tok != fmt.Sprintf("Bearer acc3ss-tok-%d", o.issued.Load()) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	o.tokenURL, o.receiver = ts.URL+"/token", rcv.URL+"/hook"
	return o
}

func (o *oauthServers) tokens() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// An OAuth subscription whose client secret is sealed at rest: each
// attempt carries the bearer token, fetched once and reused; a token the
// receiver stops accepting is replaced once, within the attempt (one
// attempt record, not two); a failing token endpoint is an attempt
// failure of class auth_token retried on the schedule, then a dead
// letter. The client secret and the tokens appear in no log line,
// attempt record or dead letter.
func TestOAuthClientCredentials(t *testing.T) {
	t.Parallel()
	key, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": key})
	o := newOAuthServers(t)
	sub, _ := e.subscribe(t, o.receiver, "order.*")
	sealed, err := box.Seal(oauthSecret)
	if err != nil {
		t.Fatal(err)
	}
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) {
		s.Auth = &hooklinev1.EndpointAuth{Type: "oauth2_client_credentials", TokenUrl: o.tokenURL,
			ClientId: "hookline", ClientSecret: sealed, TokenAuthMethod: "client_secret_basic"}
	})

	for i := range 3 {
		e.publish(t, "order.created", fmt.Sprintf("evt_oauth_%d", i), `{}`)
		eventually(t, 10*time.Second, "the delivery", func() bool { return len(o.tokens()) == i+1 })
	}
	eventually(t, 10*time.Second, "idle", func() bool { return e.idle(t) })
	if n := o.issued.Load(); n != 1 {
		t.Fatalf("%d tokens fetched for 3 deliveries, want 1", n)
	}
	// The receiver stops accepting tok-1 (a revocation: it accepts only
	// the newest token issued, and this skips one). The next attempt is
	// refused, fetches tok-3 and resends at once, as the same attempt.
	o.issued.Add(1)
	e.publish(t, "order.created", "evt_oauth_revoked", `{}`)
	eventually(t, 10*time.Second, "the resend", func() bool { return len(o.tokens()) == 5 })
	eventually(t, 10*time.Second, "idle", func() bool { return e.idle(t) })
	if got := o.tokens(); got[3] != "Bearer acc3ss-tok-1" || got[4] != "Bearer acc3ss-tok-3" {
		t.Fatalf("receiver saw %v: want the old token refused, then a new one", got)
	}
	var records []string
	eventually(t, 10*time.Second, "4 attempt records", func() bool {
		records = records[:0]
		for _, r := range e.attemptRecords(t) {
			records = append(records, string(r.data))
		}
		return len(records) >= 4
	})
	if len(records) != 4 {
		t.Fatalf("%d attempt records for 4 deliveries (one of them resent after a 401), want 4:\n%s", len(records), strings.Join(records, "\n"))
	}
	for _, r := range records {
		if !strings.Contains(r, `"outcome":"success"`) || !strings.Contains(r, `"status":204`) || !strings.Contains(r, `"attempt":1,`) {
			t.Fatalf("attempt record %s, want a delivery", r)
		}
	}

	// The receiver refuses every token and the token endpoint refuses the
	// client: the first attempt sends the cached token, is refused and
	// cannot refresh it; later ones have no token to send. Every attempt
	// fails with auth_token, on the schedule (0s,1s,1s), then a dead
	// letter.
	o.revoke.Store(true)
	o.failing.Store(true)
	before := len(o.tokens())
	e.publish(t, "order.created", "evt_oauth_fail", `{}`)
	eventually(t, 15*time.Second, "a dead letter", func() bool { return len(e.deadLetters(t)) == 1 })
	dl := e.deadLetters(t)[0]
	if a := dl.Header.Get(stream.HeaderAttempt); a != "3" {
		t.Fatalf("dead-lettered after %s attempts, want 3 (the schedule)", a)
	}
	last := dl.Header.Get(stream.HeaderLastError)
	if !strings.Contains(last, "token endpoint: HTTP 401") || !strings.Contains(last, "invalid_client") {
		t.Fatalf("dead letter last error %q", last)
	}
	if n := len(o.tokens()) - before; n != 1 {
		t.Fatalf("the receiver got %d requests, want 1 (the cached token; none without one)", n)
	}
	failed := 0
	eventually(t, 10*time.Second, "the failed attempts' records", func() bool {
		failed = 0
		for _, r := range e.attemptRecords(t) {
			if strings.Contains(string(r.data), `"error_class":"auth_token"`) {
				failed++
			}
		}
		return failed >= 3
	})
	if failed != 3 {
		t.Fatalf("%d attempt records of class auth_token, want 3", failed)
	}
	if n := counter(t, e, "hookline_attempt_errors_total", "auth_token"); n != 3 {
		t.Fatalf(`hookline_attempt_errors_total{error_class="auth_token"} = %v, want 3`, n)
	}

	// Nothing secret anywhere: logs, attempt records, dead letters.
	secrets := []string{oauthSecret, "acc3ss-tok-"}
	var sinks []string
	for _, entry := range e.logs.All() {
		sinks = append(sinks, "log: "+entry.Message+stringifyFields(entry.ContextMap()))
	}
	for _, r := range e.attemptRecords(t) {
		sinks = append(sinks, "attempt: "+string(r.data))
	}
	for _, m := range e.deadLetters(t) {
		sinks = append(sinks, fmt.Sprintf("dead letter: %v %s", m.Header, m.Data))
	}
	for _, s := range sinks {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Fatalf("%q leaked: %s", secret, s)
			}
		}
	}
}

package deliver_test

import (
	"context"
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
)

// sealedSub stores a subscription whose URL carries credentials the way
// the producer does: masked in url, sealed in sealed_url.
func (r *rig) sealedSub(t *testing.T, id string, box *secretbox.Box, full string) *hooklinev1.Subscription {
	t.Helper()
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	masked, sealed, err := subscription.SealURL(box, full)
	if err != nil || sealed == "" {
		t.Fatalf("SealURL: %q %v", sealed, err)
	}
	sub := &hooklinev1.Subscription{Id: id, Tenant: tenant, Url: masked, SealedUrl: sealed, EventTypes: []string{">"},
		Keys: []*hooklinev1.SigningKey{{Secret: secret}}}
	rev, err := r.store.Create(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cache.Apply(context.Background(), rev, tenant, id, sub); err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestURLCredentialsReachTheReceiver: the receiver gets the real URL (query
// credential and userinfo as Basic auth) although the record holds them
// sealed; the cached record stays masked and neither the attempt record
// nor anything stored holds the credential.
func TestURLCredentialsReachTheReceiver(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ uri, user, pass string }
	got := make(chan seen, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/in" {
			// Not this test's delivery: another test process's POST to a
			// port it had found free (harness.RefusedURL) before this
			// server took it.
			w.WriteHeader(http.StatusNotFound)
			return
		}
		u, p, _ := req.BasicAuth()
		got <- seen{req.URL.RequestURI(), u, p}
	}))
	t.Cleanup(srv.Close)

	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.opts.Secrets = deliver.OpenedSecrets(box)
	r.opts.URLs = deliver.OpenedURLs(box)
	full := strings.Replace(srv.URL, "http://", "http://hook:pa55_s3cret@", 1) + "/in?api_key=k3y_s3cret&v=1"
	sub := r.sealedSub(t, "sub_creds", box, full)
	r.run(t)
	r.task(t, sub, "evt_creds")

	select {
	case s := <-got:
		if s.uri != "/in?api_key=k3y_s3cret&v=1" || s.user != "hook" || s.pass != "pa55_s3cret" {
			t.Fatalf("the receiver saw %+v, want the real URL and credentials", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery")
	}
	eventually(t, "the task settled", func() bool { return r.settled(t) })
	if c, err := r.cache.Get(context.Background(), tenant, sub.GetId()); err != nil || c.GetUrl() != sub.GetUrl() {
		t.Fatalf("the cached record changed: %q, %v", c.GetUrl(), err)
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
	if strings.Contains(string(m.Data), "s3cret") || !strings.Contains(string(m.Data), `"outcome":"success"`) {
		t.Fatalf("attempt record %s", m.Data)
	}
}

// TestSealedURLWithoutKeyIsPermanent: a deliverer without the key cannot
// reach the endpoint: the task is dead-lettered at once (no POST to the
// masked URL), and the dead letter names the cause, not the credential.
func TestSealedURLWithoutKeyIsPermanent(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, http.StatusOK, 0)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	sub := r.sealedSub(t, "sub_nokey", box, ep.srv.URL+"/in?token=t0k_s3cret")
	r.run(t) // no Secrets/URLs options: no key
	r.task(t, sub, "evt_nokey")
	eventually(t, "a dead letter", func() bool { return r.streamMsgs(t, stream.DeadLetter) == 1 })
	dl := r.deadLetter(t, 1)
	if reason := dl.Header.Get(stream.HeaderReason); reason != wire.DeadLetterPermanentFailure {
		t.Fatalf("reason %q", reason)
	}
	last := dl.Header.Get(stream.HeaderLastError)
	if !strings.Contains(last, "HOOKLINE_SECRET_KEY") || strings.Contains(last, "t0k_s3cret") {
		t.Fatalf("last error %q", last)
	}
	if ep.n.Load() != 0 {
		t.Fatal("the masked URL was POSTed to")
	}
}

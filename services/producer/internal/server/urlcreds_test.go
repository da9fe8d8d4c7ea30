package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestURLCredentialsSealedAtRest: a URL's credentials (query api_key,
// token…; userinfo) are never in the clear fields of the KV record or the
// Redis cache, nor in any API answer or log line; the full URL is sealed
// in sealed_url and opens to what was sent.
func TestURLCredentialsSealedAtRest(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	ctx := context.Background()
	noLeak, atRest := e.leakChecks(t, "k3y_s3cret", "t0k_s3cret", "pa55w0rd_s3cret", "l3gacy_s3cret")

	const full = "https://hooks.example.com/in?api_key=k3y_s3cret&v=1"
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"`+full+`","event_types":["a"]}`)
	expect(t, r, http.StatusCreated)
	noLeak("the create answer", r.Body)
	id := r.json(t)["id"].(string)
	if got := r.json(t)["url"]; got != "https://hooks.example.com/in?api_key=REDACTED&v=1" {
		t.Fatalf("create answered url %v", got)
	}
	if _, ok := r.json(t)["sealed_url"]; ok {
		t.Fatal("the API shows sealed_url")
	}
	atRest("acme", id)
	st := e.stored(id)
	if opened, err := subscription.OpenURL(box, st); err != nil || opened != full || !strings.HasPrefix(st.GetSealedUrl(), "enc:v2:") {
		t.Fatalf("sealed_url %q opens to %q, %v; want the URL sent", st.GetSealedUrl(), opened, err)
	}

	for _, path := range []string{"/v1/subscriptions/" + id, "/v1/subscriptions?tenant=acme"} {
		g := e.do("GET", path, nil)
		expect(t, g, http.StatusOK)
		noLeak("GET "+path, g.Body)
		if strings.Contains(string(g.Body), "sealed_url") || !strings.Contains(string(g.Body), "api_key=REDACTED") {
			t.Fatalf("GET %s: %s", path, g.Body)
		}
	}

	// Sending back the URL as shown changes nothing: the credential stays.
	p := e.do("PATCH", "/v1/subscriptions/"+id, `{"url":"https://hooks.example.com/in?api_key=REDACTED&v=1","description":"same url"}`)
	expect(t, p, http.StatusOK)
	if opened, err := subscription.OpenURL(box, e.stored(id)); err != nil || opened != full {
		t.Fatalf("after a PATCH with the masked url the endpoint is %q, %v", opened, err)
	}
	// A new URL with a new credential is sealed in its turn.
	const next = "https://hooks.example.com/v2?token=t0k_s3cret"
	p = e.do("PATCH", "/v1/subscriptions/"+id, `{"url":"`+next+`"}`)
	expect(t, p, http.StatusOK)
	noLeak("the PATCH answer", p.Body)
	atRest("acme", id)
	if opened, err := subscription.OpenURL(box, e.stored(id)); err != nil || opened != next {
		t.Fatalf("after a PATCH with a new url the endpoint is %q, %v", opened, err)
	}
	// Back to a URL without credentials: nothing sealed is left behind.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"url":"https://hooks.example.com/v3"}`), http.StatusOK)
	if st := e.stored(id); st.GetSealedUrl() != "" || st.GetUrl() != "https://hooks.example.com/v3" {
		t.Fatalf("after a PATCH without credentials: url %q sealed %q", st.GetUrl(), st.GetSealedUrl())
	}
	rot := e.do("POST", "/v1/subscriptions/"+id+"/rotate-secret", nil)
	expect(t, rot, http.StatusOK)
	noLeak("the rotate answer", rot.Body)

	// A record stored before URL credentials were sealed: masked in every
	// answer at once, sealed on its next write.
	store, err := subscription.NewStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	legacySecret, _ := signing.NewHMACSecret()
	const legacyURL = "https://user:pa55w0rd_s3cret@old.example/in?secret=l3gacy_s3cret"
	legacy := &hooklinev1.Subscription{Id: "sub_01JLEGACY0000000000000000", Tenant: "acme", Url: legacyURL,
		EventTypes: []string{"a"}, Keys: []*hooklinev1.SigningKey{{Secret: legacySecret}}, SignatureScheme: "v1"}
	if _, err := store.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/subscriptions/" + legacy.Id, "/v1/subscriptions?tenant=acme"} {
		g := e.do("GET", path, nil)
		expect(t, g, http.StatusOK)
		noLeak("GET "+path+" of a legacy record", g.Body)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+legacy.Id, `{"description":"touched"}`), http.StatusOK)
	atRest("acme", legacy.Id)
	if opened, err := subscription.OpenURL(box, e.stored(legacy.Id)); err != nil || opened != legacyURL {
		t.Fatalf("the legacy url opens to %q, %v", opened, err)
	}

	for _, entry := range e.logs.All() {
		noLeak("a log line", []byte(fmt.Sprint(entry.Message, entry.ContextMap())))
	}
}

// leakChecks returns noLeak, which fails the test when b holds one of
// secrets, and atRest, which checks a subscription's KV record and Redis
// record with it: every place a subscription is kept.
func (e *env) leakChecks(t *testing.T, secrets ...string) (noLeak func(what string, b []byte), atRest func(tenant, id string)) {
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	noLeak = func(what string, b []byte) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Fatalf("%s holds the secret %s: %s", what, s, b)
			}
		}
	}
	atRest = func(tenant, id string) {
		t.Helper()
		ent, err := kv.Get(ctx, stream.SubscriptionKey(tenant, id))
		if err != nil {
			t.Fatal(err)
		}
		noLeak("the KV record", ent.Value())
		eventually(t, "cache write", func() bool { v, err := e.cached(tenant, id); return err == nil && v != "" })
		v, _ := e.cached(tenant, id)
		noLeak("the Redis record", []byte(v))
	}
	return noLeak, atRest
}

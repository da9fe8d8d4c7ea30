package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/config"
)

// doAs sends a JSON request with a bearer token ("" for none).
func (e *env) doAs(token, method, path, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

var fixedNow = time.Unix(1_700_000_000, 0)

const (
	tokPublishAcme = "tok-publish-acme-5f1e2d3c4b5a"
	tokAdmin       = "tok-admin-all-9a8b7c6d5e4f"
	tokAdminAcme   = "tok-admin-acme-0a1b2c3d4e5f"
)

func tokens() string {
	return strings.Join([]string{
		"ci:" + auth.HashToken(tokPublishAcme) + ":publish:acme",
		"ops:" + auth.HashToken(tokAdmin) + ":admin",
		"acme-console:" + auth.HashToken(tokAdminAcme) + ":admin:acme",
	}, ",")
}

// Missing, wrong, wrong-scope and wrong-tenant tokens on the real
// producer; probes stay open; tokens never reach the logs.
func TestAPIAuthentication(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	globex := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://globex.example/h","event_types":[">"]}`)
	expect(t, globex, http.StatusCreated)
	globexID := globex.json(t)["id"].(string)
	acme := e.doAs(tokAdminAcme, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":[">"]}`)
	expect(t, acme, http.StatusCreated)
	acmeID := acme.json(t)["id"].(string)

	event := func(tenant string) string { return `{"tenant":"` + tenant + `","type":"order.created","data":{}}` }
	tests := []struct {
		name, token, method, path, body string
		status                          int
	}{
		{"missing token", "", "POST", "/v1/events", event("acme"), 401},
		{"wrong token", "nope", "POST", "/v1/events", event("acme"), 401},
		{"hash as token", auth.HashToken(tokAdmin), "GET", "/v1/subscriptions?tenant=acme", "", 401},
		{"wrong scope", tokPublishAcme, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://a.example/","event_types":["a"]}`, 403},
		{"wrong scope: list", tokPublishAcme, "GET", "/v1/subscriptions?tenant=acme", "", 403},
		{"wrong tenant: event", tokPublishAcme, "POST", "/v1/events", event("globex"), 403},
		{"wrong tenant: batch", tokPublishAcme, "POST", "/v1/events/batch", `{"events":[` + event("acme") + `,` + event("globex") + `]}`, 403},
		{"wrong tenant: create", tokAdminAcme, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://g.example/","event_types":["a"]}`, 403},
		{"wrong tenant: list", tokAdminAcme, "GET", "/v1/subscriptions?tenant=globex", "", 403},
		{"wrong tenant: get is not found", tokAdminAcme, "GET", "/v1/subscriptions/" + globexID, "", 404},
		{"wrong tenant: delete is not found", tokAdminAcme, "DELETE", "/v1/subscriptions/" + globexID, "", 404},
		{"wrong tenant: rotate is not found", tokAdminAcme, "POST", "/v1/subscriptions/" + globexID + "/rotate-secret", "", 404},
		{"right: event", tokPublishAcme, "POST", "/v1/events", event("acme"), 202},
		{"right: batch", tokPublishAcme, "POST", "/v1/events/batch", `{"events":[` + event("acme") + `]}`, 202},
		{"admin publishes too", tokAdmin, "POST", "/v1/events", event("globex"), 202},
		{"right: get own tenant", tokAdminAcme, "GET", "/v1/subscriptions/" + acmeID, "", 200},
		{"right: list own tenant", tokAdminAcme, "GET", "/v1/subscriptions?tenant=acme", "", 200},
		{"unbound admin: other tenant", tokAdmin, "GET", "/v1/subscriptions/" + acmeID, "", 200},
		{"livez open", "", "GET", "/livez", "", 200},
		{"readyz open", "", "GET", "/readyz", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.doAs(tt.token, tt.method, tt.path, tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if tt.status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without a Bearer challenge: %v", r.Header)
			}
			if tt.status == 401 || tt.status == 403 {
				p := r.json(t)
				if r.Header.Get("Content-Type") != "application/problem+json" || p["status"] != float64(tt.status) || p["detail"] == "" {
					t.Fatalf("not a problem: %s %s", r.Header.Get("Content-Type"), r.Body)
				}
			}
		})
	}
	// The globex subscription survived the acme token's attempts.
	expect(t, e.doAs(tokAdmin, "GET", "/v1/subscriptions/"+globexID, ""), http.StatusOK)
	for _, entry := range e.logs.All() {
		line := stringify(entry.ContextMap()) + entry.Message
		for _, tok := range []string{tokPublishAcme, tokAdmin, tokAdminAcme} {
			if strings.Contains(line, tok) {
				t.Fatalf("a token was logged: %s", line)
			}
		}
	}
}

func TestAuthenticationOffSaysSo(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	expect(t, e.do("POST", "/v1/events", `{"tenant":"acme","type":"a","data":1}`), http.StatusAccepted)
	if n := e.logs.FilterMessageSnippet("API AUTHENTICATION IS OFF").Len(); n != 1 {
		t.Fatalf("%d warnings that authentication is off, want 1", n)
	}
}

// Subscription URLs pointing at private, loopback, link-local or metadata
// addresses are refused with a 422 that says why, unless allowed.
func TestSubscriptionURLPolicy(t *testing.T) {
	t.Parallel()
	strict := start(t, nil)
	tests := []struct {
		url, reason string
	}{
		{"http://127.0.0.1:8080/hook", "loopback"},
		{"http://2130706433/hook", "loopback"},
		{"http://[::ffff:127.0.0.1]/", "loopback"},
		{"http://localhost:9000/", "loopback"},
		{"http://10.0.0.7/", "private"},
		{"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
		{"http://[fd00::1]/", "unique local"},
		{"http://0x7f.1/", "loopback"},
	}
	for _, tt := range tests {
		r := strict.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"`+tt.url+`","event_types":["a"]}`)
		expect(t, r, http.StatusUnprocessableEntity)
		errs, _ := r.json(t)["errors"].([]any)
		if len(errs) != 1 || errs[0].(map[string]any)["field"] != "url" || !strings.Contains(errs[0].(map[string]any)["message"].(string), tt.reason) {
			t.Errorf("%s: %s, want a url error naming %q", tt.url, r.Body, tt.reason)
		}
	}
	ok := strict.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/in","event_types":["a"]}`)
	expect(t, ok, http.StatusCreated)
	expect(t, strict.do("PATCH", "/v1/subscriptions/"+ok.json(t)["id"].(string), `{"url":"http://192.168.1.1/"}`), http.StatusUnprocessableEntity)

	open := start(t, map[string]string{"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8", "HOOKLINE_HTTPS_ONLY": "true"})
	expect(t, open.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://127.0.0.1:8443/hook","event_types":["a"]}`), http.StatusCreated)
	r := open.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"http://hooks.example.com/","event_types":["a"]}`)
	expect(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(string(r.Body), "https") {
		t.Fatalf("https-only refusal does not say so: %s", r.Body)
	}
	expect(t, open.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://10.0.0.1/","event_types":["a"]}`), http.StatusUnprocessableEntity)
}

// "signature_scheme":"v1a" makes an ed25519 subscription: the whsk_ secret
// is revealed once, the whpk_ public key is readable with GET, and a
// rotation stays in the scheme.
func TestEd25519Subscription(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/in","event_types":["a"],"signature_scheme":"v1a"}`)
	expect(t, r, http.StatusCreated)
	c := r.json(t)
	id, secret, public := c["id"].(string), c["secret"].(string), c["public_key"].(string)
	if c["signature_scheme"] != "v1a" || !strings.HasPrefix(secret, "whsk_") || !strings.HasPrefix(public, "whpk_") {
		t.Fatalf("created %s", r.Body)
	}
	if p, err := signing.PublicKey(secret); err != nil || p != public {
		t.Fatalf("public_key %s is not the secret's (%s, %v)", public, p, err)
	}
	g := e.do("GET", "/v1/subscriptions/"+id, nil)
	expect(t, g, http.StatusOK)
	if gj := g.json(t); gj["public_key"] != public || gj["secret"] != nil || strings.Contains(string(g.Body), "whsk_") {
		t.Fatalf("GET shows %s", g.Body)
	}
	rot := e.do("POST", "/v1/subscriptions/"+id+"/rotate-secret", nil)
	expect(t, rot, http.StatusOK)
	rj := rot.json(t)
	newSecret := rj["secret"].(string)
	if p, _ := signing.PublicKey(newSecret); !strings.HasPrefix(newSecret, "whsk_") || rj["public_key"] != p || p == public {
		t.Fatalf("rotated %s", rot.Body)
	}
	// Both keys sign during the overlap, each verifiable with its public key.
	keys := e.stored(id).GetKeys()
	var secrets []string
	for _, k := range keys {
		secrets = append(secrets, k.GetSecret())
	}
	h, err := signing.Sign("evt_1", fixedNow, []byte("{}"), secrets...)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []string{public, rj["public_key"].(string)} {
		if err := signing.Verify("evt_1", fixedNow, []byte("{}"), h, pub); err != nil {
			t.Errorf("rotation header does not verify with %s…: %v", pub[:12], err)
		}
	}
	expect(t, e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://x.example/","event_types":["a"],"signature_scheme":"v2"}`), http.StatusUnprocessableEntity)
}

// With HOOKLINE_SECRET_KEY the registry and the cache hold sealed secrets;
// records written in clear are sealed on their next write.
func TestSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/in","event_types":["a"]}`)
	expect(t, r, http.StatusCreated)
	id, secret := r.json(t)["id"].(string), r.json(t)["secret"].(string)
	stored := e.stored(id).GetKeys()[0].GetSecret()
	if !strings.HasPrefix(stored, "enc:v2:") || strings.Contains(stored, secret[6:]) {
		t.Fatalf("KV holds %q, want it sealed", stored)
	}
	if plain, err := box.OpenFor(subscription.Binding(e.stored(id), subscription.FieldSigningKey), stored); err != nil || plain != secret {
		t.Fatalf("the sealed secret opens to %q, %v; want the revealed one", plain, err)
	}
	eventually(t, "cache write", func() bool { v, err := e.cached("acme", id); return err == nil && v != "" })
	if v, _ := e.cached("acme", id); strings.Contains(v, secret[6:]) || !strings.Contains(v, "enc:v2:") {
		t.Fatalf("Redis holds the secret in clear: %s", v)
	}

	// A record written before the key existed: clear until its next write.
	store, err := subscription.NewStore(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	legacySecret, _ := signing.NewHMACSecret()
	legacy := &hooklinev1.Subscription{Id: "sub_01JLEGACY0000000000000000", Tenant: "acme", Url: "https://old.example/",
		EventTypes: []string{"a"}, Keys: []*hooklinev1.SigningKey{{Secret: legacySecret}}, SignatureScheme: "v1"}
	if _, err := store.Create(context.Background(), legacy); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+legacy.Id, `{"description":"touched"}`), http.StatusOK)
	migrated := e.stored(legacy.Id).GetKeys()[0].GetSecret()
	if plain, err := box.OpenFor(subscription.Binding(legacy, subscription.FieldSigningKey), migrated); !strings.HasPrefix(migrated, "enc:v2:") || err != nil || plain != legacySecret {
		t.Fatalf("after a write the legacy key is %q (opens to %v); want it sealed", migrated, err)
	}
	rot := e.do("POST", "/v1/subscriptions/"+legacy.Id+"/rotate-secret", nil)
	expect(t, rot, http.StatusOK)
	for i, k := range e.stored(legacy.Id).GetKeys() {
		if !strings.HasPrefix(k.GetSecret(), "enc:v2:") {
			t.Fatalf("key %d after rotation is not sealed", i)
		}
	}
}

// Security settings are validated like the rest, naming the variable and
// never echoing a value.
func TestSecurityConfig(t *testing.T) {
	t.Parallel()
	short := base64.StdEncoding.EncodeToString([]byte("sixteen-byte-key"))
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HOOKLINE_SECRET_KEY": short}, "HOOKLINE_SECRET_KEY"},
		{map[string]string{"HOOKLINE_API_TOKENS": "ops:" + strings.Repeat("z", 64) + ":admin"}, "HOOKLINE_API_TOKENS"},
		{map[string]string{"HOOKLINE_API_TOKENS": "ops:" + auth.HashToken("x") + ":root"}, "HOOKLINE_API_TOKENS"},
		{map[string]string{"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8,bogus"}, "HOOKLINE_ALLOW_PRIVATE_CIDRS"},
	}
	for _, tt := range tests {
		tt.env["HOOKLINE_NATS_URL"] = "nats://127.0.0.1:4222"
		_, err := config.Load(tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config.Load(%v) = %v, want an error naming %s", tt.env, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), auth.HashToken("x")) {
			t.Errorf("config error shows a value: %v", err)
		}
	}
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

// A record holding a sealed value bound to another subscription (copied
// there by a writer of the registry that is not Hookline) can still be
// changed — disabled here — and the foreign value is left for the
// deliverer to refuse, never re-bound to this subscription.
func TestForeignSealedKeyIsNeverBoundButDoesNotBlockWrites(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	a := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://a.example/in","event_types":["a"]}`)
	expect(t, a, http.StatusCreated)
	b := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://b.example/in","event_types":["a"]}`)
	expect(t, b, http.StatusCreated)
	aID, bID := a.json(t)["id"].(string), b.json(t)["id"].(string)
	foreign := e.stored(aID).GetKeys()[0].GetSecret()
	store, err := subscription.NewStore(context.Background(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Update(context.Background(), bID, func(s *hooklinev1.Subscription) error {
		s.Keys[0].Secret = foreign
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+bID, `{"disabled":true}`), http.StatusOK)
	st := e.stored(bID)
	if !st.GetDisabled() || st.GetKeys()[0].GetSecret() != foreign {
		t.Fatalf("after the write: disabled %v, key changed %v", st.GetDisabled(), st.GetKeys()[0].GetSecret() != foreign)
	}
	if _, err := box.OpenFor(subscription.Binding(st, subscription.FieldSigningKey), foreign); !errors.Is(err, secretbox.ErrBound) {
		t.Fatalf("the foreign key opens for %s: %v", bID, err)
	}
}

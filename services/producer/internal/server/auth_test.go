package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
)

// TestOAuthClientSecretIsWriteOnly: an OAuth client secret is sealed in
// the KV and Redis records, REDACTED in every answer, kept by REDACTED on
// a PATCH only while token_url and client_id stay the same, removed by
// {}, and never logged; a token_url on a blocked literal address and bad
// fields are 422s naming the field.
func TestOAuthClientSecretIsWriteOnly(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	noLeak, atRestIn := e.leakChecks(t, "cl1ent_s3cret", "r0tated_s3cret")
	atRest := func(id string) { t.Helper(); atRestIn("acme", id) }
	opened := func(id string) string {
		t.Helper()
		a, err := subscription.OpenAuth(box, e.stored(id))
		if err != nil {
			t.Fatal(err)
		}
		return a.GetClientSecret()
	}
	auth := func(secret string) string {
		return `{"type":"oauth2_client_credentials","token_url":"https://auth.example.com/oauth/token","client_id":"hookline",` +
			`"client_secret":"` + secret + `","scope":"webhooks","audience":"https://api.example.com"}`
	}

	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/a","event_types":["a"],"auth":`+auth("cl1ent_s3cret")+`}`)
	expect(t, r, http.StatusCreated)
	noLeak("the create answer", r.Body)
	id := r.json(t)["id"].(string)
	got := fmt.Sprint(r.json(t)["auth"])
	for _, want := range []string{"type:oauth2_client_credentials", "client_secret:REDACTED", "client_id:hookline",
		"token_auth_method:client_secret_basic", "token_url:https://auth.example.com/oauth/token"} {
		if !strings.Contains(got, want) {
			t.Fatalf("create answered auth %s, want %s in it", got, want)
		}
	}
	atRest(id)
	if s := opened(id); s != "cl1ent_s3cret" {
		t.Fatalf("stored secret opens to %q", s)
	}
	for _, path := range []string{"/v1/subscriptions/" + id, "/v1/subscriptions?tenant=acme"} {
		g := e.do("GET", path, nil)
		expect(t, g, http.StatusOK)
		noLeak("GET "+path, g.Body)
		if !strings.Contains(string(g.Body), `"client_secret":"REDACTED"`) {
			t.Fatalf("GET %s: %s", path, g.Body)
		}
	}

	// The answer sent back keeps the secret; a new scope with it too.
	p := e.do("PATCH", "/v1/subscriptions/"+id, `{"auth":`+strings.Replace(auth("REDACTED"), `"webhooks"`, `"webhooks:write"`, 1)+`}`)
	expect(t, p, http.StatusOK)
	if s, scope := opened(id), e.stored(id).GetAuth().GetScope(); s != "cl1ent_s3cret" || scope != "webhooks:write" {
		t.Fatalf("after PATCH with REDACTED: secret %q scope %q", s, scope)
	}
	// REDACTED never follows the secret to another token endpoint.
	moved := strings.Replace(auth("REDACTED"), "auth.example.com", "evil.example.com", 1)
	res := e.do("PATCH", "/v1/subscriptions/"+id, `{"auth":`+moved+`}`)
	expect(t, res, http.StatusUnprocessableEntity)
	if !strings.Contains(string(res.Body), `"auth.client_secret"`) {
		t.Fatalf("REDACTED with a new token_url: %s", res.Body)
	}
	p = e.do("PATCH", "/v1/subscriptions/"+id, `{"auth":`+auth("r0tated_s3cret")+`}`)
	expect(t, p, http.StatusOK)
	noLeak("the PATCH answer", p.Body)
	atRest(id)
	if s := opened(id); s != "r0tated_s3cret" {
		t.Fatalf("after a new secret: %q", s)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"description":"x"}`), http.StatusOK)
	if s := opened(id); s != "r0tated_s3cret" {
		t.Fatalf("after an unrelated PATCH: %q", s)
	}

	bad := []struct{ auth, field, reason string }{
		{strings.Replace(auth("x"), "https://auth.example.com", "http://127.0.0.1:8080", 1), "auth.token_url", "loopback"},
		{strings.Replace(auth("x"), "https://auth.example.com", "http://169.254.169.254", 1), "auth.token_url", "address"},
		{strings.Replace(auth("x"), "https://auth.example.com", "ftp://auth.example.com", 1), "auth.token_url", "http"},
		{`{"type":"oauth2_client_credentials","client_id":"a","client_secret":"b"}`, "auth.token_url", "required"},
		{`{"type":"oauth2_client_credentials","token_url":"https://a.example/t","client_secret":"b"}`, "auth.client_id", "required"},
		{`{"type":"oauth2_client_credentials","token_url":"https://a.example/t","client_id":"a"}`, "auth.client_secret", "required"},
		{`{"type":"oauth2_client_credentials","token_url":"https://a.example/t","client_id":"a","client_secret":"b\nc"}`, "auth.client_secret", "control"},
		{`{"type":"oauth2_client_credentials","token_url":"https://a.example/t","client_id":"a","client_secret":"b","token_auth_method":"private_key_jwt"}`, "auth.token_auth_method", "client_secret_basic"},
		{`{"type":"oauth2_client_credentials","token_url":"https://a.example/t","client_id":"a","client_secret":"b","private_key":"k"}`, "auth.private_key", "not a field"},
		{`{"type":"kerberos"}`, "auth.type", "oauth2_client_credentials"},
		{`{"client_id":"a"}`, "auth.type", "required"},
	}
	for _, b := range bad {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/b","event_types":["a"],"auth":` + b.auth + `}`},
			{"PATCH", "/v1/subscriptions/" + id, `{"auth":` + b.auth + `}`},
		} {
			res := e.do(req.method, req.path, req.body)
			expect(t, res, http.StatusUnprocessableEntity)
			if !hasFieldError(t, res, b.field, b.reason) {
				t.Errorf("%s %s: want %s %q, got %s", req.method, b.auth, b.field, b.reason, res.Body)
			}
		}
	}
	if s := opened(id); s != "r0tated_s3cret" {
		t.Fatalf("a refused PATCH changed the secret: %q", s)
	}

	// {} removes the authentication.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"auth":{}}`), http.StatusOK)
	if a := e.stored(id).GetAuth(); a != nil {
		t.Fatalf("auth left: %v", a.GetType())
	}
	for _, entry := range e.logs.All() {
		noLeak("a log line", []byte(fmt.Sprint(entry.Message, entry.ContextMap())))
	}
}

// hasFieldError reports whether a 422 lists field with a message that
// contains reason.
func hasFieldError(t *testing.T, res response, field, reason string) bool {
	t.Helper()
	errs, _ := res.json(t)["errors"].([]any)
	for _, fe := range errs {
		m := fe.(map[string]any)
		if m["field"] == field && strings.Contains(m["message"].(string), reason) {
			return true
		}
	}
	return false
}

// TestMTLSPrivateKeyIsWriteOnly: an mTLS private key is sealed at rest and
// REDACTED in answers (the certificate is shown); a key that does not
// match the certificate is a 422 that never quotes it.
func TestMTLSPrivateKeyIsWriteOnly(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	_, cert, key := fixture.ClientCert(t, "hookline", time.Now().Add(time.Hour))
	_, _, otherKey := fixture.ClientCert(t, "other", time.Now().Add(time.Hour))
	body := func(k string) string {
		b, _ := json.Marshal(map[string]any{"tenant": "acme", "url": "https://hooks.example.com/m", "event_types": []string{"a"},
			"auth": map[string]string{"type": "mtls", "certificate": cert, "private_key": k}})
		return string(b)
	}
	keyBody := strings.Split(key, "\n")[1] // a line of the key's base64
	r := e.do("POST", "/v1/subscriptions", body(key))
	expect(t, r, http.StatusCreated)
	if strings.Contains(string(r.Body), keyBody) || !strings.Contains(string(r.Body), `"private_key":"REDACTED"`) {
		t.Fatalf("create answered %s", r.Body)
	}
	id := r.json(t)["id"].(string)
	stored := e.stored(id).GetAuth()
	if !secretbox.IsSealed(stored.GetPrivateKey()) || stored.GetCertificate() != cert {
		t.Fatalf("stored auth: key sealed %v", secretbox.IsSealed(stored.GetPrivateKey()))
	}
	if a, err := subscription.OpenAuth(box, e.stored(id)); err != nil || a.GetPrivateKey() != key {
		t.Fatalf("the stored key does not open to the key: %v", err)
	}
	bad := e.do("POST", "/v1/subscriptions", body(otherKey))
	expect(t, bad, http.StatusUnprocessableEntity)
	if !hasFieldError(t, bad, "auth.private_key", "matching") || strings.Contains(string(bad.Body), "PRIVATE KEY") {
		t.Fatalf("a mismatched key: %s", bad.Body)
	}
	for _, entry := range e.logs.All() {
		if strings.Contains(fmt.Sprint(entry.Message, entry.ContextMap()), keyBody) {
			t.Fatalf("a log line holds the private key")
		}
	}
}

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/hookline/hookline/pkg/fixture"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestOpenAPI: the document served at /openapi.json is a valid OpenAPI 3.1
// document (libopenapi-validator), and every documented operation, called
// on a real producer, answers what the document says — successes and
// problems alike.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	raw := e.do("GET", "/openapi.json", nil)
	expect(t, raw, http.StatusOK)
	doc, err := libopenapi.NewDocument(raw.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, ve := range verrs {
			t.Errorf("document: %s: %s", ve.Message, ve.Reason)
		}
		t.FailNow()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["order.*"]}`)
	expect(t, sub, http.StatusCreated)
	subID := sub.json(t)["id"].(string)
	doomed := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/d","event_types":["a"]}`)
	expect(t, doomed, http.StatusCreated)
	doomedID := doomed.json(t)["id"].(string)
	ev := e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","data":{"n":1}}`)
	expect(t, ev, http.StatusAccepted)
	evID := ev.json(t)["id"].(string)
	dl1, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: evID, Tenant: "acme", SubscriptionId: subID, EventType: "order.created", LastStatus: 500})
	if err != nil {
		t.Fatal(err)
	}
	dl2, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: evID, Tenant: "acme", SubscriptionId: subID, EventType: "order.created", LastStatus: 0, Reason: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.Attempts(ctx, e.js,
		&hooklinev1.Attempt{EventId: evID, Tenant: "acme", SubscriptionId: subID, EventType: "order.created", Attempt: 1, Status: 500, Outcome: "retry", Error: "HTTP 500"},
		&hooklinev1.Attempt{EventId: evID, Tenant: "acme", SubscriptionId: subID, EventType: "order.created", Attempt: 2, Status: 200, Outcome: "success"}); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		token, method, path, body string
		status                    int
	}{
		{tokPublishAcme, "POST", "/v1/events", `{"tenant":"acme","type":"order.paid","data":[1,2]}`, 202},
		{tokPublishAcme, "POST", "/v1/events", `{"tenant":"acme","type":"","data":{}}`, 422},
		{tokPublishAcme, "POST", "/v1/events/batch", `{"events":[{"tenant":"acme","type":"order.paid","data":"x"}]}`, 202},
		{tokAdmin, "GET", "/v1/events?tenant=acme&limit=1", "", 200},
		{tokAdmin, "GET", "/v1/events?limit=nope", "", 400},
		{tokAdminAcme, "GET", "/v1/events/" + evID, "", 200},
		{tokAdminAcme, "GET", "/v1/events/nope", "", 404},
		{tokAdminAcme, "GET", "/v1/events/" + evID + "/deliveries", "", 200},
		{tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/x","event_types":["b"],"signature_scheme":"v1a"}`, 201},
		{tokAdmin, "GET", "/v1/subscriptions?tenant=acme&limit=1", "", 200},
		{tokAdmin, "GET", "/v1/subscriptions/" + subID, "", 200},
		{tokAdmin, "PATCH", "/v1/subscriptions/" + subID, `{"description":"orders","disabled":true}`, 200},
		{tokAdmin, "PATCH", "/v1/subscriptions/" + subID, `{"disabled":false}`, 200},
		{tokAdmin, "POST", "/v1/subscriptions/" + subID + "/rotate-secret", "", 200},
		{tokAdmin, "POST", "/v1/subscriptions/" + subID + "/test", "", 202},
		{tokAdmin, "DELETE", "/v1/subscriptions/" + doomedID, "", 204},
		{tokAdmin, "GET", "/v1/subscriptions/" + doomedID, "", 404},
		{tokAdminAcme, "GET", "/v1/subscriptions/" + subID + "/attempts?limit=1", "", 200},
		{tokAdminAcme, "GET", "/v1/subscriptions/" + subID + "/attempts?outcome=x", "", 400},
		{tokAdminAcme, "GET", "/v1/tenants/acme", "", 200},
		{tokAdminAcme, "PUT", "/v1/tenants/acme", `{"defaults":{"retry_schedule":["0s","1m"],"attempt_timeout":"10s","max_in_flight":4,"payload_format":"raw"},"metadata":{"plan":"gold"}}`, 200},
		{tokAdminAcme, "PUT", "/v1/tenants/acme", `{"defaults":{"retry_schedule":["1s"]}}`, 422},
		{tokAdminAcme, "PUT", "/v1/tenants/globex", `{}`, 403},
		{tokAdminAcme, "GET", "/v1/subscriptions/" + subID + "/effective-policy", "", 200},
		{tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/u","event_types":["u"],"uid":"ext-1","metadata":{"k":"v"},"attempt_timeout":"2s"}`, 201},
		{tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/u","event_types":["u"],"uid":"ext-1"}`, 409},
		{tokAdminAcme, "GET", "/v1/subscriptions/" + subID + "/stats?window=24h", "", 200},
		{tokAdminAcme, "GET", "/v1/subscriptions/" + subID + "/stats?window=2d", "", 400},
		{tokAdminAcme, "GET", "/v1/dead-letters?limit=1", "", 200},
		{tokAdminAcme, "GET", "/v1/dead-letters?tenant=globex", "", 403},
		{"", "GET", "/v1/dead-letters", "", 401},
		{tokAdminAcme, "GET", fmt.Sprintf("/v1/dead-letters/%d", dl1), "", 200},
		{tokAdmin, "DELETE", fmt.Sprintf("/v1/dead-letters/%d", dl2), "", 204},
		{tokAdmin, "DELETE", fmt.Sprintf("/v1/dead-letters/%d", dl2), "", 404},
		{"", "GET", "/livez", "", 200},
		{"", "GET", "/readyz", "", 200},
		{"", "GET", "/metrics", "", 200},
		{"", "GET", "/openapi.json", "", 200},
	}
	called := map[string]bool{}
	// hdr: header name, value pairs.
	call := func(token, method, path, body string, status int, hdr ...string) []byte {
		t.Helper()
		req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, b)
			return b
		}
		// Fresh readers for the validator.
		vreq, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
		vreq.Header = req.Header.Clone()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.Request = vreq
		// A refused request is meant to break the document's rules: only
		// its answer is checked then.
		check := v.ValidateHttpRequestResponse
		if status >= 400 {
			check = v.ValidateHttpResponse
		}
		if ok, verrs := check(vreq, resp); !ok {
			for _, ve := range verrs {
				t.Errorf("%s %s → %d: %s: %s %v", method, path, status, ve.Message, ve.Reason, ve.SchemaValidationErrors)
			}
		}
		called[method+" "+templated(path)] = true
		return b
	}
	for _, c := range calls {
		call(c.token, c.method, c.path, c.body, c.status)
	}
	// Idempotency-Key: the first answer, its replay, another body.
	for _, body := range []string{`{"tenant":"acme","type":"order.paid","data":7}`, `{"tenant":"acme","type":"order.paid","data":7}`} {
		call(tokPublishAcme, "POST", "/v1/events", body, 202, "Idempotency-Key", "openapi-1")
	}
	call(tokPublishAcme, "POST", "/v1/events", `{"tenant":"acme","type":"order.paid","data":8}`, 422, "Idempotency-Key", "openapi-1")
	call(tokPublishAcme, "POST", "/v1/events", `{"tenant":"acme","type":"order.paid","data":8}`, 400, "Idempotency-Key", strings.Repeat("k", 256))
	call(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/i","event_types":["i"]}`, 201, "Idempotency-Key", "openapi-2")
	call(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/i","event_types":["i"]}`, 201, "Idempotency-Key", "openapi-2")
	// Replay jobs: a dry run, a slow job (cancelled while it runs), and
	// one that finished (cancel refused).
	fixture.Replayer(t, e.nats)
	for i := range 3 {
		if _, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: fmt.Sprintf("evt_r%d", i), Tenant: "acme", SubscriptionId: "sub_R", EventType: "order.created"}); err != nil {
			t.Fatal(err)
		}
	}
	call(tokAdminAcme, "POST", "/v1/replays", `{"source":"dead_letters","subscription_id":"sub_R","dry_run":true}`, 200)
	call(tokAdminAcme, "POST", "/v1/replays", `{"source":"nope"}`, 422)
	slow := jsonField(t, call(tokAdminAcme, "POST", "/v1/replays", `{"source":"dead_letters","subscription_id":"sub_R","rate":0.2}`, 202), "id")
	call(tokAdminAcme, "GET", "/v1/replays/"+slow, "", 200)
	call(tokAdminAcme, "DELETE", "/v1/replays/"+slow, "", 200)
	call(tokAdminAcme, "DELETE", "/v1/replays/"+slow, "", 409)
	call(tokAdminAcme, "GET", "/v1/replays/rpl_nope", "", 404)
	// Health and portal sessions.
	call(tokAdminAcme, "GET", "/v1/subscriptions/"+subID+"/health", "", 200)
	session := call(tokAdminAcme, "POST", "/v1/tenants/acme/portal-sessions", `{"subscription_ids":["`+subID+`"],"read_only":true,"ttl_seconds":300}`, 201)
	call(tokAdminAcme, "POST", "/v1/tenants/acme/portal-sessions", `{"ttl_seconds":1}`, 422)
	call(tokAdminAcme, "DELETE", "/v1/tenants/acme/portal-sessions/"+jsonField(t, session, "id"), "", 204)
	call(tokAdminAcme, "DELETE", "/v1/tenants/acme/portal-sessions", "", 204)
	call(tokAdminAcme, "DELETE", "/v1/tenants/globex/portal-sessions", "", 403)
	// Every documented operation was called.
	for path, item := range (*doc.GetSpecInfo().GetSpecJSON())["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			if !called[strings.ToUpper(method)+" "+path] {
				t.Errorf("documented %s %s was not called", strings.ToUpper(method), path)
			}
		}
	}
}

var idSegment = regexp.MustCompile(`/(sub_[0-9A-Z]+|evt_[0-9A-Z]+|nope|[0-9]+)(/|$)`)

func jsonField(t *testing.T, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	v, _ := m[key].(string)
	return v
}

// templated turns a called path back into its documented template.
func templated(p string) string {
	p, _, _ = strings.Cut(p, "?")
	switch {
	case strings.HasPrefix(p, "/v1/subscriptions/"):
		return idSegment.ReplaceAllString(p, "/{id}$2")
	case strings.HasSuffix(p, "/deliveries"):
		return "/v1/events/{id}/deliveries"
	case strings.HasPrefix(p, "/v1/events/") && p != "/v1/events/batch":
		return "/v1/events/{id}"
	case strings.HasPrefix(p, "/v1/dead-letters/"):
		return "/v1/dead-letters/{seq}"
	case strings.HasPrefix(p, "/v1/replays/"):
		return "/v1/replays/{id}"
	case strings.HasPrefix(p, "/v1/tenants/"):
		parts := strings.Split(p, "/")
		parts[3] = "{tenant}"
		if len(parts) > 5 {
			parts[5] = "{id}"
		}
		return strings.Join(parts, "/")
	}
	return p
}

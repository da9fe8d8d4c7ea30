package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestPayloadFormatDefaults: a new subscription gets the envelope unless
// it asks for raw; a record stored before the field existed stays raw
// (absent), also after an unrelated PATCH; a bad value is a 422 that says
// which values are allowed.
func TestPayloadFormatDefaults(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/a","event_types":["a"]}`)
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	if got := r.json(t)["payload_format"]; got != "envelope" {
		t.Fatalf("default payload_format %v", got)
	}
	if got := e.stored(id).GetPayloadFormat(); got != subscription.PayloadEnvelope {
		t.Fatalf("stored payload_format %q", got)
	}
	r = e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/b","event_types":["a"],"payload_format":"raw"}`)
	expect(t, r, http.StatusCreated)
	if got := r.json(t)["payload_format"]; got != "raw" {
		t.Fatalf("payload_format %v", got)
	}
	p := e.do("PATCH", "/v1/subscriptions/"+id, `{"payload_format":"raw"}`)
	expect(t, p, http.StatusOK)
	if got := e.stored(id).GetPayloadFormat(); got != subscription.PayloadRaw {
		t.Fatalf("after PATCH: %q", got)
	}
	for _, body := range []string{
		`{"tenant":"acme","url":"https://hooks.example.com/c","event_types":["a"],"payload_format":"json"}`,
	} {
		bad := e.do("POST", "/v1/subscriptions", body)
		expect(t, bad, http.StatusUnprocessableEntity)
		if !strings.Contains(string(bad.Body), `"payload_format"`) || !strings.Contains(string(bad.Body), "envelope") {
			t.Fatalf("422 %s", bad.Body)
		}
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"payload_format":""}`), http.StatusUnprocessableEntity)

	// A record written before payload_format existed.
	ctx := context.Background()
	store, err := subscription.NewStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := signing.NewHMACSecret()
	legacy := &hooklinev1.Subscription{Id: "sub_01JLEGACYFORMAT00000000000", Tenant: "acme", Url: "https://old.example/in",
		EventTypes: []string{"a"}, Keys: []*hooklinev1.SigningKey{{Secret: secret}}, SignatureScheme: "v1"}
	if _, err := store.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+legacy.Id, `{"description":"touched"}`), http.StatusOK)
	if got := e.stored(legacy.Id).GetPayloadFormat(); got != "" {
		t.Fatalf("a legacy record became %q", got)
	}
}

// TestCustomHeadersAreWriteOnly: custom headers are sealed in the KV and
// Redis records, shown as REDACTED in every answer, kept by REDACTED on a
// PATCH, replaced or removed by a new set, and never logged; bad names and
// values are 422s naming the header and the reason.
func TestCustomHeadersAreWriteOnly(t *testing.T) {
	t.Parallel()
	keyB64, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": keyB64})
	noLeak, atRestIn := e.leakChecks(t, "t0k_s3cret", "n3w_s3cret")
	atRest := func(id string) { t.Helper(); atRestIn("acme", id) }
	opened := func(id string) map[string]string {
		t.Helper()
		h, err := subscription.OpenHeaders(box, e.stored(id))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/a","event_types":["a"],`+
		`"headers":{"authorization":"Bearer t0k_s3cret","X-Region":"eu"}}`)
	expect(t, r, http.StatusCreated)
	noLeak("the create answer", r.Body)
	id := r.json(t)["id"].(string)
	if got := fmt.Sprint(r.json(t)["headers"]); got != "map[Authorization:REDACTED X-Region:REDACTED]" {
		t.Fatalf("create answered headers %s", got)
	}
	atRest(id)
	if h := opened(id); h["Authorization"] != "Bearer t0k_s3cret" || h["X-Region"] != "eu" || len(h) != 2 {
		t.Fatalf("stored headers open to %v", h)
	}
	for _, path := range []string{"/v1/subscriptions/" + id, "/v1/subscriptions?tenant=acme"} {
		g := e.do("GET", path, nil)
		expect(t, g, http.StatusOK)
		noLeak("GET "+path, g.Body)
		if !strings.Contains(string(g.Body), `"Authorization":"REDACTED"`) {
			t.Fatalf("GET %s: %s", path, g.Body)
		}
	}

	// Sending the answer back keeps the values; a new value replaces one,
	// and a header left out is removed.
	p := e.do("PATCH", "/v1/subscriptions/"+id, `{"headers":{"Authorization":"REDACTED","X-Region":"us"}}`)
	expect(t, p, http.StatusOK)
	if h := opened(id); h["Authorization"] != "Bearer t0k_s3cret" || h["X-Region"] != "us" {
		t.Fatalf("after PATCH: %v", h)
	}
	p = e.do("PATCH", "/v1/subscriptions/"+id, `{"headers":{"Authorization":"Bearer n3w_s3cret"}}`)
	expect(t, p, http.StatusOK)
	noLeak("the PATCH answer", p.Body)
	atRest(id)
	if h := opened(id); h["Authorization"] != "Bearer n3w_s3cret" || len(h) != 1 {
		t.Fatalf("after PATCH: %v", h)
	}
	// A PATCH without headers leaves them alone.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"description":"x"}`), http.StatusOK)
	if h := opened(id); h["Authorization"] != "Bearer n3w_s3cret" {
		t.Fatalf("after an unrelated PATCH: %v", h)
	}

	bad := []struct{ headers, field, reason string }{
		{`{"Connection":"close"}`, "headers.Connection", "hop-by-hop"},
		{`{"transfer-encoding":"chunked"}`, "headers.transfer-encoding", "hop-by-hop"},
		{`{"Host":"evil.example"}`, "headers.Host", "subscription URL"},
		{`{"Content-Type":"text/plain"}`, "headers.Content-Type", "set by Hookline"},
		{`{"Content-Length":"1"}`, "headers.Content-Length", "set by Hookline"},
		{`{"User-Agent":"x"}`, "headers.User-Agent", "set by Hookline"},
		{`{"webhook-signature":"v1,x"}`, "headers.webhook-signature", "webhook-*"},
		{`{"Hookline-Event-Type":"x"}`, "headers.Hookline-Event-Type", "Hookline-*"},
		{`{"X-A":"a\r\nX-Injected: 1"}`, "headers.X-A", "CR or LF"},
		{`{"Bad Name":"v"}`, "headers.Bad Name", "HTTP token"},
		{`{"X-Empty":""}`, "headers.X-Empty", "must not be empty"},
		{`{"X-Big":"` + strings.Repeat("v", subscription.MaxHeaderValueLen+1) + `"}`, "headers.X-Big", "at most"},
		{`{"X-Dup":"1","x-dup":"2"}`, "headers.x-dup", "same header"},
		{`{"X-Token":"REDACTED"}`, "headers.X-Token", "REDACTED"},
	}
	for _, b := range bad {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://hooks.example.com/b","event_types":["a"],"headers":` + b.headers + `}`},
			{"PATCH", "/v1/subscriptions/" + id, `{"headers":` + b.headers + `}`},
		} {
			res := e.do(req.method, req.path, req.body)
			expect(t, res, http.StatusUnprocessableEntity)
			errs, _ := res.json(t)["errors"].([]any)
			found := false
			for _, fe := range errs {
				m := fe.(map[string]any)
				if m["field"] == b.field && strings.Contains(m["message"].(string), b.reason) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s %s: want %s %q, got %s", req.method, b.headers, b.field, b.reason, res.Body)
			}
			if strings.Contains(string(res.Body), "X-Injected") || strings.Contains(string(res.Body), "evil.example") {
				t.Errorf("the 422 quotes the value: %s", res.Body)
			}
		}
	}
	tooMany := map[string]string{}
	for i := range subscription.MaxHeaders + 1 {
		tooMany[fmt.Sprintf("X-H%d", i)] = "v"
	}
	var sb strings.Builder
	for n, v := range tooMany {
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "%q:%q", n, v)
	}
	res := e.do("PATCH", "/v1/subscriptions/"+id, `{"headers":{`+sb.String()+`}}`)
	expect(t, res, http.StatusUnprocessableEntity)
	if !strings.Contains(string(res.Body), `"field":"headers"`) {
		t.Fatalf("too many headers: %s", res.Body)
	}

	// {} removes them all.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"headers":{}}`), http.StatusOK)
	if st := e.stored(id); len(st.GetHeaders()) != 0 {
		t.Fatalf("headers left: %v", st.GetHeaders())
	}
	for _, entry := range e.logs.All() {
		noLeak("a log line", []byte(fmt.Sprint(entry.Message, entry.ContextMap())))
	}
}

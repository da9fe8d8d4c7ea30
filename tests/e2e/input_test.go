package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

// Bad input gets a clear RFC 9457 problem and the right status from the
// real binary, and the producer keeps serving.
func TestBadInputIsRefusedClearly(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	var batch strings.Builder
	batch.WriteString(`{"events":[`)
	for i := range 501 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `{"tenant":"acme","type":"order.created","data":{"i":%d}}`, i)
	}
	batch.WriteString(`]}`)

	// Syntax errors are 400; well-formed requests that fail validation are
	// 422 and name the field at fault.
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{name: "malformed JSON", method: "POST", path: "/v1/events", body: `{"tenant":`, status: 400},
		{name: "unknown field", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"order.created","data":{},"colour":"red"}`, status: 400},
		{name: "missing tenant", method: "POST", path: "/v1/events", body: `{"type":"order.created","data":{}}`, status: 422, field: "tenant"},
		{name: "missing type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","data":{}}`, status: 422, field: "type"},
		{name: "tenant with a dot", method: "POST", path: "/v1/events", body: `{"tenant":"ac.me","type":"order.created","data":{}}`, status: 422, field: "tenant"},
		{name: "wildcard in type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"order.*","data":{}}`, status: 422, field: "type"},
		{name: "batch over 500", method: "POST", path: "/v1/events/batch", body: batch.String(), status: 422, field: "events"},
		{name: "subscription URL not a URL", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"not a url","event_types":["order.created"]}`, status: 422, field: "url"},
		{name: "subscription URL not http", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"ftp://example.com/x","event_types":["order.created"]}`, status: 422, field: "url"},
		{name: "subscription without event types", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com/x","event_types":[]}`, status: 422, field: "event_types"},
		{name: "unknown subscription", method: "GET", path: "/v1/subscriptions/sub_doesnotexist", status: 404},
	}
	t.Run("requests", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				req, err := http.NewRequest(tt.method, s.Producer.URL()+tt.path, strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d; want %d (%s)", resp.StatusCode, tt.status, body)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
					t.Fatalf("Content-Type %q; want application/problem+json (%s)", ct, body)
				}
				var p struct {
					Title  string `json:"title"`
					Status int    `json:"status"`
					Detail string `json:"detail"`
				}
				if err := json.Unmarshal(body, &p); err != nil || p.Status != tt.status || (p.Title == "" && p.Detail == "") {
					t.Fatalf("not a useful problem document: %s (%v)", body, err)
				}
			})
		}
	})
	// After all of it the producer still accepts a good event.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.API.Publish(ctx, harness.Event{Tenant: "acme", Type: "order.created", Data: []byte(`{}`)}); err != nil {
		t.Errorf("producer after bad input: %v", err)
	}
	if !s.Producer.Running() {
		t.Error("the producer is gone")
	}
}

// The services take no command line: an unknown flag or argument stops
// them with exit status 2 and says where the configuration comes from;
// --help lists the variables and --version the version.
func TestServicesRefuseUnknownFlags(t *testing.T) {
	t.Parallel()
	bins := harness.Build(t)
	for name, bin := range map[string]string{"producer": bins.Producer, "deliverer": bins.Deliverer} {
		run := func(args ...string) (stdout, stderr string, code int) {
			t.Helper()
			var out, errb strings.Builder
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			// Nothing reachable: a binary that ignored the flag and started
			// would fail differently (exit 1, a connection error).
			cmd.Env = []string{"HOOKLINE_NATS_URL=nats://127.0.0.1:1", "HOOKLINE_REDIS_URL=redis://127.0.0.1:1/0"}
			err := cmd.Run()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("%s %v: %v", name, args, err)
			}
			return out.String(), errb.String(), cmd.ProcessState.ExitCode()
		}
		for _, flag := range []string{"--foo", "-nats-url=x", "serve"} {
			_, stderr, code := run(flag)
			if code != 2 || !strings.Contains(stderr, fmt.Sprintf("%q", flag)) || !strings.Contains(stderr, "HOOKLINE_") {
				t.Errorf("%s %s: exit %d, stderr %q; want exit 2 naming the flag and the environment", name, flag, code, stderr)
			}
		}
		stdout, _, code := run("--help")
		if code != 0 || !strings.Contains(stdout, "  HOOKLINE_NATS_URL (default \"nats://127.0.0.1:4222\")\n") {
			t.Errorf("%s --help: exit %d, stdout %q", name, code, stdout)
		}
		if stdout, _, code := run("--version"); code != 0 || !strings.HasPrefix(stdout, name+" ") {
			t.Errorf("%s --version: exit %d, stdout %q", name, code, stdout)
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/cmd/hookctl/internal/producer"
	"github.com/hookline/hookline/cmd/hookctl/internal/timeflag"
	"github.com/hookline/hookline/pkg/deadletter"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("boom"), ExitFailure},
		{"usage", usageErr(errors.New("bad flag")), ExitUsage},
		{"refused", refusedErr(errors.New("no")), ExitRefused},
		{"not found seq", fmt.Errorf("seq 3: %w", deadletter.ErrNotFound), ExitNotFound},
		{"interrupted", fmt.Errorf("x: %w", deadletter.ErrInterrupted), ExitInterrupted},
		{"ctrl-c while listing", fmt.Errorf("read: %w", context.Canceled), ExitInterrupted},
		{"api 404", &producer.Problem{Status: 404}, ExitNotFound},
		{"api 422", &producer.Problem{Status: 422}, ExitUsage},
		{"api 500", &producer.Problem{Status: 500}, ExitFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ExitCode(tc.err); got != tc.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestLoadConfigAndFlags(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(map[string]string{
		"HOOKLINE_NATS_URL":   "nats://env:4222",
		"HOOKLINE_NATS_CREDS": "/env.creds",
		"HOOKLINE_API_TOKEN":  "tok",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIURL != "http://localhost:8080" || cfg.APIToken != "tok" {
		t.Fatalf("config %+v", cfg)
	}
	a := New(cfg, IO{})
	a.natsURL = "nats://flag:4222"
	got := a.natsConfig()
	if got.URL != "nats://flag:4222" || got.Creds != "/env.creds" {
		t.Fatalf("flags over env: %+v", got)
	}
	bad := cfg
	bad.NATS.TLSCert = "/cert.pem"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "HOOKLINE_NATS_TLS_KEY") || ExitCode(err) != ExitUsage {
		t.Fatalf("Validate() = %v, want a usage error naming HOOKLINE_NATS_TLS_KEY", err)
	}
}

func TestResumeArgsPinTheSelection(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	f := selectionFlags{subscription: "sub_1", types: []string{"order.*"}, status: "5xx", limit: 50}
	f.since = timeflag.Value{Now: func() time.Time { return now }}
	if err := f.since.Set("6h"); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(f.resumeArgs(42), " ")
	want := "--subscription=sub_1 --type='order.*' --status=5xx --since=2026-11-28T06:00:00Z --max-seq=42"
	if got != want {
		t.Fatalf("resumeArgs = %q, want %q", got, want)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sub_1":           "sub_1",
		"order.*":         "'order.*'", // a glob otherwise
		"a b":             "'a b'",
		"it's":            `'it'\''s'`,
		"":                "''",
		"/path/x.creds":   "/path/x.creds",
		"nats://h:4222,x": "nats://h:4222,x",
		"$(rm -rf /)":     "'$(rm -rf /)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		terminal bool
		input    string
		yes      bool
		wantCode int
	}{
		{"yes flag", false, "", true, ExitOK},
		{"no terminal", false, "y\n", false, ExitRefused},
		{"terminal y", true, "y\n", false, ExitOK},
		{"terminal yes", true, "YES\n", false, ExitOK},
		{"terminal n", true, "n\n", false, ExitRefused},
		{"terminal empty", true, "\n", false, ExitRefused},
		{"terminal eof", true, "", false, ExitRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var errOut bytes.Buffer
			a := New(Config{}, IO{In: strings.NewReader(tc.input), Out: &bytes.Buffer{}, Err: &errOut, InTerminal: tc.terminal})
			if got := ExitCode(a.confirm("Delete?", tc.yes)); got != tc.wantCode {
				t.Fatalf("confirm exit %d, want %d", got, tc.wantCode)
			}
			if tc.terminal && !tc.yes && !strings.Contains(errOut.String(), "Delete? [y/N] ") {
				t.Fatalf("prompt %q", errOut.String())
			}
		})
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	results := []deadletter.Result{
		{Seq: 7, EventID: "evt_1", SubscriptionID: "sub_1", Outcome: deadletter.Replayed, TaskSeq: 70},
		{Seq: 8, EventID: "evt_2", SubscriptionID: "sub_1", Outcome: deadletter.Replayed, TaskSeq: 71, Duplicate: true},
		{Seq: 9, Outcome: deadletter.Gone},
	}
	t.Run("lines when stdout is not a terminal", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		a := New(Config{}, IO{Out: &out, Err: &bytes.Buffer{}})
		p := a.newProgress(len(results), "replaying", false)
		for i, r := range results {
			p.step(i+1, r)
		}
		p.finish()
		want := "[1/3] replayed seq 7  event evt_1  subscription sub_1  → DELIVERIES seq 70\n" +
			"[2/3] replayed seq 8  event evt_2  subscription sub_1  → DELIVERIES seq 71 (published by an earlier run already; not published again)\n" +
			"[3/3] seq 9 left DEADLETTER meanwhile (replayed or purged by someone else); skipped\n"
		if out.String() != want {
			t.Fatalf("progress:\n%s\nwant:\n%s", out.String(), want)
		}
	})
	t.Run("a bar on a terminal", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		a := New(Config{}, IO{Out: &out, Err: &bytes.Buffer{}, OutTerminal: true})
		p := a.newProgress(len(results), "replaying", false)
		for i, r := range results {
			p.step(i+1, r)
		}
		p.finish()
		if s := out.String(); !strings.Contains(s, "replaying") || !strings.Contains(s, "3/3") || strings.Contains(s, "[1/3]") {
			t.Fatalf("bar output %q: want the description and 3/3, no lines", s)
		}
	})
	t.Run("lines on stderr under --json", func(t *testing.T) {
		t.Parallel()
		var out, errOut bytes.Buffer
		a := New(Config{}, IO{Out: &out, Err: &errOut, OutTerminal: true})
		p := a.newProgress(1, "replaying", true)
		p.step(1, results[0])
		p.finish()
		if out.Len() != 0 || !strings.HasPrefix(errOut.String(), "[1/1] replayed seq 7") {
			t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
		}
	})
}

func TestPJIsSnakeCase(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := writeJSON(&buf, map[string]any{"x": pj(&hooklinev1.DeadLetter{EventId: "evt_1", LastStatus: 503})}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"x\": {\n    \"event_id\": \"evt_1\",\n    \"last_status\": 503\n  }\n}\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

// replay and purge act on SEQ arguments, filters or --all, never on the
// whole stream by accident: a usage error says what to give.
func TestToChangeNeedsASelection(t *testing.T) {
	for _, tt := range []struct {
		f    selectionFlags
		args []string
		all  bool
		want string // in the usage error; "" for none
	}{
		{args: []string{"42"}},
		{f: selectionFlags{subscription: "sub_1"}},
		{all: true},
		{want: "purge what? give SEQ arguments"},
		{args: []string{"42"}, all: true, want: "--all selects every dead letter"},
		{f: selectionFlags{tenant: "acme"}, all: true, want: "--all selects every dead letter"},
	} {
		_, err := tt.f.toChange(tt.args, tt.all, "purge")
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != ExitUsage {
			t.Errorf("%+v: %v (exit %d); want a usage error with %q", tt, err, ExitCode(err), tt.want)
		}
	}
}

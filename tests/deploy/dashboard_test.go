package deploy_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookline/hookline/tests/monitoring"
)

var updateDashboard = flag.Bool("update-dashboard", false, "rewrite deploy/monitoring/dashboard.json from tests/monitoring")

// TestDashboardIsCurrent: the committed dashboard is what tests/monitoring
// generates (run with -update-dashboard after changing the generator).
func TestDashboardIsCurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "deploy", "monitoring", "dashboard.json")
	want, err := monitoring.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if *updateDashboard {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `cd tests && go test ./deploy -run TestDashboardIsCurrent -update-dashboard` and commit it", path)
	}
}

type dashboardJSON struct {
	UID    string `json:"uid"`
	Panels []struct {
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboardUsesRegisteredMetrics: every panel the SRE needs is there,
// on the dashboard's Prometheus variable, and queries only metrics the
// services register.
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != monitoring.UID {
		t.Errorf("uid %q", d.UID)
	}
	known := registeredMetrics(t, root)
	used := map[string]bool{}
	titles := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		titles[p.Title] = true
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: not on the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, q := range p.Targets {
			// Grafana's interval variables are durations to the parser.
			expr := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(q.Expr)
			names, err := metricNames(expr)
			if err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, q.Expr, err)
			}
			for _, n := range names {
				used[n] = true
				if !known[n] {
					t.Errorf("panel %q queries %s, which no service registers", p.Title, n)
				}
			}
		}
	}
	for _, title := range []string{"Delivery attempts", "Success ratio", "Attempt latency", "Retries and dead letters",
		"Admission refusals", "Admission deferrals", "Circuit breakers", "Ordered delivery", "Tasks waiting in line"} {
		if !titles[title] {
			t.Errorf("no panel %q", title)
		}
	}
	for _, n := range []string{"hookline_attempts_total", "hookline_attempt_duration_seconds_bucket", "hookline_dead_letters_total",
		"hookline_admission_refused_total", "hookline_admission_deferred_total", "hookline_breaker_opened_total", "hookline_ordering_waiting"} {
		if !used[n] {
			t.Errorf("no panel queries %s", n)
		}
	}
}

package deploy_test

import (
	"bufio"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// runbookURL is where the alerts' runbook_url annotations point: sections
// of docs/monitoring.md.
const runbookURL = "https://github.com/hookline/hookline/blob/main/docs/monitoring.md#"

// promtool is Debian's (package prometheus), installed by `make test-deps`.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `make test-deps` (it installs Debian's prometheus package)")
	}
	return p
}

func TestAlertRulesPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	dir := filepath.Join(repoRoot(t), "deploy", "monitoring")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// loadRules parses deploy/monitoring/alerts.yaml as Prometheus does.
func loadRules(t *testing.T, root string) *rulefmt.RuleGroups {
	t.Helper()
	rgs, errs := rulefmt.ParseFile(filepath.Join(root, "deploy", "monitoring", "alerts.yaml"), false,
		model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("alerts.yaml: %v", errs)
	}
	return rgs
}

// registeredMetrics are the series names the services expose, from the
// inventories their tests keep current (deploy/monitoring/metrics), with
// the series of histograms and summaries, and Prometheus's own `up`.
func registeredMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy", "monitoring", "metrics", "*.txt"))
	if err != nil || len(files) != 2 {
		t.Fatalf("metric inventories: %v %v, want the deliverer's and the producer's", files, err)
	}
	names := map[string]bool{"up": true}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, kind, ok := strings.Cut(line, " ")
			if !ok {
				t.Fatalf("%s: %q is not `name type`", f, line)
			}
			names[name] = true
			switch kind {
			case "histogram":
				names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
			case "summary":
				names[name+"_sum"], names[name+"_count"] = true, true
			}
		}
		_ = fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if !names["hookline_attempts_total"] || !names["hookline_events_published_total"] {
		t.Fatalf("inventories lack the services' core metrics: %v", names)
	}
	return names
}

// metricNames returns the metric names expr selects; a selector without
// an exact name (a regular expression on __name__) is an error.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				if m.Type != labels.MatchEqual {
					bad = &nameError{m.String()}
				}
				name = m.Value
			}
		}
		names = append(names, name)
		return nil
	})
	return names, bad
}

type nameError struct{ matcher string }

func (e *nameError) Error() string { return "selector without an exact metric name: " + e.matcher }

func TestMetricNamesChecker(t *testing.T) {
	t.Parallel()
	names, err := metricNames(`sum(rate(hookline_a_total{x="1"}[5m])) / on() group_left max({__name__="hookline_b"}) unless up`)
	if err != nil || !slices.Equal(names, []string{"hookline_a_total", "hookline_b", "up"}) {
		t.Errorf("names %v, %v", names, err)
	}
	if _, err := metricNames(`{__name__=~"hookline_.*"}`); err == nil {
		t.Error("a regular expression on __name__ is accepted")
	}
}

// TestAlertRulesUseRegisteredMetrics: a rule on a metric no service
// registers never fires; every name is checked against the inventories.
func TestAlertRulesUseRegisteredMetrics(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	known := registeredMetrics(t, root)
	rgs := loadRules(t, root)
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			names, err := metricNames(r.Expr)
			if err != nil {
				t.Errorf("%s%s: %v", r.Alert, r.Record, err)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("%s%s uses %s, which no service registers", r.Alert, r.Record, n)
				}
			}
		}
	}
}

// githubAnchors are the anchors GitHub gives the headings of the Markdown
// file at rel (a path from the repository root).
func githubAnchors(t *testing.T, root, rel string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	anchors, seen := map[string]bool{}, map[string]int{}
	inCode := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if n := seen[a]; n > 0 {
			anchors[a+"-"+string(rune('0'+n))] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestAlertRulesAreDocumentedAndTested: every alert has a severity, a
// summary, a runbook_url into a section of docs/monitoring.md that exists, and a
// promtool case in which it fires.
func TestAlertRulesAreDocumentedAndTested(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	anchors := githubAnchors(t, root, "docs/monitoring.md")
	if !anchors["alerts"] {
		t.Error(`docs/monitoring.md has no "Alerts" section`)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "monitoring", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(b, &rt); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range loadRules(t, root).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, runbookURL)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is not a section of docs/monitoring.md (%s<anchor>)", r.Alert, u, runbookURL)
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no case of alerts_test.yaml expects it to fire", r.Alert)
			}
		}
	}
	if alerts < 8 {
		t.Errorf("%d alerts, want at least 8", alerts)
	}
}

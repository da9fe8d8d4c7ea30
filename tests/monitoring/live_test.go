package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// alert is one entry of Prometheus' /api/v1/alerts.
type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
	Value  string            `json:"value"`
}

// shortFor is how long a rule's condition must hold in this test: the
// shipped rules wait minutes (`for: 5m`, `15m`) so that one bad scrape does
// not page anyone; the test keeps their expressions and thresholds as
// shipped and shortens only that wait, so that a real Prometheus shows a
// rule go pending then firing within seconds.
const shortFor = "3s"

var forClause = regexp.MustCompile(`(?m)^(\s+)for: \S+$`)

// rulesForTest is deploy/monitoring/alerts.yaml with every `for:` set to
// shortFor, written into dir.
func rulesForTest(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := len(forClause.FindAll(b, -1))
	if n < 5 {
		t.Fatalf("found %d `for:` clauses in alerts.yaml: the rewrite no longer matches the file", n)
	}
	path := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(path, forClause.ReplaceAll(b, []byte("${1}for: "+shortFor)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startPrometheus runs Debian's prometheus on loopback, scraping the
// producer and the deliverers under the job names the rules select on,
// every second (scrape and rule evaluation: the default minute would make
// the test wait minutes for a handful of samples).
func startPrometheus(t *testing.T, s *harness.Stack) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: run `make test-deps` (Debian's prometheus package)")
	}
	dir := t.TempDir()
	rules := rulesForTest(t, dir)
	var deliverers []string
	for _, d := range s.Deliverers {
		deliverers = append(deliverers, fmt.Sprintf("%q", d.Addr))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: hookline-producer
    static_configs: [{targets: [%q]}]
  - job_name: hookline-deliverer
    static_configs: [{targets: [%s]}]
`, rules, s.Producer.Addr, strings.Join(deliverers, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := harness.FreeAddr(t)
	p := harness.NewProcess(t, "prometheus", bin, []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=warn",
	}, nil)
	p.Ready = harness.HTTPReady("http://" + addr + "/-/ready")
	p.Start()
	return "http://" + addr
}

func alerts(ctx context.Context, base string) ([]alert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("alerts: status %q", body.Status)
	}
	return body.Data.Alerts, nil
}

// upTargets is how many targets Prometheus scrapes up.
func upTargets(ctx context.Context, base string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query=sum(up)", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if len(body.Data.Result) != 1 || len(body.Data.Result[0].Value) != 2 {
		return 0, nil
	}
	var n int
	_, err = fmt.Sscan(fmt.Sprint(body.Data.Result[0].Value[1]), &n)
	return n, err
}

// TestAlertsOnALivePrometheus: a real Prometheus scrapes the running
// producer and deliverer with the shipped rules. A dead endpoint (nothing
// listens on its port) turns its events into dead letters after the retry
// schedule: HooklineDeadLettersRising goes pending, then fires, for reason
// attempts_exhausted, while the alerts of other faults — a service down,
// dispatch stalled, no deliveries, Redis degraded, lag or backlog growing
// — stay silent, and the healthy endpoint beside it keeps receiving.
func TestAlertsOnALivePrometheus(t *testing.T) {
	s := harness.NewStack(t, harness.StackOptions{DefaultSync: true})
	prom := startPrometheus(t, s)
	ctx := t.Context()
	harness.Eventually(t, 30*time.Second, func() error {
		n, err := upTargets(ctx, prom)
		if err != nil || n != 2 {
			return fmt.Errorf("targets up: %d (%v)", n, err)
		}
		return nil
	})

	// Before its first scrape (Prometheus applies discovered targets every
	// few seconds) `absent(up{…})` holds and the down alerts go pending,
	// even firing with this test's short `for`: wait until a healthy stack
	// has no active alert at all.
	harness.Eventually(t, 30*time.Second, func() error {
		as, err := alerts(ctx, prom)
		if err != nil || len(as) != 0 {
			return fmt.Errorf("active alerts on a healthy stack: %v (%v)", as, err)
		}
		return nil
	})

	healthy, _ := s.Subscribe("acme", "healthy", []string{"order.created"}, harness.Status(http.StatusOK))
	if _, err := s.API.CreateSubscription(ctx, "acme", harness.RefusedURL(t), []string{"order.created"}); err != nil {
		t.Fatal(err)
	}
	s.Warmup("acme", "order.created", healthy)
	// More than the rule's threshold (10 of a reason in 15 minutes).
	var last string
	for i := range 15 {
		last = s.Publish("acme", "order.created", fmt.Sprintf("evt_live_%02d", i), `{"n":1}`)
	}
	healthy.AwaitDelivered(t, last, 30*time.Second)

	silent := []string{
		"HooklineDelivererDown", "HooklineProducerDown", "HooklineDispatchStalled", "HooklineNoDeliveries",
		"HooklineRedisDegraded", "HooklineConsumerLagGrowing", "HooklineDeliveryBacklogGrowing", "HooklineDeliveryLatencyHigh",
	}
	var states []string // HooklineDeadLettersRising's states, in the order seen
	harness.Eventually(t, 90*time.Second, func() error {
		as, err := alerts(ctx, prom)
		if err != nil {
			return err
		}
		for _, a := range as {
			// Pending is what `for:` is there for: a scrape of the producer
			// can see an event accepted a second before the deliverer's
			// scrape shows it dispatched. Firing is the failure.
			if slices.Contains(silent, a.Labels["alertname"]) && a.State == "firing" {
				t.Fatalf("%s is %s on a dead endpoint (labels %v)", a.Labels["alertname"], a.State, a.Labels)
			}
			if a.Labels["alertname"] != "HooklineDeadLettersRising" {
				continue
			}
			if a.Labels["reason"] != "attempts_exhausted" || a.Labels["severity"] != "warning" {
				t.Fatalf("HooklineDeadLettersRising with labels %v", a.Labels)
			}
			if len(states) == 0 || states[len(states)-1] != a.State {
				states = append(states, a.State)
			}
			if a.State == "firing" {
				return nil
			}
		}
		return fmt.Errorf("HooklineDeadLettersRising not firing yet (states seen %v, alerts %v)", states, as)
	})
	// Polled several times a second, a 3s pending phase cannot be missed:
	// the rule's `for` is honoured, not skipped.
	if states[0] != "pending" {
		t.Fatalf("HooklineDeadLettersRising went %v: never seen pending before firing", states)
	}
}

package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Env is a set of environment variables for a service.
type Env map[string]string

// With returns a copy of e with the entries of o added or replaced.
func (e Env) With(o Env) Env {
	c := make(Env, len(e)+len(o))
	for k, v := range e {
		c[k] = v
	}
	for k, v := range o {
		c[k] = v
	}
	return c
}

func (e Env) list() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(e))
	for _, k := range keys {
		out = append(out, k+"="+e[k])
	}
	return out
}

// Test settings of both services: a short retry schedule, a short attempt
// timeout and AckWait (so a killed deliverer's tasks come back within
// seconds), loopback receivers allowed, JSON logs, and endpoint health
// scaled down — a circuit breaker that cools down in 200ms instead of 30s.
// The in-flight cap is the default one: tasks over it wait in line.
//
//	attempt:  1    2    3
//	delay:    0s   1s   1s   → dead letter ~2s after the first attempt
//
// AckWait (7s) is the HTTP timeout (2s) plus the deliverer's required margin
// (5s): a task held by a killed deliverer is redelivered 7s later.
var DefaultEnv = Env{
	"HOOKLINE_LOG_FORMAT":           "json",
	"HOOKLINE_ALLOW_PRIVATE_CIDRS":  "127.0.0.0/8",
	"HOOKLINE_RETRY_SCHEDULE":       "0s,1s,1s",
	"HOOKLINE_HTTP_TIMEOUT":         "2s",
	"HOOKLINE_ACK_WAIT":             "7s",
	"HOOKLINE_SHUTDOWN_TIMEOUT":     "10s",
	"HOOKLINE_STREAM_REPLICAS":      "1",
	"HOOKLINE_BREAKER_COOLDOWN":     "200ms",
	"HOOKLINE_BREAKER_MAX_COOLDOWN": "1s",
	// Each test's NATS is fresh and open: the services create the topology
	// themselves. tests/security starts them with "check" after an admin
	// step, as the shipped least-privilege users require.
	"HOOKLINE_TOPOLOGY": "ensure",
}

// BreakerOff disables the circuit breakers, a subscription's (a million
// failures in a row to open it) and its host's, for tests whose failing
// endpoints are the setting, not the subject: with them, attempts to a
// failing endpoint go one probe at a time.
var BreakerOff = Env{"HOOKLINE_BREAKER_FAILURES": "1000000", "HOOKLINE_DESTINATION_BREAKER_FAILURES": "0"}

// Service is a running producer or deliverer.
type Service struct {
	*Process
	// Addr is the HTTP listener (API or health and metrics).
	Addr string
}

// URL is the base URL of the service's HTTP listener.
func (s *Service) URL() string { return "http://" + s.Addr }

// StartProducer starts the producer with env (HOOKLINE_HTTP_ADDR is chosen
// here) and waits until /readyz answers 200.
func StartProducer(tb testing.TB, bins Binaries, name string, env Env) *Service {
	tb.Helper()
	s := newService(tb, name, bins.Producer, env)
	s.Start()
	return s
}

// StartDeliverer starts a deliverer like StartProducer.
func StartDeliverer(tb testing.TB, bins Binaries, name string, env Env) *Service {
	tb.Helper()
	s := newService(tb, name, bins.Deliverer, env)
	s.Start()
	return s
}

func newService(tb testing.TB, name, path string, env Env) *Service {
	tb.Helper()
	addr := FreeAddr(tb)
	env = env.With(Env{"HOOKLINE_HTTP_ADDR": addr})
	s := &Service{Process: NewProcess(tb, name, path, nil, env.list()), Addr: addr}
	s.Ready = HTTPReady("http://" + addr + "/readyz")
	return s
}

// Metrics scrapes /metrics and returns every sample by its full name with
// labels (e.g. `go_goroutines` or `x_total{outcome="success"}`).
func (s *Service) Metrics(ctx context.Context) (map[string]float64, error) {
	return ScrapeMetrics(ctx, s.URL()+"/metrics")
}

// ScrapeMetrics reads a Prometheus text exposition.
func ScrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// name[{labels}] value [timestamp]; label values may hold spaces.
		name, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			name, rest = line[:i+1], line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		val := fields[0]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		out[name] = v
	}
	return out, sc.Err()
}

// Metric returns one sample, failing the test when it is absent.
func (s *Service) Metric(tb testing.TB, name string) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := s.Metrics(ctx)
	if err != nil {
		tb.Fatalf("%s metrics: %v", s.Name, err)
	}
	v, ok := m[name]
	if !ok {
		tb.Fatalf("%s metrics: no %s", s.Name, name)
	}
	return v
}

package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookline/hookline/services/deliverer/internal/admin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, pprof bool, checks map[string]admin.Check) (*admin.Server, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "hookline_test_total", Help: "test"}))
	s := admin.New(admin.Config{Addr: "127.0.0.1:0", Gatherer: reg, Pprof: pprof, Checks: checks})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	var natsDown atomic.Bool
	s, base := serve(t, false, map[string]admin.Check{
		"nats": func(context.Context) error {
			if natsDown.Load() {
				return errors.New("connection RECONNECTING")
			}
			return nil
		},
	})
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before start = %d", code)
	}
	s.SetReady(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	natsDown.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: connection RECONNECTING") {
		t.Fatalf("/readyz with nats down = %d %q", code, body)
	}
	if code, _ := get(t, base+"/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "hookline_test_total") {
		t.Fatalf("/metrics = %d", code)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		enabled bool
		want    int
	}{
		{"disabled", false, http.StatusNotFound},
		{"enabled", true, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, base := serve(t, tt.enabled, nil)
			if code, _ := get(t, base+"/debug/pprof/"); code != tt.want {
				t.Fatalf("/debug/pprof/ = %d, want %d", code, tt.want)
			}
		})
	}
}

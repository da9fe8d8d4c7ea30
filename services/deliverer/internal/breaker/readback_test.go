package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
)

// endpointhealth.Read (what the producer's stats show) reads the circuit
// as the breaker writes it: closed with its streak, open until the
// cool-down or a Retry-After ends, half-open with its probe.
func TestEndpointHealthReadsTheBreaker(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	clk, a, _ := pair(t, srv, breaker.Config{Failures: 3, Cooldown: 10 * time.Second})
	read := func() endpointhealth.State {
		t.Helper()
		st, err := endpointhealth.ReadState(context.Background(), rdb, "sub_h", clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := read(); st.Circuit != endpointhealth.Closed || st.Failures != 0 || st.OpenUntil != nil {
		t.Fatalf("never attempted: %+v", st)
	}
	start := clk.Now()
	mustFail(t, a, "sub_h", 0)
	mustFail(t, a, "sub_h", 0)
	if st := read(); st.Circuit != endpointhealth.Closed || st.Failures != 2 || st.FailingSince == nil || !st.FailingSince.Equal(start.Truncate(time.Millisecond)) {
		t.Fatalf("two failures: %+v", st)
	}
	mustFail(t, a, "sub_h", 0)
	st := read()
	if st.Circuit != endpointhealth.Open || st.OpenUntil == nil || st.OpenUntil.Sub(clk.Now()) != 10*time.Second {
		t.Fatalf("opened: %+v, want open for the 10s cool-down", st)
	}
	clk.Advance(10 * time.Second)
	if d := mustAllow(t, a, "sub_h"); d.Probe == "" {
		t.Fatalf("after the cool-down: %+v, want a probe", d)
	}
	if st := read(); st.Circuit != endpointhealth.HalfOpen || !st.ProbeInFlight {
		t.Fatalf("probing: %+v", st)
	}
	mustFail(t, a, "sub_p", 90*time.Second)
	st, err := endpointhealth.ReadState(context.Background(), rdb, "sub_p", clk.Now())
	if err != nil || st.Circuit != endpointhealth.Open || st.OpenUntil.Sub(clk.Now()) != 90*time.Second {
		t.Fatalf("Retry-After 90s: %+v %v, want open 90s", st, err)
	}
}

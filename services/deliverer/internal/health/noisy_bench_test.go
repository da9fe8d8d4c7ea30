package health_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	noisyRate     = flag.Int("noisy.rate", 100, "BenchmarkNoisyNeighbour: events per second (each to 9 healthy endpoints)")
	noisyDuration = flag.Duration("noisy.duration", 5*time.Second, "BenchmarkNoisyNeighbour: how long events are published")
)

// noisyResult is what the healthy endpoints saw in one scenario.
type noisyResult struct {
	deliveries    int
	perSecond     float64
	p50, p99, max time.Duration
	hangingPeak   int64
	offered       float64
	deferred      map[string]float64
}

// BenchmarkNoisyNeighbour measures nine healthy endpoints — deliveries per
// second and publish→receipt latency — alone; next to an endpoint that
// hangs until the HTTP timeout, without endpoint health (every attempt
// admitted), with the in-flight cap only (breaker off), and with the
// defaults (cap and breaker); then prints them side by side. In process: embedded NATS, a real redis-server,
// one deliverer, loopback HTTP endpoints.
//
//	cd services/deliverer && go test ./internal/health -run '^$' -bench NoisyNeighbour -benchtime 1x [-args -noisy.rate=400 -noisy.duration=10s]
func BenchmarkNoisyNeighbour(b *testing.B) {
	scenarios := []struct {
		name          string
		hanging       bool
		withoutHealth bool
		overrides     map[string]string
	}{
		{name: "no_neighbour"},
		{name: "hanging_neighbour_without_endpoint_health", hanging: true, withoutHealth: true},
		{name: "hanging_neighbour_cap_only", hanging: true, overrides: map[string]string{"HOOKLINE_BREAKER_FAILURES": "1000000", "HOOKLINE_DESTINATION_BREAKER_FAILURES": "0"}},
		{name: "hanging_neighbour_cap_and_breaker", hanging: true},
	}
	results := map[string]noisyResult{}
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) {
			var r noisyResult
			for range b.N {
				r = runNoisy(b, sc.hanging, sc.withoutHealth, sc.overrides)
			}
			b.ReportMetric(r.perSecond, "deliveries/s")
			b.ReportMetric(float64(r.p99)/float64(time.Millisecond), "p99-ms")
			b.ReportMetric(0, "ns/op")
			results[sc.name] = r
			b.Logf("%s: %d healthy deliveries, %.0f/s (offered %.0f/s), p50 %s p99 %s, deferred %v",
				sc.name, r.deliveries, r.perSecond, r.offered, r.p50, r.p99, r.deferred)
		})
	}
	if len(results) != len(scenarios) {
		return // a scenario was filtered out or failed
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "\nnoisy neighbour: 9 healthy endpoints, %d events/s for %s (%d deliveries/s offered); one deliverer, 64 workers, HTTP timeout 5s, in-flight cap 10\n",
		*noisyRate, *noisyDuration, *noisyRate*9)
	fmt.Fprintln(tw, "scenario\thealthy deliveries\tdeliveries/s\tp50\tp99\tmax\thanging peak in flight\trefused full/open\tparked\tdeferred\t")
	for _, sc := range scenarios {
		r := results[sc.name]
		peak := "-"
		if sc.hanging {
			peak = fmt.Sprint(r.hangingPeak)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%.0f/%.0f\t%.0f\t%.0f\t\n", sc.name, r.deliveries, r.perSecond,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.max.Round(10*time.Microsecond), peak,
			r.deferred["in_flight_full"], r.deferred["circuit_open"], r.deferred["parked"], r.deferred["deferred"])
	}
	_ = tw.Flush()
}

func runNoisy(b *testing.B, hanging, withoutHealth bool, overrides map[string]string) noisyResult {
	b.Helper()
	b.StopTimer()
	w := newWorld(b)
	env := map[string]string{
		"HOOKLINE_HTTP_TIMEOUT":    "5s",
		"HOOKLINE_ACK_WAIT":        "15s",
		"HOOKLINE_DELIVER_WORKERS": "64",
		"HOOKLINE_RETRY_SCHEDULE":  "0s,5s,5m,30m",
	}
	for k, v := range overrides {
		env[k] = v
	}
	d := w.startDelivererWith(b, env, withoutHealth)
	var healthy []*receiver
	for range 9 {
		rc := newReceiver(b, nil)
		w.subscribe(b, rc.URL, nil)
		healthy = append(healthy, rc)
	}
	var noisy *receiver
	if hanging {
		noisy = newReceiver(b, nil)
		noisy.respond = noisy.hang
		w.subscribe(b, noisy.URL, nil)
	}

	b.StartTimer()
	// Publish at the rate, paced against the clock (not the acks).
	start := time.Now()
	events := 0
	var futures []jetstream.PubAckFuture
	total := int(noisyDuration.Seconds() * float64(*noisyRate))
	for events < total {
		if due := min(total, int(time.Since(start).Seconds()*float64(*noisyRate))+1); due > events {
			_, fs := w.publishAsync(b, "order.created", due-events)
			futures = append(futures, fs...)
			events = due
		}
		time.Sleep(time.Millisecond) // pacing the publisher
	}
	published := time.Since(start)
	waitAcks(b, futures)
	want := events
	eventually(b, 2*time.Minute, "healthy endpoints receive every event", func() bool {
		for _, rc := range healthy {
			if rc.delivered() < want {
				return false
			}
		}
		return true
	})
	b.StopTimer()

	var lat []time.Duration
	var last time.Time
	for _, rc := range healthy {
		rc.mu.Lock()
		lat = append(lat, rc.latency...)
		if rc.received.After(last) {
			last = rc.received
		}
		rc.mu.Unlock()
	}
	slices.Sort(lat)
	r := noisyResult{
		deliveries: len(lat),
		perSecond:  float64(len(lat)) / last.Sub(start).Seconds(),
		p50:        lat[len(lat)/2],
		p99:        lat[len(lat)*99/100],
		max:        lat[len(lat)-1],
	}
	if noisy != nil {
		r.hangingPeak = noisy.maxInFlight.Load()
	}
	r.offered = float64(events*9) / published.Seconds()
	r.deferred = map[string]float64{}
	for _, reason := range []string{"in_flight_full", "circuit_open", "probe_in_flight", "rate_limited"} {
		r.deferred[reason] = d.counter(b, "hookline_admission_refused_total", map[string]string{"reason": reason})
	}
	r.deferred["parked"] = d.counter(b, "hookline_admission_parked_total", nil)
	r.deferred["deferred"] = d.counter(b, "hookline_tasks_deferred_total", nil)
	r.deferred["degraded"] = d.counter(b, "hookline_admission_degraded_total", nil)
	r.deferred["health_errors"] = d.counter(b, "hookline_health_errors_total", nil)
	return r
}

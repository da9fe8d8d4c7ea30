package health_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// BenchmarkAdmit is the cost of one admission and its result (breaker,
// in-flight cap, no rate limit) against a real redis-server.
func BenchmarkAdmit(b *testing.B) {
	benchmarkAdmit(b, testConfig())
}

// BenchmarkAdmitWithDestination adds the destination's cap and circuit
// (their defaults), nine subscriptions to three hosts.
func BenchmarkAdmitWithDestination(b *testing.B) {
	cfg := testConfig()
	cfg.DestinationMaxInFlight, cfg.DestinationBreakerFailures = 128, 20
	benchmarkAdmit(b, cfg)
}

func benchmarkAdmit(b *testing.B, cfg health.Config) {
	rdb := redistest.Start(b).Client(b)
	h := health.New(cfg, health.Limits{AttemptTimeout: time.Second}, health.Deps{Redis: rdb})
	b.Cleanup(h.Close) // before Redis stops: what is queued is sent
	subs := make([]*hooklinev1.Subscription, 9)
	for i := range subs {
		subs[i] = &hooklinev1.Subscription{Id: "sub_bench_" + string(rune('a'+i)), MaxInFlight: 1000,
			Url: "https://host" + string(rune('a'+i%3)) + ".example/hook"}
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			slot, _, err := h.Admit(context.Background(), subs[i%len(subs)], 0)
			if err != nil || slot == nil {
				b.Fatalf("not admitted: %v", err)
			}
			slot.Release(sender.Result{Status: 200})
		}
	})
}

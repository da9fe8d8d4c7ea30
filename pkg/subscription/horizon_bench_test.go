package subscription

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
)

// BenchmarkHorizon: concurrent lookups asking the registry's revision
// against a real nats-server, reporting lookups/s and the stream-info
// requests/s they cost (go test -run '^$' -bench Horizon ./subscription/).
func BenchmarkHorizon(b *testing.B) {
	ns := natstest.Start(b)
	_, js := ns.Connect(b)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		b.Fatal(err)
	}
	store, err := NewStore(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 16, 128} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			var requests atomic.Int64
			h := newHorizon(func(ctx context.Context) (uint64, error) {
				requests.Add(1)
				return store.LastRevision(ctx)
			})
			var lookups atomic.Int64
			deadline := time.Now().Add(2 * time.Second)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						if _, err := h.Required(ctx); err != nil {
							b.Error(err)
							return
						}
						lookups.Add(1)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(lookups.Load())/2, "lookups/s")
			b.ReportMetric(float64(requests.Load())/2, "requests/s")
		})
	}
}

package publish

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/metrics"
)

// BenchmarkPublish: what the event id marks cost per publish (one event,
// sequential, file storage, default sync): without marks; with marks for a
// generated id (an async mark write); for an id the publisher chose (a
// lookup before the publish, then the mark).
//
//	go test ./internal/publish -run '^$' -bench Publish -benchtime 3000x
func BenchmarkPublish(b *testing.B) {
	for _, c := range []struct {
		name      string
		marks     bool
		generated bool
	}{
		{"marks_off", false, true},
		{"marks_on/generated_id", true, true},
		{"marks_on/chosen_id", true, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			ns := natstest.Start(b)
			nc, js := ns.Connect(b)
			ctx := context.Background()
			if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
				b.Fatal(err)
			}
			p, err := New(nc, Config{Timeout: 5 * time.Second, Metrics: metrics.New()})
			if err != nil {
				b.Fatal(err)
			}
			if c.marks {
				if err := p.BindIDs(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				ev := Event{ID: fmt.Sprintf("evt_bench_%d", i), Generated: c.generated, Tenant: "acme", Type: "order.created",
					OccurredAt: time.Now(), Data: []byte(`{"n":1}`)}
				if _, err := p.Publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

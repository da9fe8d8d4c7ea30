package deadletter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/fixture"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// BenchmarkPage100k: one page of 100 out of 100,000 dead letters and
// 100,000 attempt records (in messages of 4), newest first, oldest first,
// and with a filter only 1 in 1,000 matches (a page then stops after
// scan.DefaultMaxScan messages and returns a cursor). A page holds at most
// its items and one fetch batch, whatever the stream holds. B/op counts
// the embedded nats-server's allocations too (same process).
//
//	go test -run '^$' -bench Page100k -benchtime 20x ./deadletter/
func BenchmarkPage100k(b *testing.B) {
	ctx, js := fixture.Start(b)
	const n = 100_000
	fill(b, ctx, js, n)
	st, err := deadletter.Open(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sel  deadletter.Selection
		desc bool
	}{
		{"dead_letters/newest", deadletter.Selection{}, true},
		{"dead_letters/oldest", deadletter.Selection{}, false},
		{"dead_letters/newest_subscription", deadletter.Selection{Subscription: "sub_7"}, true},
		{"dead_letters/newest_1_in_1000", deadletter.Selection{Reasons: []string{"gone"}}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := st.Page(ctx, tc.sel, tc.desc, nil, 100)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Items) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		f    attempt.Filter
		desc bool
	}{
		{"attempts/newest", attempt.Filter{Query: attempt.Query{Subscription: "sub_1"}}, true},
		{"attempts/oldest", attempt.Filter{Query: attempt.Query{Subscription: "sub_1"}}, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := attempt.Page(ctx, js, tc.f, tc.desc, nil, 100)
				if err != nil || len(res.Items) != 100 {
					b.Fatalf("%d records, %v", len(res.Items), err)
				}
			}
		})
	}
}

func fill(b *testing.B, ctx context.Context, js jetstream.JetStream, n int) {
	b.Helper()
	now := time.Now()
	for i := range n {
		reason := "attempts_exhausted"
		if i%1000 == 0 {
			reason = "gone"
		}
		msg := deadletter.Encode(&hooklinev1.DeadLetter{EventId: fmt.Sprintf("evt_%d", i), Tenant: "acme",
			SubscriptionId: fmt.Sprintf("sub_%d", i%10), EventType: "order.created", Reason: reason, Attempts: 8, LastStatus: 500,
			Data: []byte(`{"order_id":1234567,"amount":"12.00","currency":"EUR"}`)})
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%4 == 3 {
			var as []*hooklinev1.Attempt
			for k := range 4 {
				as = append(as, &hooklinev1.Attempt{EventId: fmt.Sprintf("evt_%d", i-k), Tenant: "acme", SubscriptionId: "sub_1",
					Attempt: 1, Status: 500, Outcome: "retry", Error: "HTTP 500 Internal Server Error", ResponseExcerpt: "oops"})
			}
			var body []byte
			for _, a := range as {
				line, _ := fixture.AttemptLine(a)
				body = append(append(body, line...), '\n')
			}
			if _, err := js.PublishAsync("attempts.acme.sub_1", body); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	b.Logf("stored %d dead letters and %d attempt records in %s", n, n, time.Since(now))
}

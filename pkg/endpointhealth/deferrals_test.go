package endpointhealth_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redistest"
)

// Counts added in several buckets sum over the buckets a window touches,
// by reason; a bucket before the window and another subscription's are
// left out; every bucket's hash expires a day and a bucket after it began.
func TestDeferralsSumTheBucketsOfTheWindow(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	// 2.5 minutes into a bucket that began at most 5 minutes ago (the
	// hashes must not have expired already).
	start := time.Now().UTC().Truncate(endpointhealth.DeferralBucket)
	now := start.Add(150 * time.Second)
	pipe := rdb.Pipeline()
	add := func(sub, reason string, ago time.Duration, n int64) {
		endpointhealth.AddDeferrals(ctx, pipe, sub, reason, now.Add(-ago), n)
	}
	add("sub_1", "rate_limited", 0, 3)
	add("sub_1", "rate_limited", 2*time.Minute, 4) // the same bucket
	add("sub_1", "circuit_open", 10*time.Minute, 2)
	add("sub_1", "rate_limited", 59*time.Minute, 1) // 11:08: bucket 11:05, in an hour's window
	add("sub_1", "rate_limited", 2*time.Hour, 100)  // before it
	add("sub_2", "rate_limited", time.Minute, 50)   // another subscription
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := endpointhealth.ReadDeferrals(ctx, rdb, "sub_1", now.Add(-time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"rate_limited": 8, "circuit_open": 2}
	if got.Total != 10 || len(got.ByReason) != 2 || got.ByReason["rate_limited"] != want["rate_limited"] || got.ByReason["circuit_open"] != want["circuit_open"] {
		t.Fatalf("got %+v, want total 10, by reason %v", got, want)
	}
	if wantSince := start.Add(-time.Hour); !got.Since.Equal(wantSince) {
		t.Fatalf("since %s, want the first bucket's start %s", got.Since, wantSince)
	}
	exp, err := rdb.ExpireTime(ctx, endpointhealth.DeferralsKey("sub_1", now)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// PEXPIRE from the writer's clock: within a second of the bucket's
	// start plus a day and a bucket.
	if wantExp := start.Add(24*time.Hour + endpointhealth.DeferralBucket); (exp - time.Duration(wantExp.Unix())*time.Second).Abs() > time.Second {
		t.Fatalf("bucket expires at unix %v, want %s", exp.Seconds(), wantExp)
	}
	// Nothing counted: zero, not an error.
	none, err := endpointhealth.ReadDeferrals(ctx, rdb, "sub_9", now.Add(-24*time.Hour), now)
	if err != nil || none.Total != 0 || len(none.ByReason) != 0 {
		t.Fatalf("no deferrals: %+v, %v", none, err)
	}
	// Older than what is kept: refused, not silently short.
	if _, err := endpointhealth.ReadDeferrals(ctx, rdb, "sub_1", now.Add(-48*time.Hour), now); err == nil {
		t.Fatal("a window of two days read without an error")
	}
}

package gcra_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/gcra"
	"github.com/hookline/hookline/pkg/redistest"
)

// clock is a test's time of the buckets, moved by hand (each test runs in
// one goroutine).
type clock struct{ now time.Time }

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// A full bucket gives its burst, then one unit per interval; a refused
// request takes nothing and says how long until it fits.
func TestBurstThenInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	clk := newClock()
	r := gcra.Request{PerSecond: 2, Burst: 3, Keys: []string{"hookline:test:{a}"}, Clock: clk.Now}
	for i := range 3 {
		if res, err := gcra.Take(ctx, rdb, r); err != nil || !res.Taken {
			t.Fatalf("request %d of the burst: %+v %v", i+1, res, err)
		}
	}
	for range 2 {
		res, err := gcra.Take(ctx, rdb, r)
		if err != nil || res.Taken || res.Wait != 500*time.Millisecond {
			t.Fatalf("after the burst: %+v %v; want refused, wait 500ms (one interval at 2/s)", res, err)
		}
	}
	clk.Advance(500 * time.Millisecond)
	if res, err := gcra.Take(ctx, rdb, r); err != nil || !res.Taken {
		t.Fatalf("after the wait: %+v %v; want taken", res, err)
	}
}

// A request across buckets is taken from all or none: a bucket without
// room refuses it whole, and the others keep what they had.
func TestAllOrNothingAcrossBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	clk := newClock()
	take := func(units []int, keys ...string) gcra.Result {
		t.Helper()
		res, err := gcra.Take(ctx, rdb, gcra.Request{PerSecond: 0.01, Burst: 3, Keys: keys, Units: units, Clock: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if !take([]int{2}, "{full}").Taken {
		t.Fatal("2 of a burst of 3 refused")
	}
	// {full} has 1 unit left: 2 do not fit, and {empty} gives nothing.
	res := take([]int{1, 2}, "{empty}", "{full}")
	if res.Taken || res.Wait != 100*time.Second {
		t.Fatalf("%+v; want refused, wait 100s (the one unit missing at 0.01/s)", res)
	}
	if !take([]int{3}, "{empty}").Taken {
		t.Fatal("the refused request took from {empty}")
	}
	if !take([]int{1}, "{full}").Taken {
		t.Fatal("the refused request took from {full}")
	}
	if take(nil, "{full}").Taken {
		t.Fatal("a 4th unit of a burst of 3 was taken")
	}
}

// Denied counts a bucket's refusals in the current second; a new second
// starts again from one.
func TestDeniedPerSecond(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	clk := newClock()
	r := gcra.Request{PerSecond: 10, Burst: 1, Keys: []string{"{backlog}"}, Clock: clk.Now}
	if res, _ := gcra.Take(ctx, rdb, r); !res.Taken {
		t.Fatal("first request refused")
	}
	for i := 1; i <= 5; i++ {
		if res, err := gcra.Take(ctx, rdb, r); err != nil || res.Taken || res.Denied != i {
			t.Fatalf("denial %d: %+v %v", i, res, err)
		}
	}
	clk.Advance(time.Second)
	_, _ = gcra.Take(ctx, rdb, r) // taken: a second passed
	if res, _ := gcra.Take(ctx, rdb, r); res.Taken || res.Denied != 1 {
		t.Fatalf("first denial of a new second: %+v; want Denied 1", res)
	}
}

// On Redis's clock (no Clock set) the rate holds too: after the burst, the
// wait is at most one interval.
func TestRedisClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	r := gcra.Request{PerSecond: 0.1, Burst: 1, Keys: []string{"{redis}"}}
	if res, err := gcra.Take(ctx, rdb, r); err != nil || !res.Taken {
		t.Fatalf("first request: %+v %v", res, err)
	}
	if res, err := gcra.Take(ctx, rdb, r); err != nil || res.Taken || res.Wait <= 0 || res.Wait > 10*time.Second {
		t.Fatalf("second request: %+v %v; want refused with a wait of at most 10s", res, err)
	}
	if ttl := rdb.PTTL(ctx, "{redis}").Val(); ttl <= 0 {
		t.Fatalf("bucket kept without expiry (PTTL %s)", ttl)
	}
}

func TestUnitsForEveryKey(t *testing.T) {
	t.Parallel()
	_, err := gcra.Take(context.Background(), nil, gcra.Request{PerSecond: 1, Burst: 1, Keys: []string{"{a}", "{b}"}, Units: []int{1}})
	if err == nil || !strings.Contains(err.Error(), "1 units for 2 keys") {
		t.Fatalf("err %v", err)
	}
}

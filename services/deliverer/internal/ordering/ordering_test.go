package ordering_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/ordering"
)

func entry(key string, id string, seq uint64) ordering.Entry {
	return ordering.Entry{Key: ordering.Key{Subscription: "sub_1", Value: key}, EventID: id, Seq: seq}
}

func mustCheck(t *testing.T, s *ordering.Store, e ordering.Entry) ordering.State {
	t.Helper()
	st, err := s.Check(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLineGoesInSequenceOrderAndNumbersHeads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ordering.New(redistest.Start(t).Client(t), 0)
	e1, e2, e3 := entry("k", "evt_1", 10), entry("k", "evt_2", 12), entry("k", "evt_3", 15)
	other := entry("other", "evt_9", 11)
	// Dispatch registered them out of order (parallel fan-out).
	if err := s.Register(ctx, []ordering.Entry{e3, other}); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx, []ordering.Entry{e2, e1}); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, e3); st.Verdict != ordering.Wait || st.Ahead != 2 {
		t.Fatalf("evt_3 first: %+v, want wait behind 2", st)
	}
	if st := mustCheck(t, s, other); st.Verdict != ordering.Head || st.Number != 1 {
		t.Fatalf("another key is its own line: %+v", st)
	}
	st := mustCheck(t, s, e1)
	if st.Verdict != ordering.Head || st.Number != 1 || st.Lost {
		t.Fatalf("evt_1: %+v, want head number 1", st)
	}
	// A retry or redelivery of the head keeps its number.
	if st := mustCheck(t, s, e1); st.Verdict != ordering.Head || st.Number != 1 {
		t.Fatalf("evt_1 again: %+v", st)
	}
	at := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := s.Hold(ctx, e1, at); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, e2); st.Verdict != ordering.Wait || !st.Next.Equal(at) {
		t.Fatalf("evt_2 behind a held head: %+v, want next %s", st, at)
	}
	if err := s.Finish(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, e2); st.Verdict != ordering.Head || st.Number != 2 || !st.Next.IsZero() {
		t.Fatalf("evt_2 after evt_1: %+v, want head number 2", st)
	}
	// evt_1 redelivered after it was finished (its ack was lost).
	if st := mustCheck(t, s, e1); st.Verdict != ordering.Done {
		t.Fatalf("finished evt_1 again: %+v, want done", st)
	}
	// Its fan-out redone: registering it again changes nothing.
	if err := s.Register(ctx, []ordering.Entry{e1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, e3); st.Verdict != ordering.Head || st.Number != 3 {
		t.Fatalf("evt_3: %+v, want head number 3 (evt_1 not back in line)", st)
	}
}

// A follower taken out of its line (its subscription deleted) must not make
// the line believe the head before it finished.
func TestFinishingAFollowerKeepsTheHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ordering.New(redistest.Start(t).Client(t), 0)
	e1, e2 := entry("k", "evt_1", 1), entry("k", "evt_2", 2)
	if err := s.Register(ctx, []ordering.Entry{e1, e2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, e1); st.Verdict != ordering.Head || st.Number != 1 {
		t.Fatalf("evt_1 after its follower left: %+v, want head", st)
	}
}

// Redis lost its data: the task is put back in line by its sequence and
// reported lost, never dropped as done.
func TestLostLineIsRebuiltNotDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := ordering.New(rdb, 0)
	e1, e2 := entry("k", "evt_1", 5), entry("k", "evt_2", 6)
	if err := s.Register(ctx, []ordering.Entry{e1, e2}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	st := mustCheck(t, s, e2)
	if st.Verdict != ordering.Head || !st.Lost {
		t.Fatalf("evt_2 after the flush: %+v, want head, lost", st)
	}
	st = mustCheck(t, s, e1)
	if st.Verdict != ordering.Head && st.Verdict != ordering.Wait {
		t.Fatalf("evt_1 after the flush: %+v", st)
	}
	if !st.Lost {
		t.Fatalf("evt_1 after the flush not reported lost: %+v", st)
	}
}

func TestFloorReadsOnDemandAtMostOncePerGap(t *testing.T) {
	t.Parallel()
	var reads atomic.Int64
	var floor atomic.Uint64
	f := ordering.NewFloor(func(ctx context.Context) (uint64, error) {
		reads.Add(1)
		return floor.Load(), nil
	}, time.Hour)
	if !f.Known(1) {
		t.Fatal("the first event needs no floor")
	}
	floor.Store(9)
	if ok, err := f.Covers(context.Background(), 10); !ok || err != nil {
		t.Fatalf("floor 9 and sequence 10: %v, %v", ok, err)
	}
	if !f.Known(10) || f.Known(11) {
		t.Fatal("cached floor is not 9")
	}
	floor.Store(20)
	// Read a moment ago: the caller is told to wait, JetStream is not asked.
	if ok, _ := f.Covers(context.Background(), 15); ok {
		t.Fatal("covered without a read")
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads, want 1", n)
	}
}

func TestFloorSharesConcurrentReads(t *testing.T) {
	t.Parallel()
	var reads atomic.Int64
	f := ordering.NewFloor(func(ctx context.Context) (uint64, error) {
		reads.Add(1)
		return 100, nil
	}, time.Hour)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if ok, err := f.Covers(context.Background(), 50); !ok || err != nil {
				t.Errorf("floor 100 and sequence 50: %v, %v", ok, err)
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads for 16 callers, want 1", n)
	}
}

func TestFloorReadErrorIsReturned(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	f := ordering.NewFloor(func(context.Context) (uint64, error) { return 0, boom }, time.Nanosecond)
	if ok, err := f.Covers(context.Background(), 5); ok || !errors.Is(err, boom) {
		t.Fatalf("Covers = %v, %v; want false, boom", ok, err)
	}
}

// Redis lost the line while its head waited for a retry, and a later event
// of the key went through since: the waiting head and its follower are
// delivered (Lost), never taken for finished and acked unsent.
func TestLostLineNeverMakesAPendingTaskDone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	s := ordering.New(rdb, 0)
	a, b, c := entry("k", "evt_a", 10), entry("k", "evt_b", 11), entry("k", "evt_c", 12)
	if err := s.Register(ctx, []ordering.Entry{a, b}); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s, a)
	if err := s.Hold(ctx, a, time.Now().Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx, []ordering.Entry{c}); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, c); st.Verdict != ordering.Head {
		t.Fatalf("evt_c alone in the rebuilt line: %+v", st)
	}
	if err := s.Finish(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, e := range []ordering.Entry{a, b} {
		if st := mustCheck(t, s, e); st.Verdict == ordering.Done || !st.Lost {
			t.Fatalf("%s after the flush: %+v, want delivered and reported lost", e.EventID, st)
		}
	}
}

// Every key of a line expires, including the hash a check creates.
func TestLineKeysExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	s := ordering.New(rdb, time.Hour)
	e := entry("k", "evt_1", 1)
	mustCheck(t, s, e) // not registered: creates the line and the hash
	if err := s.Finish(ctx, e); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, ordering.KeyPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 2 {
		t.Fatalf("keys %v, want at least the hash and the finished set", keys)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s has no expiry (%s)", k, ttl)
		}
	}
}

// An event id reused after the dedup window is another event: it does not
// merge with the pending one.
func TestReusedEventIDIsAnotherEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ordering.New(redistest.Start(t).Client(t), 0)
	first, again := entry("k", "evt_1", 1), entry("k", "evt_1", 900)
	if err := s.Register(ctx, []ordering.Entry{first, again}); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s, first)
	if err := s.Finish(ctx, first); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, again); st.Verdict != ordering.Head || st.Lost || st.Number != 2 {
		t.Fatalf("the reused id: %+v, want head number 2", st)
	}
}

func TestUnregisterLetsTheKeyGoOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ordering.New(redistest.Start(t).Client(t), 0)
	a, b := entry("k", "evt_a", 1), entry("k", "evt_b", 2)
	if err := s.Register(ctx, []ordering.Entry{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Unregister(ctx, []ordering.Entry{a}); err != nil {
		t.Fatal(err)
	}
	if st := mustCheck(t, s, b); st.Verdict != ordering.Head {
		t.Fatalf("evt_b after evt_a was given up: %+v", st)
	}
}

package redisbatch_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/redisbatch"
	"github.com/redis/go-redis/v9"
)

func client(t *testing.T) *redis.Client {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Many goroutines' commands all run, each caller reads its own replies, and
// a call's commands run in the order it queued them.
func TestDoRunsEveryCallersCommandsInOrder(t *testing.T) {
	rdb := client(t)
	b := redisbatch.New(rdb, redisbatch.Config{Timeout: 5 * time.Second})
	defer b.Close()
	const callers, calls = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			key := "k" + strconv.Itoa(c)
			for i := range calls {
				var set *redis.StatusCmd
				var get *redis.StringCmd
				var incr *redis.IntCmd
				b.Do(func(p redis.Pipeliner) {
					set = p.Set(context.Background(), key, i, 0)
					incr = p.Incr(context.Background(), key)
					get = p.Get(context.Background(), key)
				})
				if set.Err() != nil || incr.Val() != int64(i+1) || get.Val() != strconv.Itoa(i+1) {
					errs <- errors.New(key + ": got set=" + errString(set.Err()) + " incr=" + strconv.FormatInt(incr.Val(), 10) + " get=" + get.Val())
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// Go does not wait; Close sends what is queued before returning, and after
// Close calls still reach Redis.
func TestGoIsSentByClose(t *testing.T) {
	rdb := client(t)
	b := redisbatch.New(rdb, redisbatch.Config{Timeout: 5 * time.Second})
	var afters atomic.Int64
	for range 1000 {
		b.Go(func(p redis.Pipeliner) { p.Incr(context.Background(), "n") }, func() { afters.Add(1) })
	}
	b.Close()
	if n, err := rdb.Get(context.Background(), "n").Int(); err != nil || n != 1000 {
		t.Fatalf("after Close: n = %d, %v; want 1000", n, err)
	}
	if afters.Load() != 1000 {
		t.Fatalf("after callbacks run: %d, want 1000", afters.Load())
	}
	var incr *redis.IntCmd
	b.Do(func(p redis.Pipeliner) { incr = p.Incr(context.Background(), "n") })
	if incr.Val() != 1001 {
		t.Fatalf("Do after Close: %d, %v; want 1001", incr.Val(), incr.Err())
	}
	b.Close() // twice is fine
}

// A call that queues nothing returns at once, and its after runs.
func TestNothingQueued(t *testing.T) {
	rdb := client(t)
	b := redisbatch.New(rdb, redisbatch.Config{Timeout: 5 * time.Second})
	defer b.Close()
	b.Do(func(redis.Pipeliner) {})
	ran := false
	b.Go(func(redis.Pipeliner) {}, func() { ran = true })
	if !ran {
		t.Fatal("after of an empty Go did not run at once")
	}
}

// When Redis is gone every command carries an error and onError hears it.
func TestRedisDownFailsCommandsAndReports(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	srv.Stop()
	var reported atomic.Int64
	b := redisbatch.New(rdb, redisbatch.Config{Timeout: time.Second, OnError: func(error) { reported.Add(1) }})
	defer b.Close()
	var cmd *redis.IntCmd
	b.Do(func(p redis.Pipeliner) { cmd = p.Incr(context.Background(), "n") })
	if cmd.Err() == nil {
		t.Fatal("command against a stopped redis-server has no error")
	}
	if reported.Load() == 0 {
		t.Fatal("onError not called")
	}
}

// Flush waits for every command queued before it.
func TestFlushWaitsForQueuedGo(t *testing.T) {
	rdb := client(t)
	b := redisbatch.New(rdb, redisbatch.Config{Timeout: 5 * time.Second})
	defer b.Close()
	for range 500 {
		b.Go(func(p redis.Pipeliner) { p.Incr(context.Background(), "n") }, nil)
	}
	b.Flush()
	if n, err := rdb.Get(context.Background(), "n").Int(); err != nil || n != 500 {
		t.Fatalf("after Flush: n = %d, %v; want 500", n, err)
	}
}

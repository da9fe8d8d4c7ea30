package subcache_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// counted is the deliverer's Redis cache behind the memo, counting what
// the memo asks it: each ForEventAt reads and decodes every subscription
// of the tenant (one HGETALL, one authentication and one protojson decode
// per subscription).
type counted struct {
	next        subcache.Source
	tenantReads atomic.Int64
	gets        atomic.Int64
}

func (c *counted) ForEventAt(ctx context.Context, tenant, eventType string, need uint64) ([]*hooklinev1.Subscription, error) {
	c.tenantReads.Add(1)
	return c.next.ForEventAt(ctx, tenant, eventType, need)
}

func (c *counted) GetAt(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error) {
	c.gets.Add(1)
	return c.next.GetAt(ctx, tenant, id, need)
}

// registry is a real KV bucket, a real Redis kept by a Syncer, and a memo
// in front of it as the deliverer wires them (record authentication, a
// Horizon): the deliverer's subscription view.
type registry struct {
	store *subscription.Store
	kv    jetstream.KeyValue
	rdb   *redis.Client
	src   *counted
	memo  *subcache.Memo
}

// benchTypes are the event types the tenant's events have; benchFilters
// the filters its subscriptions use, in turn.
var (
	benchTypes   = []string{"order.created", "order.paid", "invoice.sent", "user.signup"}
	benchFilters = [][]string{{"order.*"}, {"order.created"}, {"invoice.*"}, {"user.signup", "order.paid"}, {">"}}
)

func benchSubID(i int) string { return fmt.Sprintf("sub_%05d", i) }

// startRegistry fills tenant with n subscriptions and waits until Redis and
// the memo hold them all.
func startRegistry(tb testing.TB, tenant string, n int) *registry {
	tb.Helper()
	ns := natstest.Start(tb)
	nc, js := ns.Connect(tb)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		tb.Fatal(err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redistest.Start(tb).Client(tb)
	box, err := secretbox.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		tb.Fatal(err)
	}
	cache := subscription.NewCache(rdb, store, subscription.WithRecordAuth(box))
	var last uint64
	for i := range n {
		sub := &hooklinev1.Subscription{Id: benchSubID(i), Tenant: tenant, Url: "https://example.com/hook/" + strconv.Itoa(i),
			EventTypes: benchFilters[i%len(benchFilters)], Description: "subscription " + strconv.Itoa(i),
			Keys: []*hooklinev1.SigningKey{{Secret: "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}}}
		if last, err = store.Create(ctx, sub); err != nil {
			tb.Fatal(err)
		}
	}
	src := &counted{next: cache}
	r := &registry{store: store, kv: kv, rdb: rdb, src: src,
		memo: subcache.New(src, kv, nil, subcache.WithConn(nc), subcache.WithHorizon(subscription.NewHorizon(store)))}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = subscription.NewSyncer(store, cache, nil).Run(rctx) })
	wg.Go(func() { _ = r.memo.Run(rctx) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	r.awaitSeen(tb, last)
	poll(tb, 30*time.Second, "redis current", func() bool {
		wm, err := rdb.Get(ctx, subscription.WatermarkKey).Uint64()
		return err == nil && wm >= last
	})
	return r
}

// poll waits for cond (a deadline, never a fixed sleep).
func poll(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// awaitSeen waits until the memo's watch has reported rev (and the memo is
// in use).
func (r *registry) awaitSeen(tb testing.TB, rev uint64) {
	tb.Helper()
	poll(tb, 30*time.Second, "memo current", func() bool { return r.memo.Current(rev) })
}

// edit changes one field of one subscription, as PATCH does.
func (r *registry) edit(tb testing.TB, id string, n int) uint64 {
	tb.Helper()
	_, rev, err := r.store.Update(context.Background(), id, func(s *hooklinev1.Subscription) error {
		s.Description = "edit " + strconv.Itoa(n)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

// matchAll matches one event of each type and returns how many
// subscriptions matched.
func (r *registry) matchAll(tb testing.TB, tenant string) int {
	tb.Helper()
	n := 0
	for _, et := range benchTypes {
		subs, _, err := r.memo.ForEvent(context.Background(), tenant, et)
		if err != nil {
			tb.Fatal(err)
		}
		n += len(subs)
	}
	return n
}

// threadCPU is the CPU time of the calling OS thread (lock it first).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time of the whole test process (the embedded
// nats-server included; redis-server is another process).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is redis-server's CPU time so far (INFO cpu).
func redisCPU(tb testing.TB, rdb *redis.Client) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkEditWhileMatching: one subscription of a tenant with 200, then
// 2,000 (the cost of an edit must not grow with the tenant) is
// edited over and over while the tenant's events are matched (ForEvent),
// through the deliverer's whole subscription view (KV bucket, Redis kept
// by a Syncer, the memo). Prints, asserts nothing:
//
//   - matches: matching one event of each of 4 types, with no edit;
//   - edit-then-match: one edit, waiting until the memo's watch has reported
//     it, then one match of each type (the edit's cost to the matches that
//     follow it);
//   - edits-concurrent: an editor edits in a tight loop while a matcher
//     matches events of the 4 types without pause (the red team's case).
//
// match-cpu-ns is the CPU time of the matching thread per match,
// tenant-reads how often the memo read the whole tenant from Redis,
// redis-cpu-us redis-server's CPU, proc-cpu-us the test process's (the
// embedded nats-server and the editor included).
//
//	cd services/deliverer && go test -run '^$' -bench EditWhileMatching -benchtime 200x ./internal/subcache/
func BenchmarkEditWhileMatching(b *testing.B) {
	for _, size := range []int{200, 2000} {
		b.Run("subs="+strconv.Itoa(size), func(b *testing.B) { benchEditWhileMatching(b, size) })
	}
}

func benchEditWhileMatching(b *testing.B, size int) {
	const tenant = "acme"
	r := startRegistry(b, tenant, size)
	edited := benchSubID(0)

	b.Run("matches", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r.matchAll(b, tenant) // fill the memo
		reads, rcpu, pcpu := r.src.tenantReads.Load(), redisCPU(b, r.rdb), processCPU()
		b.ResetTimer()
		tcpu := threadCPU()
		for range b.N {
			r.matchAll(b, tenant)
		}
		tcpu = threadCPU() - tcpu
		b.StopTimer()
		matches := float64(b.N * len(benchTypes))
		b.ReportMetric(float64(tcpu.Nanoseconds())/matches, "match-cpu-ns")
		b.ReportMetric(float64(r.src.tenantReads.Load()-reads)/matches, "tenant-reads/match")
		b.ReportMetric(float64((redisCPU(b, r.rdb)-rcpu).Microseconds())/matches, "redis-cpu-us/match")
		b.ReportMetric(float64((processCPU()-pcpu).Microseconds())/matches, "proc-cpu-us/match")
	})

	b.Run("edit-then-match", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r.matchAll(b, tenant)
		reads, rcpu, pcpu := r.src.tenantReads.Load(), redisCPU(b, r.rdb), processCPU()
		var tcpu, matchWall time.Duration
		b.ResetTimer()
		for i := range b.N {
			r.awaitSeen(b, r.edit(b, edited, i))
			t0, c0 := time.Now(), threadCPU()
			r.matchAll(b, tenant)
			tcpu += threadCPU() - c0
			matchWall += time.Since(t0)
		}
		b.StopTimer()
		matches := float64(b.N * len(benchTypes))
		b.ReportMetric(float64(tcpu.Nanoseconds())/matches, "match-cpu-ns")
		b.ReportMetric(float64(matchWall.Nanoseconds())/matches, "match-ns")
		b.ReportMetric(float64(r.src.tenantReads.Load()-reads)/float64(b.N), "tenant-reads/edit")
		b.ReportMetric(float64((redisCPU(b, r.rdb)-rcpu).Microseconds())/float64(b.N), "redis-cpu-us/edit")
		b.ReportMetric(float64((processCPU()-pcpu).Microseconds())/float64(b.N), "proc-cpu-us/edit")
	})

	b.Run("edits-concurrent", func(b *testing.B) {
		r.matchAll(b, tenant)
		reads, rcpu, pcpu := r.src.tenantReads.Load(), redisCPU(b, r.rdb), processCPU()
		var stop atomic.Bool
		var matches atomic.Int64
		var tcpu atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0 := threadCPU()
			for !stop.Load() {
				for _, et := range benchTypes {
					if _, _, err := r.memo.ForEvent(context.Background(), tenant, et); err != nil {
						b.Error(err)
						return
					}
					matches.Add(1)
				}
			}
			tcpu.Store(int64(threadCPU() - c0))
		})
		for i := range b.N {
			r.edit(b, edited, i)
		}
		stop.Store(true)
		wg.Wait()
		b.StopTimer()
		m := float64(max(matches.Load(), 1))
		b.ReportMetric(m/float64(b.N), "matches/edit")
		b.ReportMetric(float64(tcpu.Load())/m, "match-cpu-ns")
		b.ReportMetric(float64(r.src.tenantReads.Load()-reads)/float64(b.N), "tenant-reads/edit")
		b.ReportMetric(float64((redisCPU(b, r.rdb)-rcpu).Microseconds())/float64(b.N), "redis-cpu-us/edit")
		b.ReportMetric(float64((processCPU()-pcpu).Microseconds())/float64(b.N), "proc-cpu-us/edit")
	})
}

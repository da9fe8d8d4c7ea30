package deliver_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/health"
)

// countedAdmission is endpoint health, counting what the deliver stage
// asks it per subscription.
type countedAdmission struct {
	next deliver.Admission

	mu       sync.Mutex
	calls    map[string]int
	admitted map[string]int
	total    atomic.Int64
}

func newCountedAdmission(next deliver.Admission) *countedAdmission {
	return &countedAdmission{next: next, calls: map[string]int{}, admitted: map[string]int{}}
}

func (c *countedAdmission) Admit(ctx context.Context, sub *hooklinev1.Subscription, limit int) (deliver.Slot, deliver.Refusal, error) {
	slot, ref, err := c.next.Admit(ctx, sub, limit)
	c.total.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[sub.GetId()]++
	if slot != nil {
		c.admitted[sub.GetId()]++
	}
	return slot, ref, err
}

func (c *countedAdmission) count(id string) (calls, admitted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id], c.admitted[id]
}

// redisCommands counts the commands a Redis client sends (each command of
// a pipeline or transaction counted).
type redisCommands struct{ n atomic.Int64 }

func (c *redisCommands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *redisCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *redisCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// healthConfig is endpoint health with no worker share and no caps but
// those given.
func healthConfig(tenantCap, destCap int) health.Config {
	return health.Config{
		DefaultMaxInFlight: 10, DefaultMaxInFlightCeiling: 64, InFlightDefer: time.Second,
		BreakerFailures: 5, BreakerCooldown: 30 * time.Second, BreakerMaxCooldown: 10 * time.Minute,
		RedisTimeout: 500 * time.Millisecond, TenantWorkerShare: 1,
		TenantMaxInFlight: tenantCap, DestinationMaxInFlight: destCap, DestinationBreakerFailures: 20,
	}
}

// heldEndpoint answers the requests of the subscriptions in hold only once
// release is closed, every other one at once, and records which
// subscriptions it heard from, in order.
type heldEndpoint struct {
	srv     *httptest.Server
	release chan struct{}
	mu      sync.Mutex
	subs    []string
}

func newHeldEndpoint(t *testing.T, hold func(sub string) bool) *heldEndpoint {
	t.Helper()
	e := &heldEndpoint{release: make(chan struct{})}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub := r.Header.Get("Hookline-Subscription-Id")
		e.mu.Lock()
		e.subs = append(e.subs, sub)
		e.mu.Unlock()
		if hold(sub) {
			select {
			case <-e.release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *heldEndpoint) heard(sub string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.subs {
		if s == sub {
			return true
		}
	}
	return false
}

// A task waiting in its line for a slot shared with another subscription
// (its destination's, its tenant's) is released by the other
// subscription's attempt as soon as that ends, not by its line's next
// poll: the lines' clock is frozen, so no poll of the line ever comes due
// by its timer, and admission is asked for it exactly three times — when
// it arrived, when its line formed, and when the slot was freed.
func TestALineWaitingOnASharedSlotIsWokenWhenAnotherSubscriptionFreesIt(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]health.Config{
		"destination": healthConfig(0, 1),
		"tenant":      healthConfig(1, 0),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, stream.Config{AckWait: 30 * time.Second})
			h := health.New(cfg, health.Limits{AttemptTimeout: 5 * time.Second}, health.Deps{Redis: r.rdb})
			t.Cleanup(h.Close)
			adm := newCountedAdmission(h)
			r.opts.Admission = adm
			var a, b *hooklinev1.Subscription
			ep := newHeldEndpoint(t, func(sub string) bool { return sub == a.GetId() })
			a, b = r.subscribe(t, ep.srv.URL+"/a"), r.subscribe(t, ep.srv.URL+"/b")

			d := deliver.New(r.deps, r.opts)
			deliver.FreezeLines(d, time.Now())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})

			r.task(t, a, "evt_a")
			eventually(t, "a's attempt under way, holding the shared slot", func() bool { return ep.heard(a.GetId()) })
			r.task(t, b, "evt_b")
			eventually(t, "b refused on arrival and when its line formed", func() bool {
				calls, _ := adm.count(b.GetId())
				return calls >= 2 && testutil.ToFloat64(r.m.AdmissionParked) == 1
			})
			if calls, admitted := adm.count(b.GetId()); calls != 2 || admitted != 0 {
				t.Fatalf("b: admission asked %d times, %d admitted, before a's attempt ended; want 2, 0", calls, admitted)
			}
			close(ep.release)
			eventually(t, "b delivered once a's attempt freed the slot", func() bool { return ep.heard(b.GetId()) })
			if calls, admitted := adm.count(b.GetId()); calls != 3 || admitted != 1 {
				t.Fatalf("b: admission asked %d times (%d admitted); want 3, the last woken by a's freed slot", calls, admitted)
			}
			eventually(t, "both settled", func() bool { return r.settled(t) })
		})
	}
}

// The cost of waiting: two hundred subscriptions to one destination whose
// cap (2) is held by a slow endpoint (1 s an answer) wait in their lines
// while six slots are freed. Each line is asked for again on a timer that
// doubles from PollEvery (20 ms) to PollMax (1 s), and once per slot freed
// here (the wake), so the admissions asked are at most
//
//	lines × (⌈log2(PollMax/PollEvery)⌉ + 1 + ⌈elapsed/PollMax⌉) + released
//
// and the Redis commands at most that many times the commands of one
// poll (its lookup and its refused admission, measured here), plus two
// polls' worth per released slot (the attempt's own admission and
// release). Polling every 20 ms asked about lines × elapsed/20ms.
func TestWaitingLinesBackOffAndCostRedisLittle(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 30 * time.Second})
	redisCount := &redisCommands{}
	r.rdb.AddHook(redisCount)
	h := health.New(healthConfig(0, 2), health.Limits{AttemptTimeout: 5 * time.Second}, health.Deps{Redis: r.rdb})
	t.Cleanup(h.Close)
	adm := newCountedAdmission(h)
	r.opts.Admission = adm
	const subs, capacity, released = 200, 2, 6
	const pollEvery, pollMax = 20 * time.Millisecond, time.Second
	r.opts.PollEvery, r.opts.PollMax = pollEvery, pollMax
	var answered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// A slow endpoint (what is simulated, not a synchronisation).
		select {
		case <-time.After(time.Second):
		case <-req.Context().Done():
		}
		answered.Add(1)
	}))
	t.Cleanup(srv.Close)
	all := make([]*hooklinev1.Subscription, subs)
	for i := range all {
		all[i] = r.subscribe(t, fmt.Sprintf("%s/%d", srv.URL, i))
	}
	for i, sub := range all {
		r.task(t, sub, fmt.Sprintf("evt_%d", i))
	}
	r.run(t)
	eventually(t, "every task but the two attempted waiting in line", func() bool {
		return testutil.ToFloat64(r.m.AdmissionParked) == subs-capacity
	})

	// One poll's Redis commands: the lookup and the refused admission
	// (with the give-back of what it took), counted on a client of their
	// own while the stage polls on the other. (A slot freed just now may
	// admit it: given back, it is asked again.)
	calib := &redisCommands{}
	rdb := redis.NewClient(&redis.Options{Addr: r.rdb.Options().Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(calib)
	h2 := health.New(healthConfig(0, capacity), health.Limits{AttemptTimeout: 5 * time.Second}, health.Deps{Redis: rdb})
	t.Cleanup(h2.Close)
	lookup := cacheLookup{subscription.NewCache(rdb, r.store)}
	// The least of three: the first on a new client may load scripts.
	var perPoll int64
	probe := all[subs-1]
	for try, refused := 0, 0; refused < 3; try++ {
		before := calib.n.Load()
		if _, err := lookup.Get(context.Background(), tenant, probe.GetId(), 0); err != nil {
			t.Fatal(err)
		}
		slot, ref, err := h2.Admit(context.Background(), probe, 0)
		h2.Flush()
		if n := calib.n.Load() - before; slot == nil && err == nil && ref.Reason == deliver.RefusedDestination {
			if refused++; refused == 1 || n < perPoll {
				perPoll = n
			}
			continue
		}
		if slot != nil {
			slot.Return()
			h2.Flush()
		}
		if try == 20 {
			t.Fatalf("calibration admission: slot %v, refusal %+v, error %v; want refused %s", slot, ref, err, deliver.RefusedDestination)
		}
	}

	startCmds, startCalls, startAnswered, start := redisCount.n.Load(), adm.total.Load(), answered.Load(), time.Now()
	eventually(t, fmt.Sprintf("%d slots freed and taken again", released), func() bool { return answered.Load() >= startAnswered+released })
	elapsed := time.Since(start)
	cmds, calls := redisCount.n.Load()-startCmds, adm.total.Load()-startCalls

	lines := subs - capacity
	steps := int(math.Ceil(math.Log2(float64(pollMax) / float64(pollEvery))))
	bound := int64(lines*(steps+1+int(math.Ceil(float64(elapsed)/float64(pollMax)))) + released)
	t.Logf("%d lines waiting %s over %d released slots: %d admissions asked (bound %d), %d Redis commands (bound %d; %d a poll); polling every %s would ask about %d",
		lines, elapsed.Round(time.Millisecond), released, calls, bound, cmds, int64(perPoll)*(bound+2*released), perPoll, pollEvery, int64(lines)*int64(elapsed/pollEvery))
	if calls > bound {
		t.Errorf("%d admissions asked while %d lines waited %s; want at most %d", calls, lines, elapsed, bound)
	}
	if most := perPoll * (bound + 2*released); cmds > most {
		t.Errorf("%d Redis commands while %d lines waited %s; want at most %d (%d a poll)", cmds, lines, elapsed, most, perPoll)
	}
}

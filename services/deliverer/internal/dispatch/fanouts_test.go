package dispatch_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/dispatch"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// heldMatcher counts the fan-outs of each tenant in its hands at once and
// holds the flood's until released; every event matches one subscription.
type heldMatcher struct {
	mu       sync.Mutex
	inHand   map[string]int
	most     map[string]int
	full     chan struct{} // closed once the flood has limit in hand
	victim   chan struct{} // closed once the victim's event is matched
	limit    int
	release  chan struct{}
	fullOnce sync.Once
	vicOnce  sync.Once
}

func (m *heldMatcher) ForEventSince(_ context.Context, _ time.Time, tenant, _ string) ([]*hooklinev1.Subscription, uint64, error) {
	m.mu.Lock()
	m.inHand[tenant]++
	m.most[tenant] = max(m.most[tenant], m.inHand[tenant])
	if tenant == "flood" && m.inHand[tenant] == m.limit {
		m.fullOnce.Do(func() { close(m.full) })
	}
	m.mu.Unlock()
	switch tenant {
	case "flood":
		<-m.release
	case "victim":
		m.vicOnce.Do(func() { close(m.victim) })
	}
	m.mu.Lock()
	m.inHand[tenant]--
	m.mu.Unlock()
	return []*hooklinev1.Subscription{{Id: "sub_" + tenant, Tenant: tenant}}, 0, nil
}

// newHeldMatcher returns a heldMatcher whose full closes once the flood
// has limit fan-outs in hand.
func newHeldMatcher(limit int) *heldMatcher {
	return &heldMatcher{inHand: map[string]int{}, most: map[string]int{}, limit: limit,
		full: make(chan struct{}), victim: make(chan struct{}), release: make(chan struct{})}
}

// heldDispatcher is a dispatcher matching through match, every delivery a
// task (no Direct).
func heldDispatcher(js jetstream.JetStream, match *heldMatcher, o dispatch.Options) *dispatch.Dispatcher {
	return dispatch.New(dispatch.Deps{JS: js, Matcher: match, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(),
		Metrics: metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)}, o)
}

// publishEvent stores tenant's i-th event (evt_<i>, order.created).
func publishEvent(ctx context.Context, js jetstream.JetStream, tenant string, i int) error {
	m := nats.NewMsg(stream.EventSubject(tenant, "order.created"))
	m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, "evt_"+strconv.Itoa(i)))
	m.Data = []byte(`{}`)
	_, err := js.PublishMsg(ctx, m)
	return err
}

// Dispatch fans out at most TenantFanouts of one tenant's events at once
// when none makes a first attempt (here: no Direct, every delivery a
// task) while other tenants have events (one just before the flood),
// and another tenant's event is still fanned out beside them.
func TestTenantFanoutsBoundsATenantsFanOuts(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{})
	const limit = 3
	match := newHeldMatcher(limit)
	d := heldDispatcher(js, match, dispatch.Options{Workers: 16, TenantFanouts: limit})
	ctx := context.Background()
	publish := func(tenant string, i int) error { return publishEvent(ctx, js, tenant, i) }
	if err := publish("early", 0); err != nil {
		t.Fatal(err)
	}
	const flood = 20
	for i := range flood {
		if err := publish("flood", i); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		// The flood holds its fan-outs until the victim's event is
		// matched beside them (or 20 s pass: the test then fails below
		// rather than hanging).
		select {
		case <-match.full:
		case <-time.After(20 * time.Second):
		}
		if err := publish("victim", 0); err != nil {
			t.Error(err)
		}
		select {
		case <-match.victim:
		case <-time.After(20 * time.Second):
		}
		close(match.release)
	}()
	runUntil(t, d, js, 30*time.Second, "every event dispatched", func(info *jetstream.ConsumerInfo) bool {
		return info.AckFloor.Stream == flood+2
	})
	match.mu.Lock()
	defer match.mu.Unlock()
	if got := match.most["flood"]; got != limit {
		t.Errorf("the flood had %d fan-outs in hand at once, want TenantFanouts %d", got, limit)
	}
	if got := subjects(t, js, stream.Deliveries); len(got) != 3 {
		t.Errorf("DELIVERIES subjects %v, want the early tenant's, the flood's and the victim's tasks", got)
	}
}

// A tenant alone is not held to TenantFanouts: nobody waits behind its
// queues, and its burst of tasks fans out with every worker it may have
// (15 of 16).
func TestTenantFanoutsDoNotHoldATenantAlone(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{})
	const workers = 16
	perKey := pool.DefaultPerKey(workers)
	match := newHeldMatcher(perKey)
	d := heldDispatcher(js, match, dispatch.Options{Workers: workers, TenantFanouts: 3})
	ctx := context.Background()
	const flood = 20
	for i := range flood {
		if err := publishEvent(ctx, js, "flood", i); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		// Released once the flood holds every worker it may (or after
		// 20 s, so that a flood held to TenantFanouts fails the test
		// below rather than hanging it).
		select {
		case <-match.full:
		case <-time.After(20 * time.Second):
		}
		close(match.release)
	}()
	runUntil(t, d, js, 30*time.Second, "every event dispatched", func(info *jetstream.ConsumerInfo) bool {
		return info.AckFloor.Stream == flood
	})
	match.mu.Lock()
	defer match.mu.Unlock()
	if got := match.most["flood"]; got != perKey {
		t.Errorf("a tenant alone had %d fan-outs in hand at once, want %d (every worker it may have, not TenantFanouts 3)", got, perKey)
	}
}

// Replicas share the dispatch consumer's ack window: while another
// replica holds its three quarters and a flood the rest, this replica's
// buffer never fills, every other tenant's event waits in EVENTS behind the
// flood (one, taken just before, holds the flood to its bound until
// then), and the bound on the flood's fan-outs is lifted (pool.Fair.
// WindowFull): its events take the workers they may (15 of 16).
func TestTenantFanoutsLiftedWhileTheAckWindowIsFull(t *testing.T) {
	t.Parallel()
	const window, workers = 16, 16
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true, MaxAckPending: window}); err != nil {
		t.Fatal(err)
	}
	perKey := pool.DefaultPerKey(workers)
	match := newHeldMatcher(window / 4)
	d := heldDispatcher(js, match, dispatch.Options{Workers: workers, TenantFanouts: 1, Buffer: 100}) // a buffer the window cannot fill
	const flood = 40
	for i := range flood {
		if i == window*3/4 { // the first event this replica gets
			if err := publishEvent(ctx, js, "early", 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := publishEvent(ctx, js, "flood", i); err != nil {
			t.Fatal(err)
		}
	}
	// The other replica: three quarters of the window.
	cons, err := js.Consumer(ctx, stream.Events, stream.DispatchConsumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(window*3/4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var others []jetstream.Msg
	for m := range batch.Messages() {
		others = append(others, m)
	}
	if len(others) != window*3/4 {
		t.Fatalf("the other replica got %d events, want %d (%v)", len(others), window*3/4, batch.Error())
	}
	go func() {
		// Once the flood holds every event of the window left to this
		// replica (a quarter), the other replica hands its share back (or
		// after 20 s, so that a flood held to one fails the test below
		// rather than hanging it).
		select {
		case <-match.full:
		case <-time.After(20 * time.Second):
		}
		close(match.release)
		for _, m := range others {
			_ = m.Nak()
		}
	}()
	runUntil(t, d, js, 30*time.Second, "every event dispatched", func(info *jetstream.ConsumerInfo) bool {
		return info.AckFloor.Stream == flood+1
	})
	match.mu.Lock()
	defer match.mu.Unlock()
	if got := match.most["flood"]; got < window/4 || got > perKey {
		t.Errorf("the flood had %d fan-outs in hand at once behind a full ack window, want %d (all this replica's share) to %d", got, window/4, perKey)
	}
}

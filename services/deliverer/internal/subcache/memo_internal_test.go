package subcache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go/jetstream"
)

// freshSource answers every lookup with the registry as it is now.
type freshSource struct{}

func (freshSource) ForEventAt(context.Context, string, string, uint64) ([]*hooklinev1.Subscription, error) {
	return []*hooklinev1.Subscription{{Id: "sub_1", Tenant: "acme", Description: "fresh"}}, nil
}

func (freshSource) GetAt(context.Context, string, string, uint64) (*hooklinev1.Subscription, error) {
	return &hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Description: "fresh"}, nil
}

// record is the stored form of sub_1 of acme with description d.
func record(t *testing.T, d string) []byte {
	t.Helper()
	b, err := subscription.Marshal(&hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Description: d,
		EventTypes: []string{"order.created"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A lookup that finds the watch has reported revision R never answers from
// what the memo held before change R: the watch applies the change no
// later than it makes R visible. Each memoised answer here is the one that
// change R replaces (its description is R); lookups run while the changes
// arrive and check every answer against the revision they needed.
func TestLookupNeverSeesARevisionBeforeItsChangeIsApplied(t *testing.T) {
	m := New(freshSource{}, nil, nil)
	m.watching.Store(true) // a caught-up watch, on no connection
	ctx := context.Background()
	var stop atomic.Bool
	var stale atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				need := m.seen.Load()
				subs, err := m.forEvent(ctx, "acme", "order.created", need)
				if err != nil {
					stale.Store(err.Error())
					return
				}
				if len(subs) != 1 {
					stale.Store("sub_1 missing from an answer")
					return
				}
				if d := subs[0].GetDescription(); d != "fresh" {
					if before, _ := strconv.ParseUint(d, 10, 64); before <= need {
						stale.Store("a lookup that needed revision " + strconv.FormatUint(need, 10) +
							" got the answer change " + d + " replaced")
						return
					}
				}
			}
		}()
	}
	fresh := record(t, "fresh")
	for rev := uint64(1); rev <= 50000 && stale.Load() == nil; rev++ {
		old := []*hooklinev1.Subscription{{Id: "sub_1", Tenant: "acme", Description: strconv.FormatUint(rev, 10),
			EventTypes: []string{"order.created"}}}
		f, gen, _ := m.begin("acme", 0)
		m.finish(f, gen, "acme", true, func(t *tenantMemo) int {
			t.byType["order.created"] = forEventEntry{subs: old, expires: m.now().Add(m.ttl)}
			return 1
		})
		m.changed(rev, "acme.sub_1", jetstream.KeyValuePut, fresh)
	}
	stop.Store(true)
	wg.Wait()
	if s := stale.Load(); s != nil {
		t.Fatal(s)
	}
}

// blockingSource answers with the record as it was before the change the
// test makes while the lookup waits for it.
type blockingSource struct {
	asked, release chan struct{}
	calls          atomic.Int64
}

func (s *blockingSource) ForEventAt(context.Context, string, string, uint64) ([]*hooklinev1.Subscription, error) {
	if s.calls.Add(1) == 1 {
		close(s.asked)
		<-s.release
	}
	return []*hooklinev1.Subscription{{Id: "sub_1", Tenant: "acme", Description: "before", EventTypes: []string{"order.created"}}}, nil
}

func (s *blockingSource) GetAt(context.Context, string, string, uint64) (*hooklinev1.Subscription, error) {
	return nil, subscription.ErrNotFound
}

// A fetch that began before a change of its tenant, and whose answer
// predates it, stores the answer with the change applied: never the
// answer as fetched (stale for a lookup that needs the change), and
// without asking the next cache again.
func TestAFetchRacingAChangeStoresTheChange(t *testing.T) {
	src := &blockingSource{asked: make(chan struct{}), release: make(chan struct{})}
	m := New(src, nil, nil)
	m.watching.Store(true)
	ctx := context.Background()
	done := make(chan []*hooklinev1.Subscription, 1)
	go func() {
		subs, err := m.forEvent(ctx, "acme", "order.created", 0)
		if err != nil {
			t.Error(err)
		}
		done <- subs
	}()
	<-src.asked
	m.changed(7, "acme.sub_1", jetstream.KeyValuePut, record(t, "after"))
	close(src.release)
	if subs := <-done; len(subs) != 1 || subs[0].GetDescription() != "before" {
		t.Fatalf("the lookup that began before the change got %v; want the answer it asked for", subs)
	}
	subs, err := m.forEvent(ctx, "acme", "order.created", 7)
	if err != nil || len(subs) != 1 || subs[0].GetDescription() != "after" {
		t.Fatalf("a lookup needing the change got %v, %v; want the changed record", subs, err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches; want 1 (the answer stored, with the change applied)", n)
	}
	// A delete takes the record out of the memoised answer.
	m.changed(8, "acme.sub_1", jetstream.KeyValueDelete, nil)
	if subs, err := m.forEvent(ctx, "acme", "order.created", 8); err != nil || len(subs) != 0 {
		t.Fatalf("after the delete: %v, %v; want no subscription", subs, err)
	}
}

// BenchmarkApplyAnEdit: what the memo's watch spends on one edit of one
// subscription of a tenant with 2,000, whose answers for 4 event types the
// memo holds (1,200 subscriptions each): one record's decode, and a pass
// over each answer (go test -run '^$' -bench ApplyAnEdit ./internal/subcache/).
func BenchmarkApplyAnEdit(b *testing.B) {
	m := New(freshSource{}, nil, nil)
	m.watching.Store(true)
	types := []string{"order.created", "order.paid", "invoice.sent", "user.signup"}
	subs := make([]*hooklinev1.Subscription, 2000)
	for i := range subs {
		subs[i] = &hooklinev1.Subscription{Id: "sub_" + strconv.Itoa(i), Tenant: "acme", EventTypes: []string{">"}}
		if i%5 < 2 {
			subs[i].EventTypes = []string{types[i%5]}
		}
	}
	f, gen, _ := m.begin("acme", 0)
	m.finish(f, gen, "acme", true, func(t *tenantMemo) int {
		for _, et := range types {
			var match []*hooklinev1.Subscription
			for _, s := range subs {
				if delivers(s, et) {
					match = append(match, s)
				}
			}
			t.byType[et] = forEventEntry{subs: match, expires: m.now().Add(time.Hour)}
		}
		return len(types)
	})
	rec, err := subscription.Marshal(&hooklinev1.Subscription{Id: "sub_1000", Tenant: "acme", Url: "https://example.com/hook",
		EventTypes: []string{"order.*"}, Keys: []*hooklinev1.SigningKey{{Secret: "whsec_c2VjcmV0"}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := range b.N {
		m.changed(uint64(i+1), "acme.sub_1000", jetstream.KeyValuePut, rec)
	}
}

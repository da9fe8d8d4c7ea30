package subcache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// freshSource answers every lookup with the registry as it is now.
type freshSource struct{}

func (freshSource) ForEventAt(context.Context, string, string, uint64) ([]*hooklinev1.Subscription, error) {
	return []*hooklinev1.Subscription{{Id: "sub_1", Tenant: "acme", Description: "fresh"}}, nil
}

func (freshSource) GetAt(context.Context, string, string, uint64) (*hooklinev1.Subscription, error) {
	return &hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Description: "fresh"}, nil
}

// A lookup that finds the watch has reported revision R never answers from
// what the memo held before change R: the watch forgets the tenant no later
// than it makes R visible. Each memoised answer here is the one that
// change R replaces (its description is R); lookups run while the changes
// arrive and check every answer against the revision they needed.
func TestLookupNeverSeesARevisionBeforeItsTenantIsForgotten(t *testing.T) {
	m := New(freshSource{}, nil, nil)
	m.watching.Store(true) // a replayed watch, on no connection
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
	for rev := uint64(1); rev <= 50000 && stale.Load() == nil; rev++ {
		old := []*hooklinev1.Subscription{{Id: "sub_1", Tenant: "acme", Description: strconv.FormatUint(rev, 10)}}
		m.store(m.gen.Load(), "acme", func(t *tenantMemo) int {
			t.byType["order.created"] = forEventEntry{subs: old, expires: m.now().Add(m.ttl)}
			return 1
		})
		m.changed(rev, "acme.sub_1")
	}
	stop.Store(true)
	wg.Wait()
	if s := stale.Load(); s != nil {
		t.Fatal(s)
	}
}

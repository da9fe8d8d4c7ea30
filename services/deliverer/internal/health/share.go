package health

import (
	"sync"

	"github.com/hookline/hookline/services/deliverer/internal/inflight"
)

// workerShare counts each tenant's attempts in flight in this process, so
// that one tenant never holds more than its share of the workers: however
// slow its endpoints answer (a 200 after 9 s never trips a breaker), the
// other tenants keep the rest.
type workerShare struct {
	max  int // 0: no share
	mu   sync.Mutex
	held map[string]int
}

func newWorkerShare(workers int, share float64) *workerShare {
	w := &workerShare{held: map[string]int{}}
	if share < 1 && workers > 0 {
		w.max = max(int(float64(workers)*share), 1)
	}
	return w
}

// take counts one more attempt of tenant; false when it has its share.
func (w *workerShare) take(tenant string) bool {
	if w.max == 0 {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held[tenant] >= w.max {
		return false
	}
	w.held[tenant]++
	return true
}

// give ends an attempt counted by take.
func (w *workerShare) give(tenant string) {
	if w.max == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held[tenant] <= 1 {
		delete(w.held, tenant)
	} else {
		w.held[tenant]--
	}
}

// leases are what an admitted attempt holds across replicas: its
// subscription's in-flight slot and, when capped, its tenant's and its
// destination's.
type leases struct {
	sub, tenant, dest inflight.Lease
}

func (l leases) all() [3]inflight.Lease { return [3]inflight.Lease{l.sub, l.tenant, l.dest} }

// tenantKey and destinationKey name the in-flight sets of a tenant and a
// destination beside those of subscriptions (whose ids start "sub_").
func tenantKey(tenant string) string { return "tenant:" + tenant }

func destinationKey(host string) string { return "dest:" + host }

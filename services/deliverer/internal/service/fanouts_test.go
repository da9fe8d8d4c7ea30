package service_test

import (
	"fmt"
	"testing"

	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A tenant's first attempts from dispatch are not held to
// HOOKLINE_TENANT_FANOUTS, which bounds its fan-outs that store tasks
// while other tenants have events (here one, just before the burst):
// an attempt holding a direct token waits on the endpoint, not the
// broker, and the direct tokens bound those. With the bound at 1 (so that
// a handful of events shows it), six events to a measured-fast endpoint
// that holds its requests are six requests in flight at once: 16 dispatch
// workers and 8 direct slots, of which the tenant's share is 6 (the
// harness's 4 workers leave 2 slots).
func TestTenantFanoutsDoNotHoldFirstAttempts(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_TENANT_FANOUTS": "1", "HOOKLINE_DISPATCH_WORKERS": "16", "HOOKLINE_DIRECT_MAX": "8"})
	srv := newHangingEndpoint(t)
	e.subscribeAs(t, "burst", srv.URL, "order.created")
	e.publishAs(t, "burst", "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return srv.answered.Load() == 1 })
	e.publishAs(t, "other", "order.created", "evt_other", `{}`) // matches nothing, but shares dispatch
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	tasksBefore := testutil.ToFloat64(e.svc.Metrics.TasksPublished)
	srv.hang.Store(true)
	const n = 6 // the tenant's direct slots, below the default cap of 10 in flight
	for i := range n {
		e.publishAs(t, "burst", "order.created", fmt.Sprintf("evt_held_%d", i), `{}`)
	}
	eventually(t, await, fmt.Sprintf("%d requests in flight at once", n), func() bool { return srv.hanging.Load() == n })
	srv.Release()
	eventually(t, await, "every event delivered", func() bool { return srv.answered.Load() == n+1 })
	if tasks := testutil.ToFloat64(e.svc.Metrics.TasksPublished) - tasksBefore; tasks != 0 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = testutil.ToFloat64(e.svc.Metrics.Direct.WithLabelValues(r))
		}
		t.Errorf("%g tasks stored (first attempts from dispatch: %v); want every delivery made from dispatch", tasks, why)
	}
}

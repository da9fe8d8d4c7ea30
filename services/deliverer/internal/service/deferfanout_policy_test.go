package service_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	tenantrec "github.com/hookline/hookline/pkg/tenant"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Whether a line is full at fan-out is judged by the cap the deliver stage
// gives the subscription — its effective policy, a tenant's default
// included — not the bare record's. With a tenant default max_in_flight
// of 2 (the deliverer's own default 1), the line of a subscription that
// sets none holds 4 × 2 = 8 tasks in the deliver stage: the events that
// find 4 waiting join it, and are not deferred at fan-out as if its cap
// were 1.
func TestFanOutDeferralFollowsTheTenantsDefaultCap(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		"HOOKLINE_DEFAULT_MAX_IN_FLIGHT": "1",
		// No attempt times out (and is measured) while the test runs.
		"HOOKLINE_HTTP_TIMEOUT":     "20s",
		"HOOKLINE_ACK_WAIT":         "40s",
		"HOOKLINE_SHUTDOWN_TIMEOUT": "30s",
	})
	ctx := context.Background()
	tenants, err := tenantrec.NewStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.Update(ctx, tenant, func(r *hooklinev1.Tenant) error {
		r.Defaults = &hooklinev1.DeliveryPolicy{MaxInFlight: 2}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, await, "the deliverer to see the tenant's defaults", func() bool {
		return e.svc.TenantHas(tenant, func(r *hooklinev1.Tenant) bool { return r.GetDefaults().GetMaxInFlight() == 2 })
	})
	var holding atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		holding.Add(1)
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first
	e.subscribe(t, srv.URL, "order.created")
	m := e.svc.Metrics
	parked := func() float64 { return testutil.ToFloat64(m.AdmissionParkedNow) }
	deferred := func() float64 { return testutil.ToFloat64(m.Direct.WithLabelValues("deferred")) }

	// Two events hold the tenant's two slots; four wait in line behind.
	for i := range 2 {
		e.publish(t, "order.created", fmt.Sprintf("evt_tcap_%02d", i), `{}`)
	}
	eventually(t, await, "two requests held", func() bool { return holding.Load() == 2 })
	for i := 2; i < 6; i++ {
		e.publish(t, "order.created", fmt.Sprintf("evt_tcap_%02d", i), `{}`)
	}
	eventually(t, await, "four tasks waiting in line", func() bool { return parked() == 4 })

	// The line has room for four more under the effective cap.
	for i := 6; i < 10; i++ {
		e.publish(t, "order.created", fmt.Sprintf("evt_tcap_%02d", i), `{}`)
	}
	eventually(t, await, "the next four parked or deferred", func() bool { return parked()-4+deferred() == 4 })
	if d, p := deferred(), parked(); d != 0 || p != 8 {
		t.Fatalf("a line with room under the tenant's default cap (2): %g deliveries deferred at fan-out, %g waiting in line; want 0 and 8", d, p)
	}
}

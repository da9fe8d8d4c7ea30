package health_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A replica whose clock is hours or days off shares the failure streak's
// time line with the others: two failures a moment apart, one from each,
// neither open the circuit nor auto-disable the subscription, whichever
// fails first.
func TestSkewedReplicaDoesNotDisable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig()) // auto-disable after an hour of failures
	limits := health.Limits{AttemptTimeout: 5 * time.Second, MaxPause: 10 * time.Minute}
	replica := func(now func() time.Time) *health.Health {
		return health.New(testConfig(), limits, health.Deps{
			Redis:      e.rdb,
			Disabler:   health.NewDisabler(e.store, subscription.NewCache(e.rdb, e.store), e.js, nil),
			Registerer: prometheus.NewRegistry(),
			Now:        now,
		})
	}
	right := replica(nil)
	for _, skew := range healthtest.Skews {
		off := replica(healthtest.Skewed(skew))
		for _, order := range [][]*health.Health{{right, off}, {off, right}} {
			sub := e.subscription(t, func(s *hooklinev1.Subscription) {
				s.Id = "sub_" + skew.String()
				if order[0] == off {
					s.Id += "_off_first"
				}
				// Unchanged for a month: only the streak bounds the window.
				s.UpdatedAt = timestamppb.New(time.Now().Add(-30 * 24 * time.Hour))
			})
			for _, h := range order {
				slot, ref, err := h.Admit(context.Background(), sub, 0)
				if err != nil || slot == nil {
					t.Fatalf("clock off by %s: not admitted: %+v %v", skew, ref, err)
				}
				slot.Release(fail500)
				h.Flush()
			}
			got, _, err := e.store.Get(context.Background(), sub.GetId())
			if err != nil || got.GetDisabled() {
				t.Fatalf("clock off by %s: two failures a moment apart disabled %s (%v)", skew, sub.GetId(), err)
			}
			for _, h := range []*health.Health{right, off} {
				if slot, ref, err := h.Admit(context.Background(), sub, 0); err != nil || slot == nil {
					t.Fatalf("clock off by %s: after two failures (3 open the circuit): refused %+v %v", skew, ref, err)
				} else {
					slot.Return()
					h.Flush()
				}
			}
		}
	}
}

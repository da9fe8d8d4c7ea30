package deliver

import (
	"context"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// Admission is endpoint health's say before each HTTP attempt (rate limit,
// in-flight cap, circuit breaker, and the same for the endpoint's host).
type Admission interface {
	// Admit decides whether an attempt for sub may start now, with at
	// most limit attempts of sub in flight (0: sub's own max_in_flight or
	// the default cap): a Slot when it may, a Refusal when it may not (the
	// deliver stage then parks the task in its subscription's line, or
	// defers it). An error is an admission that could not be decided (the
	// task is deferred by the deliverer's retry delay).
	Admit(ctx context.Context, sub *hooklinev1.Subscription, limit int) (Slot, Refusal, error)
}

// Slot is the right to make one attempt for a subscription now.
type Slot interface {
	// Release learns from the attempt's result and gives the slot back.
	Release(res sender.Result)
	// Pass learns from the attempt's result like Release but keeps the
	// slot for the next task of the same subscription, which then attempts
	// without asking admission again. It returns false when it gave the
	// slot back instead: after anything but a clean success, for a probe
	// or a rate-limited subscription, or once the slot is older than its
	// admission may be trusted.
	Pass(res sender.Result) bool
	// Return gives a slot kept by Pass back without an attempt.
	Return()
}

// Refusal reasons: why a task may not be attempted now. They are the
// values of hookline_admission_deferred_total's reason label too, beside
// ReasonLineFull.
const (
	// RefusedFull: the subscription has its cap of attempts in flight; the
	// task waits in line for a slot.
	RefusedFull = "in_flight_full"
	// RefusedRate: the subscription's rate limit allows the next request
	// after Wait.
	RefusedRate = "rate_limited"
	// RefusedCircuitOpen: the endpoint failed too often; it is not called
	// before Wait.
	RefusedCircuitOpen = "circuit_open"
	// RefusedProbe: the circuit is half-open and one probe is in flight.
	RefusedProbe = "probe_in_flight"
	// RefusedTenant: the subscription's tenant has its share of this
	// deliverer's workers, or its cap across replicas, in flight; the task
	// waits in line.
	RefusedTenant = "tenant_full"
	// RefusedDestination: the endpoint's host has its cap of attempts in
	// flight across every subscription; the task waits in line.
	RefusedDestination = "destination_full"
	// RefusedDestinationOpen: attempts to the endpoint's host failed too
	// often in a row, across every subscription; its circuit is open (or
	// half-open with its probe in flight) and it is not called before
	// Wait.
	RefusedDestinationOpen = "destination_open"
)

// Refusal says why an attempt may not start now, and when to ask again.
type Refusal struct {
	Reason string
	// Wait is how long until admission may say yes (0 for RefusedFull:
	// a slot frees when another attempt ends).
	Wait time.Duration
}

package deliver

import (
	"context"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// Admission is endpoint health's say before each HTTP attempt (rate limit,
// in-flight limit, circuit breaker).
type Admission interface {
	// Admit decides whether an attempt for sub may start now. wait > 0:
	// defer the task that long WITHOUT consuming an attempt (same
	// scheduled-retry mechanism, Hookline-Attempt unchanged); done is then
	// ignored. An error defers the task by the deliverer's retry delay.
	// Otherwise done must be called with the attempt's result.
	Admit(ctx context.Context, sub *hooklinev1.Subscription) (done func(sender.Result), wait time.Duration, err error)
}

// AdmitAll admits every attempt: the Admission until endpoint health lands.
type AdmitAll struct{}

var _ Admission = AdmitAll{}

// Admit always admits.
func (AdmitAll) Admit(context.Context, *hooklinev1.Subscription) (func(sender.Result), time.Duration, error) {
	return func(sender.Result) {}, 0, nil
}

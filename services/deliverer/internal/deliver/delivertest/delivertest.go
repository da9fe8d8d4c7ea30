// Package delivertest holds what tests of the deliver stage (and of what
// plugs into it) need and production never uses.
package delivertest

import (
	"context"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// AdmitAll admits every attempt (no caps, no circuit): for tests of the
// deliver stage that run it without endpoint health.
type AdmitAll struct{}

var _ deliver.Admission = AdmitAll{}

// Admit always admits.
func (AdmitAll) Admit(context.Context, *hooklinev1.Subscription, int) (deliver.Slot, deliver.Refusal, error) {
	return freeSlot{}, deliver.Refusal{}, nil
}

// freeSlot is AdmitAll's slot: nothing to give back.
type freeSlot struct{}

func (freeSlot) Release(sender.Result)   {}
func (freeSlot) Pass(sender.Result) bool { return true }
func (freeSlot) Return()                 {}

package deliver

import (
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Headers opens a subscription's custom headers (name -> value, sealed at
// rest by the registry: subscription.SealHeaders). This is the one place
// they are opened (Options.Headers); the values go to the sender only and
// are never logged. Errors name a header, never its value.
type Headers func(sub *hooklinev1.Subscription) (map[string]string, error)

// OpenedHeaders opens custom headers with box (HOOKLINE_SECRET_KEY and its
// previous keys). A nil box takes values stored in clear (no key
// configured when they were written) and refuses sealed ones, so the task
// is dead-lettered rather than sent without the receiver's credential.
func OpenedHeaders(box *secretbox.Box) Headers {
	return func(sub *hooklinev1.Subscription) (map[string]string, error) {
		return subscription.OpenHeaders(box, sub)
	}
}

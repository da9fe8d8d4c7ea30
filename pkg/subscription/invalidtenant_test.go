package subscription_test

import (
	"context"
	"testing"
)

// TestAnInvalidTenantMatchesNothingEvenBeforeTheCacheIsReady: an event
// whose subject carries a tenant token no subscription can have (raw NATS
// publishers are not validated) matches nothing, on the KV path too (Redis
// not ready yet), instead of failing and being redone forever.
func TestAnInvalidTenantMatchesNothingEvenBeforeTheCacheIsReady(t *testing.T) {
	e := newEnv(t) // no syncer: the cache is not ready, lookups go to KV
	for _, tenant := range []string{"Bad Tenant", "-x", "a\x00b", ""} {
		subs, err := e.cache.ForEvent(context.Background(), tenant, "order.created")
		if err != nil || len(subs) != 0 {
			t.Errorf("tenant %q: %d subscriptions, err %v; want none and no error", tenant, len(subs), err)
		}
	}
}

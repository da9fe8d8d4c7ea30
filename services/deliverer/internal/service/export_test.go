package service

import (
	"context"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// SubscriptionsCurrent reports whether the deliverer's subscription lookups
// reflect KV revision rev (subcache.Memo.Current).
func (s *Service) SubscriptionsCurrent(rev uint64) bool { return s.memo.Current(rev) }

// LookupSubscription is the deliver stage's lookup of a subscription.
func (s *Service) LookupSubscription(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, error) {
	return s.memo.Get(ctx, tenant, id, 0)
}

// TenantHas reports whether the deliverer's tenant cache holds a record of
// tenant that check accepts.
func (s *Service) TenantHas(tenant string, check func(*hooklinev1.Tenant) bool) bool {
	return s.tenants.Has(tenant, check)
}

// Package registry is the subscription control plane: it creates, changes,
// rotates and deletes subscriptions in the KV store (the truth) and writes
// every change through to the Redis cache so deliverers see it at once (the
// Syncer is the safety net when that write fails).
package registry

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tenant"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNotReady is returned before the KV bucket is bound (topology not yet
// ensured).
var ErrNotReady = errors.New("subscription registry not ready")

// ErrNotFound is subscription.ErrNotFound, returned for an unknown id.
var ErrNotFound = subscription.ErrNotFound

// ErrTenantFull is returned by Create when the tenant already has the most
// subscriptions LimitPerTenant allows.
var ErrTenantFull = errors.New("the tenant has the most subscriptions allowed")

// writeThroughTimeout bounds the Redis write after a KV write: a slow Redis
// must not hold the API answer for long.
const writeThroughTimeout = 2 * time.Second

// SchemeHMAC is the default signature scheme: HMAC-SHA256 with whsec_
// secrets (SchemeEd25519 is the other).
const SchemeHMAC = signing.SchemeHMAC

type backend struct {
	store   *subscription.Store
	cache   *subscription.Cache
	tenants *tenant.Store
}

// Registry manages subscriptions. It is usable once Attach has been called.
type Registry struct {
	b       atomic.Pointer[backend]
	overlap time.Duration
	log     *zap.Logger
	now     func() time.Time
	box     *secretbox.Box // seals signing secrets at rest (keys.go); nil: clear
	// perTenant bounds a tenant's subscriptions (0: unbounded).
	perTenant int
}

// LimitPerTenant bounds how many subscriptions one tenant may have: each is
// a delivery per matching event, so an unbounded count let one tenant turn
// a 500-event batch into a million deliveries. Concurrent creates may pass
// it by a few (the count and the create are two KV operations).
func (r *Registry) LimitPerTenant(n int) { r.perTenant = n }

// New returns a Registry; overlap is how long a rotated-out secret keeps
// signing next to its successor.
func New(overlap time.Duration, log *zap.Logger) *Registry {
	return &Registry{overlap: overlap, log: log, now: time.Now}
}

// Attach binds the store, the cache and the tenants bucket (once the
// topology exists). tenants may be nil (no uids, no tenant defaults).
func (r *Registry) Attach(store *subscription.Store, cache *subscription.Cache, tenants *tenant.Store) {
	r.b.Store(&backend{store: store, cache: cache, tenants: tenants})
}

// ErrUIDTaken is returned by Create and Update when another subscription
// of the tenant holds the uid asked for.
var ErrUIDTaken = errors.New("uid is already used by another subscription of the tenant")

// claimUID makes id the holder of uid in tenant; a claim left by a
// subscription that no longer exists is taken over.
func (r *Registry) claimUID(ctx context.Context, b *backend, tenantName, uid, id string) error {
	if uid == "" {
		return nil
	}
	if b.tenants == nil {
		return errors.New("uids need the tenants bucket")
	}
	err := b.tenants.ClaimUID(ctx, tenantName, uid, id, func(holder string) (bool, error) {
		_, _, err := b.store.GetTenant(ctx, tenantName, holder)
		if errors.Is(err, subscription.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	var taken *tenant.ErrUIDTaken
	if errors.As(err, &taken) {
		return fmt.Errorf("%w (%s)", ErrUIDTaken, taken.Holder)
	}
	return err
}

// releaseUID drops id's claim of uid; a failure is logged (a claim left
// behind is taken over by the next claim: claimUID).
func (r *Registry) releaseUID(ctx context.Context, b *backend, tenantName, uid, id string) {
	if uid == "" || b.tenants == nil {
		return
	}
	if err := b.tenants.ReleaseUID(context.WithoutCancel(ctx), tenantName, uid, id); err != nil {
		r.log.Warn("subscription uid claim not released; the next claim of the uid takes it over", zap.String("subscription_id", id), zap.Error(err))
	}
}

// Tenant reads a tenant's record (nil, nil: none).
func (r *Registry) Tenant(ctx context.Context, name string) (*hooklinev1.Tenant, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	if b.tenants == nil {
		return nil, ErrNotReady
	}
	t, err := b.tenants.Get(ctx, name)
	if errors.Is(err, tenant.ErrNotFound) {
		return nil, nil
	}
	return t, err
}

// PutTenant replaces a tenant's defaults and metadata (validated by the
// caller) and returns the record.
func (r *Registry) PutTenant(ctx context.Context, name string, defaults *hooklinev1.DeliveryPolicy, metadata map[string]string) (*hooklinev1.Tenant, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	if b.tenants == nil {
		return nil, ErrNotReady
	}
	now := timestamppb.New(r.now())
	return b.tenants.Update(ctx, name, func(t *hooklinev1.Tenant) error {
		if t.GetCreatedAt() == nil {
			t.CreatedAt = now
		}
		t.UpdatedAt = now
		t.Defaults, t.Metadata = defaults, metadata
		return nil
	})
}

func (r *Registry) backend() (*backend, error) {
	b := r.b.Load()
	if b == nil {
		return nil, ErrNotReady
	}
	return b, nil
}

// NewSubscriptionID returns a fresh id: sub_<ULID>.
func NewSubscriptionID() string { return "sub_" + ulid.Make().String() }

// Create stores a new subscription from a validated request and returns it
// with its first secret revealed in the Secret field (the only time it is).
func (r *Registry) Create(ctx context.Context, req *hooklinev1.CreateSubscriptionRequest) (*hooklinev1.Subscription, error) {
	return r.CreateAs(ctx, NewSubscriptionID(), req)
}

// CreateAs is Create with the id chosen by the caller (an Idempotency-Key
// request reserves it before it runs). When a subscription of the
// request's tenant already has the id — the same request, run again after
// its first run was cut short — it is returned as it is, its current
// secret revealed, and nothing is created.
func (r *Registry) CreateAs(ctx context.Context, id string, req *hooklinev1.CreateSubscriptionRequest) (*hooklinev1.Subscription, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	if r.perTenant > 0 {
		n, err := b.store.Count(ctx, req.GetTenant())
		if err != nil {
			return nil, err
		}
		if n >= r.perTenant {
			return nil, fmt.Errorf("%w: tenant %s has %d of %d", ErrTenantFull, req.GetTenant(), n, r.perTenant)
		}
	}
	key, err := r.newKey(req.GetSignatureScheme())
	if err != nil {
		return nil, err
	}
	url, sealedURL, err := subscription.SealURL(r.box, req.GetUrl())
	if err != nil {
		return nil, err
	}
	headers, err := subscription.SealHeaders(r.box, req.GetHeaders(), nil)
	if err != nil {
		return nil, err
	}
	auth, err := subscription.SealAuth(r.box, req.GetAuth(), nil)
	if err != nil {
		return nil, err
	}
	format := req.GetPayloadFormat()
	if format == "" && b.tenants != nil {
		// The tenant's default applies at creation: a body's shape never
		// changes under a running receiver.
		t, err := b.tenants.Get(ctx, req.GetTenant())
		if err != nil && !errors.Is(err, tenant.ErrNotFound) {
			return nil, err
		}
		format = t.GetDefaults().GetPayloadFormat()
	}
	if format == "" {
		format = subscription.PayloadEnvelope // new subscriptions get the envelope
	}
	if err := r.claimUID(ctx, b, req.GetTenant(), req.GetUid(), id); err != nil {
		return nil, err
	}
	now := timestamppb.New(r.now())
	sub := &hooklinev1.Subscription{
		Id:                 id,
		Tenant:             req.GetTenant(),
		Url:                url,
		SealedUrl:          sealedURL,
		EventTypes:         req.GetEventTypes(),
		Description:        req.GetDescription(),
		CreatedAt:          now,
		UpdatedAt:          now,
		Keys:               []*hooklinev1.SigningKey{{Secret: key.stored, CreatedAt: now}},
		MaxInFlight:        req.GetMaxInFlight(),
		RateLimitPerSecond: req.GetRateLimitPerSecond(),
		RateLimitBurst:     req.GetRateLimitBurst(),
		SignatureScheme:    key.scheme,
		PublicKey:          key.public,
		Ordered:            req.GetOrdered(),
		PayloadFormat:      format,
		Headers:            headers,
		RetrySchedule:      req.GetRetrySchedule(),
		AttemptTimeout:     req.GetAttemptTimeout(),
		AutoDisableAfter:   req.GetAutoDisableAfter(),
		Metadata:           req.GetMetadata(),
		Uid:                req.GetUid(),
		Auth:               auth,
	}
	if err := subscription.Bind(r.box, sub); err != nil {
		// Only values sealed now are in a new record: every one binds.
		r.releaseUID(ctx, b, req.GetTenant(), req.GetUid(), id)
		return nil, err
	}
	rev, err := b.store.Create(ctx, sub)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return r.created(ctx, b, req.GetTenant(), id)
	}
	if err != nil {
		r.releaseUID(ctx, b, req.GetTenant(), req.GetUid(), id)
		return nil, err
	}
	r.writeThrough(ctx, b, rev, sub.GetTenant(), sub.GetId(), sub)
	out := proto.CloneOf(sub)
	out.Secret = key.secret
	return out, nil
}

// created answers a create whose subscription exists already: as Create
// would have, its current secret revealed.
func (r *Registry) created(ctx context.Context, b *backend, tenant, id string) (*hooklinev1.Subscription, error) {
	sub, _, err := b.store.GetTenant(ctx, tenant, id)
	if err != nil {
		return nil, fmt.Errorf("create subscription %s: it exists, but: %w", id, err)
	}
	if len(sub.GetKeys()) > 0 {
		secret, err := r.box.OpenFor(subscription.Binding(sub, subscription.FieldSigningKey), sub.GetKeys()[0].GetSecret())
		if err != nil {
			return nil, fmt.Errorf("create subscription %s: open its secret: %w", id, err)
		}
		sub.Secret = secret
	}
	return sub, nil
}

// Get returns a subscription or ErrNotFound.
func (r *Registry) Get(ctx context.Context, id string) (*hooklinev1.Subscription, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	sub, _, err := b.store.Get(ctx, id)
	return sub, err
}

// List returns the subscriptions of tenant, sorted by id.
func (r *Registry) List(ctx context.Context, tenant string) ([]*hooklinev1.Subscription, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	return b.store.List(ctx, tenant)
}

// ListPage returns up to limit subscriptions of tenant whose ids sort
// after after ("" = from the first), sorted by id, and the id the next
// page resumes after ("" on the last page).
func (r *Registry) ListPage(ctx context.Context, tenant, after string, limit int) ([]*hooklinev1.Subscription, string, error) {
	b, err := r.backend()
	if err != nil {
		return nil, "", err
	}
	return b.store.ListPage(ctx, tenant, after, limit)
}

// Update applies the fields present in a validated request. disabled=true
// disables with reason "manual" (a subscription already disabled keeps its
// reason and time); disabled=false re-enables and clears both.
func (r *Registry) Update(ctx context.Context, id string, req *hooklinev1.UpdateSubscriptionRequest) (*hooklinev1.Subscription, error) {
	if req.Uid == nil {
		return r.updateFields(ctx, id, req)
	}
	// A new uid is claimed before the record names it, and the old one
	// released after.
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	cur, _, err := b.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	old, uid := cur.GetUid(), req.GetUid()
	if uid == old {
		return r.updateFields(ctx, id, req)
	}
	if err := r.claimUID(ctx, b, cur.GetTenant(), uid, id); err != nil {
		return nil, err
	}
	sub, err := r.updateFields(ctx, id, req)
	if err != nil {
		r.releaseUID(ctx, b, cur.GetTenant(), uid, id)
		return nil, err
	}
	r.releaseUID(ctx, b, cur.GetTenant(), old, id)
	return sub, nil
}

func (r *Registry) updateFields(ctx context.Context, id string, req *hooklinev1.UpdateSubscriptionRequest) (*hooklinev1.Subscription, error) {
	return r.update(ctx, id, func(sub *hooklinev1.Subscription, now *timestamppb.Timestamp) error {
		// The URL as the API shows it (credentials masked) is the current
		// URL: sending it back changes nothing.
		if req.Url != nil && req.GetUrl() != sub.GetUrl() {
			sub.Url, sub.SealedUrl = req.GetUrl(), ""
		}
		if len(req.GetEventTypes()) > 0 {
			sub.EventTypes = req.GetEventTypes()
		}
		if req.Description != nil {
			sub.Description = req.GetDescription()
		}
		if req.MaxInFlight != nil {
			sub.MaxInFlight = req.GetMaxInFlight()
		}
		if req.RateLimitPerSecond != nil {
			sub.RateLimitPerSecond = req.GetRateLimitPerSecond()
		}
		if req.RateLimitBurst != nil {
			sub.RateLimitBurst = req.GetRateLimitBurst()
		}
		if req.PayloadFormat != nil {
			sub.PayloadFormat = req.GetPayloadFormat()
		}
		if req.RetrySchedule != nil {
			sub.RetrySchedule = req.GetRetrySchedule().GetDelays()
		}
		if req.AttemptTimeout != nil {
			sub.AttemptTimeout = req.GetAttemptTimeout()
		}
		if req.AutoDisableAfter != nil {
			sub.AutoDisableAfter = req.GetAutoDisableAfter()
		}
		if req.Metadata != nil {
			sub.Metadata = req.GetMetadata().GetValues()
		}
		if req.Uid != nil {
			sub.Uid = req.GetUid()
		}
		if req.Headers != nil {
			// The whole set is replaced; REDACTED (as the API shows a
			// value) keeps the stored one.
			h, err := subscription.SealHeaders(r.box, req.GetHeaders().GetValues(), sub.GetHeaders())
			if err != nil {
				return err
			}
			sub.Headers = h
		}
		if req.Auth != nil {
			// Replaced whole (type "": removed); REDACTED keeps the stored
			// secret while what it belongs with is unchanged.
			a, err := subscription.SealAuth(r.box, req.GetAuth(), sub.GetAuth())
			if err != nil {
				return err
			}
			sub.Auth = a
		}
		switch {
		case req.Disabled == nil:
		case req.GetDisabled() && !sub.GetDisabled():
			sub.Disabled, sub.DisabledReason, sub.DisabledAt = true, wire.DisabledManual, now
		case !req.GetDisabled():
			sub.Disabled, sub.DisabledReason, sub.DisabledAt = false, "", nil
		}
		return nil
	})
}

// RotateSecret puts a new secret first in the keys; every older key that
// had no expiry gets one (now + overlap) and keys already expired are
// dropped. It returns the subscription with the new secret revealed.
func (r *Registry) RotateSecret(ctx context.Context, id string) (*hooklinev1.Subscription, error) {
	fresh, err := r.newRotationKeys()
	if err != nil {
		return nil, err
	}
	sub, err := r.update(ctx, id, func(sub *hooklinev1.Subscription, now *timestamppb.Timestamp) error {
		sub.PublicKey = fresh.of(sub).public
		keys := []*hooklinev1.SigningKey{{Secret: fresh.of(sub).stored, CreatedAt: now}}
		expires := timestamppb.New(now.AsTime().Add(r.overlap))
		for _, k := range sub.GetKeys() {
			switch {
			case k.GetExpiresAt() == nil:
				k.ExpiresAt = expires
			case !k.GetExpiresAt().AsTime().After(now.AsTime()):
				continue // expired already
			}
			keys = append(keys, k)
		}
		sub.Keys = keys
		return nil
	})
	if err != nil {
		return nil, err
	}
	sub.Secret = fresh.of(sub).secret
	return sub, nil
}

func (r *Registry) update(ctx context.Context, id string, change func(*hooklinev1.Subscription, *timestamppb.Timestamp) error) (*hooklinev1.Subscription, error) {
	b, err := r.backend()
	if err != nil {
		return nil, err
	}
	sub, rev, err := b.store.Update(ctx, id, func(sub *hooklinev1.Subscription) error {
		now := timestamppb.New(r.now())
		if err := change(sub, now); err != nil {
			return err
		}
		r.sealKeys(sub)
		if err := r.sealURL(sub); err != nil {
			return err
		}
		r.sealHeaders(sub)
		subscription.ResealAuth(r.box, sub.GetAuth())
		// Every secret bound to this record and field (those written
		// before binding existed are bound now). One that cannot be bound
		// stays as it is, and the write goes on: the deliverer refuses it.
		if err := subscription.Bind(r.box, sub); err != nil {
			r.log.Warn("a sealed secret of the subscription cannot be bound to it; left as it is (its deliveries are dead-lettered until it is replaced)",
				zap.String("subscription_id", sub.GetId()), zap.Error(err))
		}
		sub.UpdatedAt = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.writeThrough(ctx, b, rev, sub.GetTenant(), sub.GetId(), sub)
	return sub, nil
}

// Delete removes a subscription (its pending deliveries are dead-lettered
// by the deliverers with reason subscription_deleted).
func (r *Registry) Delete(ctx context.Context, id string) error {
	b, err := r.backend()
	if err != nil {
		return err
	}
	cur, _, err := b.store.Get(ctx, id)
	if err != nil {
		return err
	}
	tenantName, rev, err := b.store.Delete(ctx, id)
	if err != nil {
		return err
	}
	r.writeThrough(ctx, b, rev, tenantName, id, nil)
	r.releaseUID(ctx, b, tenantName, cur.GetUid(), id)
	return nil
}

// writeThrough applies a KV write to Redis at once. A failure is logged, not
// returned: the write is already durable and the Syncer will carry it.
func (r *Registry) writeThrough(ctx context.Context, b *backend, rev uint64, tenant, id string, sub *hooklinev1.Subscription) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeThroughTimeout)
	defer cancel()
	if err := b.cache.Apply(ctx, rev, tenant, id, sub); err != nil {
		r.log.Warn("subscription cache write-through failed; the syncer will apply it",
			zap.String("subscription_id", id), zap.Uint64("revision", rev), zap.Error(err))
	}
}

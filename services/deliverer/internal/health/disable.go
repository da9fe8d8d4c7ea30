package health

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Disabler turns a subscription off. changed is false when it was already
// disabled (by someone else, or manually).
type Disabler interface {
	Disable(ctx context.Context, sub *hooklinev1.Subscription, reason string) (changed bool, err error)
}

// Store is the registry's truth (subscription.Store).
type Store interface {
	Update(ctx context.Context, id string, fn func(*hooklinev1.Subscription) error) (*hooklinev1.Subscription, uint64, error)
}

// Cache is the deliverers' lookup (subscription.Cache).
type Cache interface {
	Apply(ctx context.Context, rev uint64, tenant, id string, sub *hooklinev1.Subscription) error
}

// Publisher publishes to JetStream (jetstream.JetStream).
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var (
	_ Disabler = (*SubscriptionDisabler)(nil)
	_ Store    = (*subscription.Store)(nil)
	_ Cache    = (*subscription.Cache)(nil)
)

// DisabledEventType is the type of the event published to EVENTS when
// endpoint health disables a subscription, so that the platform can tell
// its owner.
const DisabledEventType = "hookline.subscription.disabled"

// DisabledEvent is the body of a hookline.subscription.disabled event. It
// holds no secret and no URL path, query or userinfo: only the host.
type DisabledEvent struct {
	SubscriptionID string    `json:"subscription_id"`
	Reason         string    `json:"reason"`
	DisabledAt     time.Time `json:"disabled_at"`
	URLHost        string    `json:"url_host,omitempty"`
}

// republishWithin: a subscription found already disabled by endpoint
// health this recently gets its event published again (deduplicated by
// its id), in case the replica that disabled it died before publishing.
// It stays well inside the EVENTS duplicate window.
const republishWithin = 5 * time.Minute

// SubscriptionDisabler disables subscriptions in the KV registry (the truth), makes
// the change visible in the Redis cache at once, and publishes the
// hookline.subscription.disabled event.
type SubscriptionDisabler struct {
	store Store
	cache Cache
	js    Publisher
	log   *zap.Logger
	now   func() time.Time
}

// NewDisabler returns a SubscriptionDisabler. cache may be nil (the Syncer's watch
// then brings the change to Redis within a second).
func NewDisabler(store Store, cache Cache, js Publisher, log *zap.Logger) *SubscriptionDisabler {
	if log == nil {
		log = zap.NewNop()
	}
	return &SubscriptionDisabler{store: store, cache: cache, js: js, log: log.Named("health"), now: time.Now}
}

var errAlreadyDisabled = errors.New("already disabled")

// Disable sets disabled, disabled_reason and disabled_at, unless the
// subscription is already disabled, and publishes the event once per
// disable: its Nats-Msg-Id (and event id) is derived from the subscription
// and disabled_at.
func (r *SubscriptionDisabler) Disable(ctx context.Context, sub *hooklinev1.Subscription, reason string) (bool, error) {
	now := r.now().UTC().Truncate(time.Millisecond)
	var current *hooklinev1.Subscription
	updated, rev, err := r.store.Update(ctx, sub.GetId(), func(s *hooklinev1.Subscription) error {
		if s.GetDisabled() {
			current = s
			return errAlreadyDisabled
		}
		s.Disabled = true
		s.DisabledReason = reason
		s.DisabledAt = timestamppb.New(now)
		s.UpdatedAt = timestamppb.New(now)
		return nil
	})
	switch {
	case errors.Is(err, errAlreadyDisabled):
		// Re-publish only an endpoint-health disable of a moment ago.
		if (current.GetDisabledReason() == wire.DisabledGone || current.GetDisabledReason() == wire.DisabledFailing) &&
			now.Sub(current.GetDisabledAt().AsTime()) < republishWithin {
			if err := r.publish(ctx, current); err != nil {
				return false, err
			}
		}
		return false, nil
	case err != nil:
		return false, fmt.Errorf("disable subscription %s: %w", sub.GetId(), err)
	}
	if r.cache != nil {
		if err := r.cache.Apply(ctx, rev, updated.GetTenant(), updated.GetId(), updated); err != nil {
			// The Syncer's watch applies it within a second.
			r.log.Warn("disabled subscription not written to the cache yet", zap.String("subscription_id", updated.GetId()), zap.Error(err))
		}
	}
	if err := r.publish(ctx, updated); err != nil {
		return true, err
	}
	return true, nil
}

// DisabledEventID is the event id (and Nats-Msg-Id) of the disabled event
// of a subscription disabled at t: evt_<ULID> with t as the ULID time and
// entropy from the subscription id, so every replica derives the same id.
func DisabledEventID(subscriptionID string, t time.Time) string {
	sum := sha256.Sum256([]byte("hookline.subscription.disabled:" + subscriptionID + ":" + t.UTC().Format(time.RFC3339Nano)))
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(t))
	_ = id.SetEntropy(sum[:10])
	return "evt_" + id.String()
}

func (r *SubscriptionDisabler) publish(ctx context.Context, sub *hooklinev1.Subscription) error {
	at := sub.GetDisabledAt().AsTime().UTC()
	ev := DisabledEvent{
		SubscriptionID: sub.GetId(),
		Reason:         sub.GetDisabledReason(),
		DisabledAt:     at,
		URLHost:        urlHost(sub.GetUrl()),
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("disabled event: %w", err)
	}
	id := DisabledEventID(sub.GetId(), at)
	m := nats.NewMsg(stream.EventSubject(sub.GetTenant(), DisabledEventType))
	m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(sub.GetTenant(), id))
	m.Header.Set(stream.HeaderOccurredAt, at.Format(time.RFC3339Nano))
	m.Data = body
	var lastErr error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("publish disabled event %s: %w", id, errors.Join(lastErr, ctx.Err()))
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		if _, lastErr = r.js.PublishMsg(ctx, m); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("publish disabled event %s: %w", id, lastErr)
}

// urlHost is the host[:port] of a URL, never its userinfo, path or query.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// Package opevents publishes operational events for tenants: what
// Hookline noticed about a tenant's own subscription, as ordinary events of
// that tenant (events.<tenant>.hookline.…), so that they are delivered like
// any other event — signed, retried, replayable — to whichever of the
// tenant's subscriptions asks for them (a filter such as hookline.> or
// hookline.subscription.*). Never to another tenant: the subject is the
// subscription's own tenant, and the API refuses hookline.* types from
// tenants, so none can be forged.
//
// Each event's id is derived from what it reports, so that replicas (and a
// retried publish) store it once within the EVENTS duplicate window.
package opevents

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

// Event types (beside hookline.subscription.disabled, published by
// endpoint health when it disables a subscription).
const (
	// FailingType: the subscription's circuit opened (its endpoint failed
	// HOOKLINE_BREAKER_FAILURES attempts in a row). Once per failure
	// streak, not again when a probe fails.
	FailingType = "hookline.subscription.failing"
	// RecoveredType: the first success after the circuit opened.
	RecoveredType = "hookline.subscription.recovered"
	// DeadLetteredType: a delivery of the subscription was dead-lettered;
	// at most one per subscription per DeadLetterWindow.
	DeadLetteredType = "hookline.delivery.dead_lettered"
	// DestinationFailingType: the circuit of the host the subscription
	// delivers to opened (HOOKLINE_DESTINATION_BREAKER_FAILURES failures
	// in a row, whichever subscriptions they were of), told to the tenant
	// whose attempt opened it and to every tenant whose delivery it then
	// refused; once per tenant and spell of the circuit (its opening to
	// its close).
	DestinationFailingType = "hookline.destination.failing"
	// DestinationRecoveredType: the host's circuit closed, told to every
	// tenant told it was failing, once.
	DestinationRecoveredType = "hookline.destination.recovered"
)

// DeadLetterWindow debounces dead_lettered events: the first dead letter of
// a subscription in each window (aligned to the clock) is reported. It is
// shorter than the EVENTS duplicate window (20m by default), which makes
// every replica's report of a window one event.
const DeadLetterWindow = 15 * time.Minute

// Stages of a failing event.
const (
	// StageCircuitOpen: the circuit opened (the streak's first opening).
	StageCircuitOpen = "circuit_open"
	// StageAutoDisableWarning: the subscription has failed for a share
	// (AutoDisableShare) of HOOKLINE_AUTO_DISABLE_AFTER and will be
	// disabled at AutoDisableAt unless an attempt succeeds.
	StageAutoDisableWarning = "auto_disable_warning"
)

// Failing is the body of a hookline.subscription.failing event.
type Failing struct {
	SubscriptionID string `json:"subscription_id"`
	// Stage is StageCircuitOpen or StageAutoDisableWarning.
	Stage string `json:"stage"`
	// AutoDisableShare is the share of the auto-disable window spent
	// failing (0.5, 0.9) for a warning.
	AutoDisableShare float64 `json:"auto_disable_share,omitempty"`
	// AutoDisableAt is when auto-disable turns the subscription off if
	// every attempt keeps failing (absent when auto-disable is off).
	AutoDisableAt  *time.Time `json:"auto_disable_at,omitempty"`
	FailingSince   time.Time  `json:"failing_since"`
	Failures       int        `json:"failures"`
	LastStatus     int        `json:"last_status,omitempty"`
	LastErrorClass string     `json:"last_error_class,omitempty"`
	// RetryAt is when the circuit lets a probe through.
	RetryAt time.Time `json:"retry_at"`
	URLHost string    `json:"url_host,omitempty"`
}

// Recovered is the body of a hookline.subscription.recovered event.
type Recovered struct {
	SubscriptionID string    `json:"subscription_id"`
	RecoveredAt    time.Time `json:"recovered_at"`
	URLHost        string    `json:"url_host,omitempty"`
}

// DestinationFailing is the body of a hookline.destination.failing event.
// It says nothing of the host's other subscriptions or tenants: not how
// many failures were theirs, nor when the streak began, nor whose attempt
// opened it.
type DestinationFailing struct {
	// SubscriptionID is the tenant's own subscription whose attempt
	// opened the circuit, or whose delivery it refused first; every
	// subscription to URLHost waits with it.
	SubscriptionID string `json:"subscription_id"`
	URLHost        string `json:"url_host"`
	// LastStatus and LastErrorClass are what the host answered to the
	// attempt that opened the circuit (a 5xx, a timeout, a refused
	// connection…), whichever tenant's attempt it was: they describe the
	// host, and name no subscription, path or tenant.
	LastStatus     int    `json:"last_status,omitempty"`
	LastErrorClass string `json:"last_error_class,omitempty"`
	// OpenedAt is when the circuit opened: the same for every tenant told
	// of one spell.
	OpenedAt time.Time `json:"opened_at"`
	// RetryAt is when the circuit lets a probe through.
	RetryAt time.Time `json:"retry_at"`
}

// DestinationRecovered is the body of a hookline.destination.recovered
// event.
type DestinationRecovered struct {
	// SubscriptionID is the tenant's subscription it was told failing
	// about.
	SubscriptionID string    `json:"subscription_id"`
	URLHost        string    `json:"url_host"`
	RecoveredAt    time.Time `json:"recovered_at"`
}

// DeadLettered is the body of a hookline.delivery.dead_lettered event: the
// first dead letter of the subscription in the window.
type DeadLettered struct {
	SubscriptionID string    `json:"subscription_id"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	Reason         string    `json:"reason"`
	Attempts       int       `json:"attempts"`
	LastStatus     int       `json:"last_status,omitempty"`
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
	// WindowStart and WindowSeconds: later dead letters of the
	// subscription in this window are not reported again (GET
	// /v1/dead-letters?subscription_id=… lists them all).
	WindowStart   time.Time `json:"window_start"`
	WindowSeconds int       `json:"window_seconds"`
}

// JetStream publishes (jetstream.JetStream).
type JetStream interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publisher publishes operational events to EVENTS.
type Publisher struct {
	js  JetStream
	now func() time.Time

	mu       sync.Mutex
	reported map[string]time.Time // subscription → window last reported by this process
}

// New publishes with js.
func New(js JetStream) *Publisher {
	return &Publisher{js: js, now: time.Now, reported: map[string]time.Time{}}
}

// Failing reports that sub's circuit opened for the first time in the
// failure streak that started at f.FailingSince, or (f.Stage) that the
// streak has lasted a share of the auto-disable window.
func (p *Publisher) Failing(ctx context.Context, sub *hooklinev1.Subscription, f Failing) error {
	f.SubscriptionID, f.URLHost = sub.GetId(), URLHost(sub.GetUrl())
	if f.Stage == "" {
		f.Stage = StageCircuitOpen
	}
	// One event per streak and stage (and share).
	id := EventID(fmt.Sprintf("%s:%s:%g", FailingType, f.Stage, f.AutoDisableShare), sub.GetId(), f.FailingSince)
	return p.publish(ctx, sub.GetTenant(), FailingType, id, p.now(), f)
}

// Recovered reports the first success of sub after its circuit opened.
func (p *Publisher) Recovered(ctx context.Context, sub *hooklinev1.Subscription, at time.Time) error {
	r := Recovered{SubscriptionID: sub.GetId(), RecoveredAt: at.UTC(), URLHost: URLHost(sub.GetUrl())}
	return p.publish(ctx, sub.GetTenant(), RecoveredType, EventID(RecoveredType, sub.GetId(), at), at, r)
}

// DestinationFailing reports to sub's tenant that the circuit of sub's
// host opened at f.OpenedAt (after sub's attempt failed, or before sub's
// delivery was refused). One event per subscription and opening.
func (p *Publisher) DestinationFailing(ctx context.Context, sub *hooklinev1.Subscription, f DestinationFailing) error {
	f.SubscriptionID, f.URLHost = sub.GetId(), URLHost(sub.GetUrl())
	f.OpenedAt, f.RetryAt = f.OpenedAt.UTC(), f.RetryAt.UTC()
	id := EventID(DestinationFailingType+":"+f.URLHost, sub.GetId(), f.OpenedAt)
	return p.publish(ctx, sub.GetTenant(), DestinationFailingType, id, f.OpenedAt, f)
}

// DestinationRecovered reports to tenant that the circuit of the host its
// subscription r.SubscriptionID delivers to (r.URLHost, as URLHost reads
// the subscription's URL) closed at r.RecoveredAt.
func (p *Publisher) DestinationRecovered(ctx context.Context, tenant string, r DestinationRecovered) error {
	r.RecoveredAt = r.RecoveredAt.UTC()
	id := EventID(DestinationRecoveredType+":"+r.URLHost, r.SubscriptionID, r.RecoveredAt)
	return p.publish(ctx, tenant, DestinationRecoveredType, id, r.RecoveredAt, r)
}

// DeadLettered reports l unless a dead letter of its subscription was
// already reported in the current window, or l is itself about an
// operational event (a tenant's endpoint that fails them would otherwise
// report its own reports, forever).
func (p *Publisher) DeadLettered(ctx context.Context, l deadletter.Letter) error {
	if strings.HasPrefix(l.EventType, stream.ReservedTypePrefix) || l.Tenant == "" || l.SubscriptionID == "" || l.Tenant == "unknown" {
		return nil
	}
	now := p.now().UTC()
	window := now.Truncate(DeadLetterWindow)
	if !p.first(l.SubscriptionID, window) {
		return nil
	}
	d := DeadLettered{
		SubscriptionID: l.SubscriptionID, EventID: l.EventID, EventType: l.EventType, Reason: l.Reason,
		Attempts: l.Attempts, LastStatus: l.LastStatus, DeadLetteredAt: now,
		WindowStart: window, WindowSeconds: int(DeadLetterWindow / time.Second),
	}
	err := p.publish(ctx, l.Tenant, DeadLetteredType, EventID(DeadLetteredType, l.SubscriptionID, window), now, d)
	if err != nil {
		p.forget(l.SubscriptionID, window) // the next dead letter tries again
	}
	return err
}

// first records that sub's window is being reported by this process; false
// when it already was.
func (p *Publisher) first(sub string, window time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.reported[sub]; ok && w.Equal(window) {
		return false
	}
	if len(p.reported) >= 10000 {
		for k, w := range p.reported {
			if w.Before(window) {
				delete(p.reported, k)
			}
		}
	}
	p.reported[sub] = window
	return true
}

func (p *Publisher) forget(sub string, window time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.reported[sub]; ok && w.Equal(window) {
		delete(p.reported, sub)
	}
}

func (p *Publisher) publish(ctx context.Context, tenant, typ, id string, at time.Time, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%s event: %w", typ, err)
	}
	m := nats.NewMsg(stream.EventSubject(tenant, typ))
	m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, id))
	m.Header.Set(stream.HeaderOccurredAt, at.UTC().Format(time.RFC3339Nano))
	m.Data = b
	var lastErr error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("publish %s event %s: %w", typ, id, errors.Join(lastErr, ctx.Err()))
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		if _, lastErr = p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream.Events)); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("publish %s event %s: %w", typ, id, lastErr)
}

// EventID is evt_<ULID> with t as the ULID time and entropy from the type
// and subscription: every replica derives the same id for the same fact.
func EventID(typ, subscriptionID string, t time.Time) string {
	sum := sha256.Sum256([]byte(typ + ":" + subscriptionID + ":" + t.UTC().Format(time.RFC3339Nano)))
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(t))
	_ = id.SetEntropy(sum[:10])
	return "evt_" + id.String()
}

// URLHost is the host[:port] of a URL, never its userinfo, path or query.
func URLHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// DeadLetters wraps a dead-letter publisher: each dead letter newly stored
// is reported (debounced) as a dead_lettered event. A failure to report is
// given to onError and never fails the dead letter.
type DeadLetters struct {
	Next interface {
		Publish(ctx context.Context, l deadletter.Letter) (duplicate bool, err error)
	}
	Events  *Publisher
	OnError func(error)
}

// Publish stores l, then reports it.
func (d DeadLetters) Publish(ctx context.Context, l deadletter.Letter) (bool, error) {
	dup, err := d.Next.Publish(ctx, l)
	if err != nil || dup {
		return dup, err
	}
	if rerr := d.Events.DeadLettered(ctx, l); rerr != nil && d.OnError != nil {
		d.OnError(rerr)
	}
	return false, nil
}

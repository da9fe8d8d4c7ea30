package health

import (
	"context"
	"strings"
	"sync"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
	"github.com/hookline/hookline/services/deliverer/internal/opevents"
	"github.com/redis/go-redis/v9"
)

// Telling every tenant held by a destination's circuit.
//
// A host's circuit is shared by every subscription and tenant that
// delivers to it. The tenant whose attempt opens it is told at once
// (hostResult); every other tenant is told when one of its deliveries is
// first refused by it (destination_open), once per spell of the circuit
// (from its opening to its close, across failed probes) across all
// replicas: the circuit's state hash in Redis records who was told
// (breaker.TellCmd: a field told:<tenant> holding the subscription it was
// told about and that subscription's URL host). The close reads and
// deletes the record in the step that closes the circuit
// (breaker.CloseCmd), so one replica tells each of them once that the host
// recovered, naming the subscription each was told failing about. Nobody
// else is told it recovered, the closer's tenant included when it was not
// told it failing. The record lives and dies with the circuit's state: a
// state lost with Redis, or expired, loses the record, and then at worst
// a recovered event is missing.
//
// Each replica remembers the spells its tenants were told of (toldHere),
// so that only a tenant's first refusal of a spell on a replica costs a
// Redis command; a tenant's event id is derived from its subscription and
// the spell's opening, so JetStream stores a repeated publish once.

// tellsDestinations: tenants are told about destination circuits.
func (h *Health) tellsDestinations() bool {
	_, ok := h.notifier.(DestinationNotifier)
	return ok && h.dest != nil
}

// toldValue is what the record of a told tenant holds: the URL host of its
// subscription (for its events; never the path, query or userinfo) and the
// subscription's id, in that order, separated by a space (a host has
// none).
func toldValue(sub *hooklinev1.Subscription) string {
	return opevents.URLHost(sub.GetUrl()) + " " + sub.GetId()
}

// parseTold reads toldValue.
func parseTold(what string) (urlHost, subscriptionID string) {
	urlHost, subscriptionID, _ = strings.Cut(what, " ")
	return urlHost, subscriptionID
}

// tellRefused tells sub's tenant, whose delivery the circuit of host
// refused in the spell whose streak began at since, that the host is
// failing, unless it was told of this spell already. It does not wait:
// Redis and the publish are asked on another goroutine (Flush waits for
// it).
func (h *Health) tellRefused(sub *hooklinev1.Subscription, host string, since time.Time) {
	if host == "" || !h.tellsDestinations() {
		return
	}
	k := toldKey{tenant: sub.GetTenant(), host: host}
	if !h.toldHere.claim(k, since) {
		return
	}
	h.telling.add()
	go func() {
		defer h.telling.done()
		ctx := context.Background()
		what := toldValue(sub)
		var pending *breaker.PendingTell
		h.batch.Do(func(pipe redis.Pipeliner) {
			pending = h.dest.TellCmd(ctx, pipe, destinationKey(host), sub.GetTenant(), what)
		})
		t, err := pending.Result()
		switch {
		case err != nil:
			h.toldHere.forget(k, since) // the next refusal asks again
			h.m.errors.WithLabelValues("notify").Inc()
			h.warnRedis("notify", err)
			return
		case !t.Open:
			return // closed meanwhile: nothing to tell
		}
		if !t.Since.Equal(since) {
			// Another spell than the refusal's (it closed and opened
			// again meanwhile): remember the one recorded.
			h.toldHere.forget(k, since)
			h.toldHere.set(k, t.Since)
		}
		if !t.First {
			return // told already, here or by another replica
		}
		opened := t.OpenedAt
		if opened.IsZero() {
			opened = t.Since // opened without an Opening: the streak's start names the spell
		}
		f := opevents.DestinationFailing{LastStatus: t.Status, LastErrorClass: t.ErrorClass, OpenedAt: opened, RetryAt: t.OpenUntil}
		if !h.notify(sub, func(ctx context.Context, n Notifier) error {
			return n.(DestinationNotifier).DestinationFailing(ctx, sub, f)
		}) {
			h.untell(sub, host, what, t.Since)
		}
	}()
}

// untell forgets that sub's tenant was told of host's spell since, when
// its event could not be published: its next refusal tells it again, and
// the close does not tell it recovered. It waits for Redis.
func (h *Health) untell(sub *hooklinev1.Subscription, host, what string, since time.Time) {
	h.toldHere.forget(toldKey{tenant: sub.GetTenant(), host: host}, since)
	var cmd *redis.Cmd
	ctx := context.Background()
	h.batch.Do(func(pipe redis.Pipeliner) {
		cmd = h.dest.UntellCmd(ctx, pipe, destinationKey(host), sub.GetTenant(), what)
	})
	h.checkRan("notify", cmd)
}

// tellRecovered tells every tenant told of a spell that the host's
// circuit closed, each about the subscription it was told failing about,
// on another goroutine (Flush waits for it): a closed circuit's told may
// be many tenants.
func (h *Health) tellRecovered(told []breaker.Told) {
	if len(told) == 0 || !h.tellsDestinations() {
		return
	}
	at := h.now()
	h.telling.add()
	go func() {
		defer h.telling.done()
		for _, t := range told {
			urlHost, id := parseTold(t.What)
			r := opevents.DestinationRecovered{SubscriptionID: id, URLHost: urlHost, RecoveredAt: at}
			h.notifyID(id, func(ctx context.Context, n Notifier) error {
				return n.(DestinationNotifier).DestinationRecovered(ctx, t.Who, r)
			})
		}
	}()
}

// toldKey is a tenant at a host.
type toldKey struct{ tenant, host string }

// toldHereMax bounds toldHere: past it, it starts over (at worst, a Redis
// command per tenant and host again).
const toldHereMax = 10000

// toldHere is what this replica knows of the tenants told, per host: the
// spell (its streak's start) each was told of, or is being told of now.
type toldHere struct {
	mu sync.Mutex
	m  map[toldKey]int64
}

// claim reports whether k's tenant is to be told of the spell since, and
// then marks it as being told (so that its concurrent refusals do not
// ask again).
func (t *toldHere) claim(k toldKey, since time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[k]; ok && v == since.UnixMilli() {
		return false
	}
	t.setLocked(k, since)
	return true
}

func (t *toldHere) set(k toldKey, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(k, since)
}

func (t *toldHere) setLocked(k toldKey, since time.Time) {
	if t.m == nil || len(t.m) >= toldHereMax {
		t.m = map[toldKey]int64{}
	}
	t.m[k] = since.UnixMilli()
}

// forget drops k when it holds the spell since.
func (t *toldHere) forget(k toldKey, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[k]; ok && v == since.UnixMilli() {
		delete(t.m, k)
	}
}

// tracker counts goroutines under way, and waits until none is; unlike a
// sync.WaitGroup, one may start while another caller waits.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

func (t *tracker) add() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
		t.idle = nil
	}
}

// wait returns once no goroutine is under way.
func (t *tracker) wait() {
	for {
		t.mu.Lock()
		idle := t.idle
		t.mu.Unlock()
		if idle == nil {
			return
		}
		<-idle
	}
}

// Package health is endpoint health: the deliverer's Admission, asked before
// every HTTP attempt, and the hook that learns from every attempt's result.
//
// Before an attempt, in this order (each step gives back what the previous
// ones took when it says no):
//
//  1. the circuit breaker (breaker): open → wait for the cool-down; half-open
//     → only the probe goes;
//  2. the in-flight cap (inflight): at the cap → the task waits in its
//     subscription's line until a slot frees (the deliver stage parks it);
//  3. the rate limit (ratelimit), when the subscription has one → wait until
//     a request is allowed.
//
// Fair sharing rides on the same steps: before them, the tenant's share of
// this deliverer's workers (TenantWorkerShare: one tenant's slow flood
// cannot take every worker); beside the in-flight cap, in the same round
// trip, the tenant's cap across replicas (TenantMaxInFlight) and the
// destination host's (DestinationMaxInFlight: three hundred subscriptions
// to one URL are still one host's worth of requests). Each refusal parks
// the task in its subscription's line like a full cap.
//
// Beside the subscription's circuit, in the same round trip, the
// destination host's (DestinationBreakerFailures, the same breaker keyed
// by host and port): failures in a row to one host, whichever
// subscriptions and tenants they belong to, open it for every
// subscription to that host, so that three hundred subscriptions to a
// dead host do not each spend their own failures on it. What counts
// for the host is what the host says: a timeout, a refused or reset
// connection, a DNS or TLS failure or a 5xx is a failure; any other
// answer (2xx, and a 4xx of one subscription's path too) shows it is up
// and closes its circuit; the rest (canceled, blocked, an OAuth token
// that could not be had, a client certificate's TLS trouble) says nothing
// about it. Half-open, one probe goes for the host, the others wait.
//
// The in-flight cap comes before the rate limit so that a task turned away
// for want of a slot does not spend a request of the rate. A refusal never
// spends an attempt: the deliver stage parks the task (short waits) or
// defers it (long ones). An admitted slot may be passed from one attempt to
// the next task of the same line after a clean success (Slot.Pass), for up
// to a second, without asking Redis again.
//
// After an attempt:
//
//   - 2xx closes the circuit and ends the failure streak;
//   - any other answer or error is a failure of the streak (the breaker
//     counts it); a 429 or 503 with Retry-After also pauses the circuit
//     that long (at most MaxPause), so no replica calls the endpoint early;
//   - 410 Gone disables the subscription at once (reason "gone");
//   - a streak that has lasted AutoDisableAfter — counted from the later of
//     its first failure and the subscription's last change, so re-enabling
//     or fixing a subscription gives it a whole new window — disables it
//     (reason "failing").
//
// An attempt cut short by the deliverer itself (canceled) counts neither way.
// Redis trouble never stops delivery: the breaker is then taken as closed
// and the cap and rate are enforced per process (logged and counted in one
// metric: redisdown).
package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/redisclock"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/inflight"
	"github.com/hookline/hookline/services/deliverer/internal/opevents"
	"github.com/hookline/hookline/services/deliverer/internal/ratelimit"
	"github.com/hookline/hookline/services/deliverer/internal/redisbatch"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

var _ deliver.Admission = (*Health)(nil)

// leaseMargin is added to the attempt timeout for in-flight and probe
// leases: the time to sign, send and settle around the HTTP call.
const leaseMargin = 10 * time.Second

// Deps are what Health works with.
type Deps struct {
	Redis redis.UniversalClient
	// Disabler turns subscriptions off (nil: auto-disable and 410 only log).
	Disabler Disabler
	// Notifier tells tenants when a circuit opens and when it closes again
	// (nil: nobody is told).
	Notifier Notifier
	Log      *zap.Logger
	// Registerer gets the metrics (none when nil).
	Registerer prometheus.Registerer
	// Now is this process's clock (time.Now when nil): what stays in the
	// process (a slot passed on, a notification's time).
	Now func() time.Time
	// StateClock is the time of the circuits, leases and rates kept in
	// Redis: nil (the default) is Redis' own, so that a replica whose
	// clock is off shares the others' time line (redisclock); tests that
	// move time set theirs.
	StateClock redisclock.Clock
}

// Limits are the deliverer settings health depends on.
type Limits struct {
	// AttemptTimeout is the HTTP attempt timeout: leases outlive it by a
	// margin.
	AttemptTimeout time.Duration
	// MaxPause caps how long a Retry-After pauses a circuit (the
	// deliverer's HOOKLINE_MAX_RETRY_AFTER).
	MaxPause time.Duration
	// Workers is the deliverer's attempt workers: the tenant worker share
	// is a share of them (0: no share).
	Workers int
}

// Health implements deliver.Admission.
type Health struct {
	cfg      Config
	limits   Limits
	inflight *inflight.Limiter
	share    *workerShare
	rate     *ratelimit.Limiter
	breaker  *breaker.Breaker
	// dest is the destinations' circuits: the breaker keyed by
	// destinationKey (nil: HOOKLINE_DESTINATION_BREAKER_FAILURES=0).
	dest     *breaker.Breaker
	disabler Disabler
	notifier Notifier
	log      *zap.Logger
	m        metrics
	now      func() time.Time
	// batch carries every Redis command of admission and observation, in
	// shared pipelines.
	batch *redisbatch.Batcher
	// toldHere and telling: the tenants refused by an open destination
	// circuit being told (told.go).
	toldHere toldHere
	telling  tracker

	lastWarn atomic.Int64 // unix ns of the last Redis warning
}

type metrics struct {
	opened     prometheus.Counter
	closed     prometheus.Counter
	destOpened prometheus.Counter
	destClosed prometheus.Counter
	disabled   *prometheus.CounterVec
	errors     *prometheus.CounterVec
}

// New builds endpoint health from a validated Config.
func New(cfg Config, limits Limits, d Deps) *Health {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if limits.AttemptTimeout <= 0 {
		limits.AttemptTimeout = 15 * time.Second
	}
	if limits.MaxPause <= 0 {
		limits.MaxPause = time.Hour
	}
	log := d.Log.Named("health")
	f := promauto.With(d.Registerer)
	m := metrics{
		opened: f.NewCounter(prometheus.CounterOpts{
			Name: "hookline_breaker_opened_total",
			Help: "Circuits opened (or reopened after a failed probe).",
		}),
		closed: f.NewCounter(prometheus.CounterOpts{
			Name: "hookline_breaker_closed_total",
			Help: "Open or half-open circuits closed by a successful attempt.",
		}),
		destOpened: f.NewCounter(prometheus.CounterOpts{
			Name: "hookline_destination_breaker_opened_total",
			Help: "Destination hosts' circuits opened (or reopened after a failed probe): failures in a row to one host across its subscriptions.",
		}),
		destClosed: f.NewCounter(prometheus.CounterOpts{
			Name: "hookline_destination_breaker_closed_total",
			Help: "Destination hosts' open or half-open circuits closed by an answer of the host.",
		}),
		disabled: f.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_subscriptions_disabled_total",
			Help: "Subscriptions disabled by endpoint health, by reason (gone, failing).",
		}, []string{"reason"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_health_errors_total",
			Help: "Endpoint-health bookkeeping that failed after an attempt (Redis, disabling, or publishing an operational event: op notify), by operation.",
		}, []string{"op"}),
	}
	for _, r := range wire.AutomaticDisabledReasons() {
		m.disabled.WithLabelValues(r)
	}
	degraded := redisdown.NewMetrics(d.Registerer)
	leaseTTL := limits.AttemptTimeout + leaseMargin
	h := &Health{
		cfg:    cfg,
		limits: limits,
		breaker: breaker.New(d.Redis, breaker.Config{
			Failures:    cfg.BreakerFailures,
			Cooldown:    cfg.BreakerCooldown,
			MaxCooldown: cfg.BreakerMaxCooldown,
			ProbeTTL:    leaseTTL,
			ProbeWait:   cfg.InFlightDefer,
			StateTTL:    max(cfg.AutoDisableAfter, 6*24*time.Hour) + 24*time.Hour,
			Now:         d.Now,
			StateClock:  d.StateClock,
			Degraded:    degraded,
			Log:         log,
		}),
		rate:     ratelimit.New(d.Redis, ratelimit.Config{Log: log, Degraded: degraded, Now: d.Now, StateClock: d.StateClock}),
		disabler: d.Disabler,
		notifier: d.Notifier,
		share:    newWorkerShare(limits.Workers, cfg.TenantWorkerShare),
		log:      log,
		m:        m,
		now:      d.Now,
	}
	if cfg.DestinationBreakerFailures > 0 {
		h.dest = breaker.New(d.Redis, breaker.Config{
			Failures:    cfg.DestinationBreakerFailures,
			Cooldown:    cfg.BreakerCooldown,
			MaxCooldown: cfg.BreakerMaxCooldown,
			ProbeTTL:    leaseTTL,
			ProbeWait:   cfg.InFlightDefer,
			// No auto-disable reads a host's streak: remembered while
			// its longest cool-down may run.
			StateTTL:   cfg.BreakerMaxCooldown + time.Hour,
			Now:        d.Now,
			StateClock: d.StateClock,
			Degraded:   degraded,
			Log:        log.With(zap.String("circuit", "destination")),
		})
	}
	h.batch = redisbatch.New(d.Redis, redisbatch.Config{Timeout: cfg.RedisTimeout})
	h.inflight = inflight.New(d.Redis, inflight.Config{DefaultMax: cfg.DefaultMaxInFlight, LeaseTTL: leaseTTL, Now: d.Now, StateClock: d.StateClock,
		Degraded: degraded, Log: log})
	return h
}

// Admit decides whether an attempt for sub may start now, with at most
// limit attempts in flight (0: sub's max_in_flight, or the default cap; see
// the package documentation). The breaker and the in-flight cap are asked in one Redis
// round trip. It returns an error only when ctx ends.
func (h *Health) Admit(ctx context.Context, sub *hooklinev1.Subscription, limit int) (deliver.Slot, deliver.Refusal, error) {
	id, tenant := sub.GetId(), sub.GetTenant()
	if limit <= 0 {
		limit = int(sub.GetMaxInFlight()) // 0: the default cap
	}
	if !h.share.take(tenant) {
		return nil, deliver.Refusal{Reason: deliver.RefusedTenant}, nil
	}
	dest := deliver.Destination(sub.GetUrl())
	// The batcher bounds the round trip by RedisTimeout.
	var (
		pendingAllow, pendingHost        *breaker.PendingAllow
		pendingLease, pendingT, pendingD *inflight.PendingAcquire
	)
	h.batch.Do(func(pipe redis.Pipeliner) {
		pendingAllow = h.breaker.AllowCmd(ctx, pipe, id)
		if h.dest != nil && dest != "" {
			pendingHost = h.dest.AllowCmd(ctx, pipe, destinationKey(dest))
		}
		pendingLease = h.inflight.AcquireCmd(ctx, pipe, id, uint32(limit))
		if h.cfg.TenantMaxInFlight > 0 {
			pendingT = h.inflight.AcquireCmd(ctx, pipe, tenantKey(tenant), uint32(h.cfg.TenantMaxInFlight))
		}
		if h.cfg.DestinationMaxInFlight > 0 && dest != "" {
			pendingD = h.inflight.AcquireCmd(ctx, pipe, destinationKey(dest), uint32(h.cfg.DestinationMaxInFlight))
		}
	})
	// Without Redis each step decides alone; redisdown counts and logs
	// it, and a canceled ctx is checked below.
	d, _ := pendingAllow.Result()
	c := circuits{sub: d, dest: breaker.Decision{Allow: true}}
	if pendingHost != nil {
		c.host = dest
		c.dest, _ = pendingHost.Result()
	}
	var held leases
	var ok bool
	held.sub, ok, _ = pendingLease.Result()
	tenantOK, destOK := true, true
	if pendingT != nil {
		held.tenant, tenantOK, _ = pendingT.Result()
	}
	if pendingD != nil {
		held.dest, destOK, _ = pendingD.Result()
	}
	// giveBack returns what this admission took when no attempt follows.
	giveBack := func() {
		h.giveBack(ctx, id, held, c.probes(), "give_back")
		h.share.give(tenant)
	}
	if ctx.Err() != nil {
		giveBack()
		return nil, deliver.Refusal{}, ctx.Err()
	}
	switch {
	case !d.Allow:
		giveBack()
		reason := deliver.RefusedProbe
		if d.Open {
			reason = deliver.RefusedCircuitOpen
		}
		return nil, deliver.Refusal{Reason: reason, Wait: d.Wait + h.jitter(h.cfg.InFlightDefer)}, nil
	case !c.dest.Allow:
		giveBack()
		h.tellRefused(sub, c.host, c.dest.Since)
		return nil, deliver.Refusal{Reason: deliver.RefusedDestinationOpen, Wait: c.dest.Wait + h.jitter(h.cfg.InFlightDefer)}, nil
	case !ok:
		giveBack()
		return nil, deliver.Refusal{Reason: deliver.RefusedFull}, nil
	case !tenantOK:
		giveBack()
		return nil, deliver.Refusal{Reason: deliver.RefusedTenant}, nil
	case !destOK:
		giveBack()
		return nil, deliver.Refusal{Reason: deliver.RefusedDestination}, nil
	}

	if perSecond := sub.GetRateLimitPerSecond(); perSecond > 0 {
		// A record stored before the API refused tiny rates.
		perSecond = max(perSecond, subscription.MinRateLimit)
		rctx, cancel := context.WithTimeout(ctx, h.cfg.RedisTimeout)
		wait, err := h.rate.Take(rctx, id, perSecond, sub.GetRateLimitBurst())
		cancel()
		if err != nil || wait > 0 {
			giveBack()
			if err != nil {
				return nil, deliver.Refusal{}, err
			}
			return nil, deliver.Refusal{Reason: deliver.RefusedRate, Wait: wait}, nil
		}
	}
	return &slot{h: h, ctx: ctx, sub: sub, held: held, c: c, admitted: h.now()}, deliver.Refusal{}, nil
}

// passFor is how long a slot may be passed from attempt to attempt
// without asking Redis again: the longest an open circuit, a lowered cap
// or another replica's failures go unseen by a busy line.
const passFor = time.Second

// slot is an admitted attempt's leases and probes.
type slot struct {
	h        *Health
	ctx      context.Context
	sub      *hooklinev1.Subscription
	held     leases
	c        circuits
	admitted time.Time
	done     atomic.Bool
}

// circuits are an admitted attempt's decisions of its subscription's
// circuit and its destination's.
type circuits struct {
	sub, dest breaker.Decision
	// host is the destination whose circuit was asked ("" when none was:
	// the destination circuit is off, or the URL has no host).
	host string
}

// clean: both circuits closed without a failure streak, no probe: a
// success has nothing to reset.
func (c circuits) clean() bool {
	return c.sub.Failures == 0 && c.sub.Probe == "" && c.dest.Failures == 0 && c.dest.Probe == ""
}

// probes are the probe leases an attempt holds (when not "").
type probes struct{ sub, dest, host string }

func (c circuits) probes() probes { return probes{sub: c.sub.Probe, dest: c.dest.Probe, host: c.host} }

// Release learns from the attempt's result and gives the slot back.
func (s *slot) Release(res sender.Result) {
	if s.done.CompareAndSwap(false, true) {
		s.h.share.give(s.sub.GetTenant())
		s.h.observe(s.ctx, s.sub, s.held, s.c, res)
	}
}

// Pass keeps the slot after a success when both circuits (the
// subscription's and its host's) were closed without a failure streak at
// admission, the subscription has no rate limit (each
// request must be counted) and the admission is younger than passFor; the
// lease then outlives its use (LeaseTTL is the attempt timeout plus a
// margin). Otherwise it is Release.
func (s *slot) Pass(res sender.Result) bool {
	if res.OK() && s.c.clean() && s.sub.GetRateLimitPerSecond() <= 0 &&
		s.h.now().Sub(s.admitted) < passFor && !s.done.Load() {
		return true
	}
	s.Release(res)
	return false
}

// Return gives a kept slot back without an attempt.
func (s *slot) Return() {
	if s.done.CompareAndSwap(false, true) {
		s.h.share.give(s.sub.GetTenant())
		s.h.giveBack(s.ctx, s.sub.GetId(), s.held, s.c.probes(), "give_back")
	}
}

// observe learns from an attempt's result. The result is recorded before
// the in-flight slot is given back (same pipeline, in order): otherwise the
// next attempt could slip in before the failure that opens the circuit.
func (h *Health) observe(ctx context.Context, sub *hooklinev1.Subscription, lease leases, c circuits, res sender.Result) {
	ctx = context.WithoutCancel(ctx)
	id := sub.GetId()
	d := c.sub

	switch {
	case res.ErrorClass == sender.ClassCanceled:
		// Cut short by the deliverer (shutdown): says nothing about the
		// endpoint.
		h.giveBack(ctx, id, lease, c.probes(), "release_slot")
		return

	case res.OK():
		if c.clean() {
			// Closed with no failure streak when admitted: nothing to
			// reset, and nothing to wait for.
			h.giveBack(ctx, id, lease, probes{}, "release_slot")
			return
		}
		var (
			cmd  *redis.Cmd
			host hostCmds
			cmds []redis.Cmder
		)
		h.batch.Do(func(pipe redis.Pipeliner) {
			if d.Failures > 0 || d.Probe != "" {
				cmd = h.breaker.SuccessCmd(ctx, pipe, id)
				cmds = append(cmds, cmd)
			}
			host = h.hostCmds(ctx, pipe, sub, c, hostUp, res)
			cmds = h.release(ctx, pipe, lease, append(cmds, host.cmds()...))
		})
		h.checkRan("record_success", cmds...)
		h.hostResult(sub, host, res)
		if cmd == nil {
			return
		}
		if closed, err := breaker.SuccessResult(cmd); err == nil && closed {
			h.m.closed.Inc()
			h.log.Info("circuit closed", zap.String("subscription_id", id), zap.Int("status", res.Status))
			h.notify(sub, func(ctx context.Context, n Notifier) error { return n.Recovered(ctx, sub, h.now()) })
		}
		return
	}

	log := h.log.With(zap.String("subscription_id", id))
	var pause time.Duration
	if (res.Status == http.StatusTooManyRequests || res.Status == http.StatusServiceUnavailable) && res.RetryAfter > 0 {
		pause = min(res.RetryAfter, h.limits.MaxPause)
	}
	var (
		pending *breaker.PendingFailure
		host    hostCmds
		cmds    []redis.Cmder
	)
	h.batch.Do(func(pipe redis.Pipeliner) {
		pending = h.breaker.FailureCmd(ctx, pipe, id, pause)
		host = h.hostCmds(ctx, pipe, sub, c, c.hostVerdict(sub, res), res)
		cmds = h.release(ctx, pipe, lease, host.cmds())
	})
	h.hostResult(sub, host, res)
	streak, err := pending.Result()
	if err != nil {
		h.m.errors.WithLabelValues("record_failure").Inc()
		h.warnRedis("record_failure", err)
	} else {
		h.checkRan("record_failure", cmds...)
	}
	if streak.Opened {
		h.m.opened.Inc()
		log.Warn("circuit opened", zap.Int("failures", streak.Failures), zap.Int("status", res.Status),
			zap.String("error_class", res.ErrorClass), zap.Duration("open_for", streak.OpenUntil.Sub(streak.Now)))
	}
	if streak.Opened && streak.Opens == 1 {
		// The first opening of the streak: not again after a failed probe.
		h.notify(sub, func(ctx context.Context, n Notifier) error {
			return n.Failing(ctx, sub, h.failing(sub, streak, res, opevents.StageCircuitOpen, 0))
		})
	}
	if err == nil {
		h.warnBeforeDisable(ctx, sub, streak, res)
	}
	switch {
	case res.Status == http.StatusGone:
		h.disable(sub, wire.DisabledGone, log)
	case err == nil && autoDisableAfter(sub, h.cfg) > 0 && h.failingFor(sub, streak) >= autoDisableAfter(sub, h.cfg):
		h.disable(sub, wire.DisabledFailing, log, zap.Duration("failing_for", h.failingFor(sub, streak)),
			zap.Int("failures", streak.Failures))
	}
}

// giveBack releases the leases and the probes (if any) without waiting
// for Redis; a failure is counted under op.
func (h *Health) giveBack(ctx context.Context, id string, lease leases, p probes, op string) {
	ctx = context.WithoutCancel(ctx)
	var cmds []redis.Cmder
	h.batch.Go(func(pipe redis.Pipeliner) {
		if p.sub != "" {
			cmds = append(cmds, h.breaker.ReleaseProbeCmd(ctx, pipe, id, p.sub))
		}
		if p.dest != "" {
			cmds = append(cmds, h.dest.ReleaseProbeCmd(ctx, pipe, destinationKey(p.host), p.dest))
		}
		cmds = h.release(ctx, pipe, lease, cmds)
	}, func() { h.checkRan(op, cmds...) })
}

// release queues the leases' release on pipe, adding their commands to
// cmds.
func (h *Health) release(ctx context.Context, pipe redis.Pipeliner, held leases, cmds []redis.Cmder) []redis.Cmder {
	for _, lease := range held.all() {
		if c := h.inflight.ReleaseCmd(ctx, pipe, lease); c != nil {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// checkRan counts and logs the first failed command of an operation.
func (h *Health) checkRan(op string, cmds ...redis.Cmder) {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			h.m.errors.WithLabelValues(op).Inc()
			h.warnRedis(op, err)
			return
		}
	}
}

// Flush returns once every Redis command queued so far (slots and probes
// given back) has run, and every tenant being told about a destination's
// circuit has been.
func (h *Health) Flush() {
	h.telling.wait()
	h.batch.Flush()
}

// Close waits for the tenants being told about a destination's circuit,
// sends what is queued for Redis (slots and probes given back) and waits
// for it. Health stays usable: later calls go to Redis one by one.
func (h *Health) Close() {
	h.telling.wait()
	h.batch.Close()
}

// failingFor is how long the subscription has been failing since the later
// of the streak's start and its last change.
func (h *Health) failingFor(sub *hooklinev1.Subscription, s breaker.Streak) time.Duration {
	since := s.Since
	if u := sub.GetUpdatedAt(); u != nil && u.AsTime().After(since) {
		since = u.AsTime()
	}
	return s.Now.Sub(since)
}

func (h *Health) disable(sub *hooklinev1.Subscription, reason string, log *zap.Logger, fields ...zap.Field) {
	if h.disabler == nil {
		log.Warn("subscription should be disabled, but no disabler is configured", zap.String("reason", reason))
		return
	}
	// Disabling is a KV update and an event publish: give it more than the
	// Redis budget, detached from the attempt.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed, err := h.disabler.Disable(ctx, sub, reason)
	if err != nil {
		h.m.errors.WithLabelValues("disable").Inc()
		log.Error("disable subscription", zap.String("reason", reason), zap.Error(err))
		return
	}
	if changed {
		h.m.disabled.WithLabelValues(reason).Inc()
		log.Warn("subscription disabled", append(fields, zap.String("reason", reason))...)
	}
}

// AutoDisableWarnings are the shares of HOOKLINE_AUTO_DISABLE_AFTER at
// which a failing subscription's tenant is warned (a
// hookline.subscription.failing event of stage auto_disable_warning).
var AutoDisableWarnings = []float64{0.5, 0.9}

// failing is the body of a failing event about streak.
func (h *Health) failing(sub *hooklinev1.Subscription, streak breaker.Streak, res sender.Result, stage string, share float64) opevents.Failing {
	f := opevents.Failing{
		Stage: stage, AutoDisableShare: share,
		FailingSince: streak.Since.UTC(), Failures: streak.Failures, LastStatus: res.Status,
		LastErrorClass: res.ErrorClass, RetryAt: streak.OpenUntil.UTC(),
	}
	if after := autoDisableAfter(sub, h.cfg); after > 0 {
		at := streak.Now.Add(after - h.failingFor(sub, streak)).UTC()
		f.AutoDisableAt = &at
	}
	return f
}

// warnBeforeDisable tells the tenant, once per streak (across replicas: a
// mark on the streak in Redis) and share, that the subscription has failed
// for that share of the auto-disable window. Only a failed attempt past a
// share costs a Redis command.
func (h *Health) warnBeforeDisable(ctx context.Context, sub *hooklinev1.Subscription, streak breaker.Streak, res sender.Result) {
	after := autoDisableAfter(sub, h.cfg)
	if h.notifier == nil || after <= 0 {
		return
	}
	failing := h.failingFor(sub, streak)
	if failing >= after {
		return // disabled now: hookline.subscription.disabled says it
	}
	share := 0.0
	for _, s := range AutoDisableWarnings {
		if failing >= time.Duration(float64(after)*s) {
			share = s
		}
	}
	if share == 0 {
		return
	}
	// The window starts at the later of the streak and the subscription's
	// last change: a re-enabled subscription is warned again.
	start := streak.Now.Add(-failing)
	var cmd *redis.BoolCmd
	h.batch.Do(func(pipe redis.Pipeliner) {
		cmd = h.breaker.MarkCmd(ctx, pipe, sub.GetId(), fmt.Sprintf("warned:%g:%d", share, start.UnixMilli()))
	})
	if first, err := cmd.Result(); err != nil || !first {
		if err != nil {
			h.m.errors.WithLabelValues("notify").Inc()
		}
		return
	}
	h.notify(sub, func(ctx context.Context, n Notifier) error {
		f := h.failing(sub, streak, res, opevents.StageAutoDisableWarning, share)
		f.FailingSince = start.UTC()
		return n.Failing(ctx, sub, f)
	})
}

// Notifier tells a tenant about its subscription's circuit
// (opevents.Publisher).
type Notifier interface {
	Failing(ctx context.Context, sub *hooklinev1.Subscription, f opevents.Failing) error
	Recovered(ctx context.Context, sub *hooklinev1.Subscription, at time.Time) error
}

// DestinationNotifier tells a tenant about the circuit of its
// subscription's host (opevents.Publisher): failing when the tenant's own
// attempt opened it or the tenant's delivery was refused by it, once per
// spell; recovered, naming the subscription it was told failing about,
// when it closed. A Notifier without it tells nobody.
type DestinationNotifier interface {
	DestinationFailing(ctx context.Context, sub *hooklinev1.Subscription, f opevents.DestinationFailing) error
	DestinationRecovered(ctx context.Context, tenant string, r opevents.DestinationRecovered) error
}

var (
	_ Notifier            = (*opevents.Publisher)(nil)
	_ DestinationNotifier = (*opevents.Publisher)(nil)
)

// notify runs one notification, detached from the attempt, and logs its
// failure (the circuit's own state is already recorded: a lost
// notification is not retried). It reports whether it was published.
func (h *Health) notify(sub *hooklinev1.Subscription, do func(context.Context, Notifier) error) bool {
	return h.notifyID(sub.GetId(), do)
}

// notifyID is notify for a subscription known by its id only.
func (h *Health) notifyID(subscriptionID string, do func(context.Context, Notifier) error) bool {
	if h.notifier == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := do(ctx, h.notifier); err != nil {
		h.m.errors.WithLabelValues("notify").Inc()
		h.log.Warn("operational event not published", zap.String("subscription_id", subscriptionID), zap.Error(err))
		return false
	}
	return true
}

// warnRedis logs a Redis problem at most once every 30 seconds.
func (h *Health) warnRedis(what string, err error) {
	now := time.Now().UnixNano()
	last := h.lastWarn.Load()
	if now-last < int64(30*time.Second) || !h.lastWarn.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("endpoint-health bookkeeping failed in redis", zap.String("op", what), zap.Error(err))
}

func (h *Health) jitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// autoDisableAfter is the subscription's auto-disable window: its
// effective delivery policy's (the deliverer writes it into the record it
// hands over: pkg/policy.Apply), else HOOKLINE_AUTO_DISABLE_AFTER.
func autoDisableAfter(sub *hooklinev1.Subscription, cfg Config) time.Duration {
	if v := sub.GetAutoDisableAfter(); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
	}
	return cfg.AutoDisableAfter
}

// What an attempt's result says about its destination host.
type hostSaid int

const (
	hostSilent hostSaid = iota // nothing: the host may not have been reached
	hostUp                     // it answered
	hostDown                   // it could not be reached, or answered 5xx
)

// hostVerdict reads what an attempt's result says about its host, not
// about the subscription: a 4xx is one path's or one credential's answer
// and shows the host is up; a client certificate's TLS trouble, an OAuth
// token that could not be had, an address the dial guard refused and an
// attempt the deliverer cut short say nothing about it.
func hostVerdict(sub *hooklinev1.Subscription, res sender.Result) hostSaid {
	switch {
	case res.Status >= 500:
		return hostDown
	case res.Status > 0:
		return hostUp
	}
	switch res.ErrorClass {
	case sender.ClassTimeout, sender.ClassConnectionRefused, sender.ClassConnectionReset, sender.ClassDNS, sender.ClassNetwork:
		return hostDown
	case sender.ClassTLS:
		if sub.GetAuth().GetCertificate() == "" {
			return hostDown
		}
	}
	return hostSilent
}

// hostVerdict is what an attempt's failure counts for its host: the
// failed probe of a subscription's own open circuit does not count (unless
// it was the host's probe too), so that one broken subscription on a
// shared host — a path that answers 500 — cannot open the host's circuit
// for every other subscription to it with a probe per cool-down. Its
// failures before its own circuit opened do count.
func (c circuits) hostVerdict(sub *hooklinev1.Subscription, res sender.Result) hostSaid {
	said := hostVerdict(sub, res)
	if said == hostDown && c.sub.Probe != "" && c.dest.Probe == "" {
		return hostSilent
	}
	return said
}

// hostCmds are the destination circuit's commands of one observation.
type hostCmds struct {
	host string
	// what is the attempt's subscription as recorded when its tenant is
	// told (toldValue; "" when nobody is told).
	what    string
	success *breaker.PendingClose
	failure *breaker.PendingFailure
	release *redis.Cmd
}

// hostCmds queues on pipe what an attempt's result does to its
// destination's circuit: a failure is counted (and, when it opens the
// circuit for the first time in its streak, recorded with sub's tenant as
// told); an answer closes it and ends the streak (when the admission saw
// one, or held the probe), handing over who was told; with nothing said
// the probe is given back.
func (h *Health) hostCmds(ctx context.Context, pipe redis.Pipeliner, sub *hooklinev1.Subscription, c circuits, said hostSaid, res sender.Result) hostCmds {
	hc := hostCmds{host: c.host}
	if c.host == "" {
		return hc
	}
	key := destinationKey(c.host)
	switch {
	case said == hostDown && h.tellsDestinations():
		hc.what = toldValue(sub)
		hc.failure = h.dest.FailureTellCmd(ctx, pipe, key, 0, breaker.Opening{
			Who: sub.GetTenant(), What: hc.what, Status: res.Status, ErrorClass: res.ErrorClass,
		})
	case said == hostDown:
		hc.failure = h.dest.FailureCmd(ctx, pipe, key, 0)
	case said == hostUp && (c.dest.Failures > 0 || c.dest.Probe != ""):
		hc.success = h.dest.CloseCmd(ctx, pipe, key)
	case said == hostSilent && c.dest.Probe != "":
		hc.release = h.dest.ReleaseProbeCmd(ctx, pipe, key, c.dest.Probe)
	}
	return hc
}

// cmds are the plain commands among hc, for checkRan.
func (hc hostCmds) cmds() []redis.Cmder {
	var out []redis.Cmder
	if hc.success != nil {
		out = append(out, hc.success.Cmd())
	}
	if hc.release != nil {
		out = append(out, hc.release)
	}
	return out
}

// hostResult counts and logs what hc did to the destination's circuit
// once its pipeline ran. It tells sub's tenant — whose attempt it was —
// when it opened (the streak's first opening), and every tenant told of
// the spell (the opener's, and those refused since: tellRefused) when it
// closed. Logs name the host and port only.
func (h *Health) hostResult(sub *hooklinev1.Subscription, hc hostCmds, res sender.Result) {
	switch {
	case hc.failure != nil:
		streak, err := hc.failure.Result()
		if err != nil {
			h.m.errors.WithLabelValues("record_failure").Inc()
			h.warnRedis("record_failure", err)
			return
		}
		if streak.Opened {
			h.m.destOpened.Inc()
			h.log.Warn("destination circuit opened", zap.String("destination", hc.host), zap.Int("failures", streak.Failures),
				zap.Int("status", res.Status), zap.String("error_class", res.ErrorClass), zap.Duration("open_for", streak.OpenUntil.Sub(streak.Now)))
		}
		if streak.Opened && streak.Opens == 1 && streak.Told {
			// Recorded as told with the opening: its refusals tell it
			// nothing more, and the close tells it recovered.
			h.toldHere.set(toldKey{tenant: sub.GetTenant(), host: hc.host}, streak.Since)
			f := opevents.DestinationFailing{LastStatus: res.Status, LastErrorClass: res.ErrorClass, OpenedAt: streak.Now, RetryAt: streak.OpenUntil}
			if !h.notify(sub, func(ctx context.Context, n Notifier) error {
				return n.(DestinationNotifier).DestinationFailing(ctx, sub, f)
			}) {
				h.untell(sub, hc.host, hc.what, streak.Since)
			}
		}
	case hc.success != nil:
		if closed, told, err := hc.success.Result(); err == nil && closed {
			h.m.destClosed.Inc()
			h.log.Info("destination circuit closed", zap.String("destination", hc.host), zap.Int("status", res.Status),
				zap.Int("tenants_told", len(told)))
			h.tellRecovered(told)
		}
	}
}

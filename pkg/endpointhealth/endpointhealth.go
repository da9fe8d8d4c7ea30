// Package endpointhealth is the Redis layout of a subscription's endpoint
// health — its circuit breaker and its in-flight leases — which every
// deliverer replica writes (services/deliverer/internal/breaker and
// inflight), and Read, which the producer's stats use to show it live.
package endpointhealth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key prefixes. The braces around the subscription id are a Redis
// Cluster hash tag: every key of one subscription lands in one slot.
const (
	// BreakerKeyPrefix: hookline:breaker:{<sub>}, a hash of the circuit
	// (fields below), and hookline:breaker:{<sub>}:probe, the half-open
	// probe's lease token.
	BreakerKeyPrefix = "hookline:breaker:"
	// InFlightKeyPrefix: hookline:inflight:{<sub>}, a sorted set of the
	// attempts in flight, each scored with its lease's expiry (unix ms).
	InFlightKeyPrefix = "hookline:inflight:"
)

// Fields of the breaker hash.
const (
	// FieldFailures: failed attempts in a row.
	FieldFailures = "failures"
	// FieldSince: the first failure of the streak (unix ms).
	FieldSince = "since"
	// FieldOpenUntil: the end of the cool-down or Retry-After pause (unix
	// ms); absent while the circuit is closed.
	FieldOpenUntil = "open_until"
	// FieldOpens: times opened in a row (the cool-down doubles with each).
	FieldOpens = "opens"
)

// BreakerKey is the state hash of a subscription's circuit.
func BreakerKey(subscriptionID string) string { return BreakerKeyPrefix + "{" + subscriptionID + "}" }

// ProbeKey is the half-open probe lease of a subscription's circuit.
func ProbeKey(subscriptionID string) string { return BreakerKey(subscriptionID) + ":probe" }

// InFlightKey is the lease set of a subscription.
func InFlightKey(subscriptionID string) string {
	return InFlightKeyPrefix + "{" + subscriptionID + "}"
}

// Circuit states.
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half_open"
)

// State is a subscription's endpoint health as Redis holds it now.
type State struct {
	// Circuit: closed, open (no attempts until OpenUntil: a cool-down or
	// the endpoint's Retry-After) or half_open (one probe allowed).
	Circuit   string     `json:"circuit" enum:"closed,open,half_open"`
	OpenUntil *time.Time `json:"open_until,omitempty" doc:"end of the cool-down or Retry-After pause (open)"`
	// Failures in a row, since FailingSince.
	Failures     int        `json:"consecutive_failures"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// ProbeInFlight: half-open with its probe attempt under way.
	ProbeInFlight bool `json:"probe_in_flight"`
	// InFlight: attempts in flight now, across every replica.
	InFlight int `json:"in_flight" doc:"attempts in flight now, across every deliverer replica"`
}

// Read reads the endpoint health of a subscription at now (one round
// trip). A subscription never attempted reads closed with nothing in
// flight.
func Read(ctx context.Context, rdb redis.UniversalClient, subscriptionID string, now time.Time) (State, error) {
	var (
		fields *redis.SliceCmd
		probe  *redis.IntCmd
		leases *redis.IntCmd
	)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, BreakerKey(subscriptionID), FieldOpenUntil, FieldFailures, FieldSince)
		probe = p.Exists(ctx, ProbeKey(subscriptionID))
		leases = p.ZCount(ctx, InFlightKey(subscriptionID), "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return State{}, fmt.Errorf("read endpoint health: %w", err)
	}
	st := State{Circuit: Closed, InFlight: int(leases.Val()), ProbeInFlight: probe.Val() > 0}
	vals := fields.Val()
	ms := func(i int) (int64, bool) {
		if i >= len(vals) || vals[i] == nil {
			return 0, false
		}
		s, _ := vals[i].(string)
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if n, ok := ms(1); ok {
		st.Failures = int(n)
	}
	if n, ok := ms(2); ok && st.Failures > 0 {
		t := time.UnixMilli(n).UTC()
		st.FailingSince = &t
	}
	if n, ok := ms(0); ok {
		t := time.UnixMilli(n).UTC()
		st.OpenUntil = &t
		st.Circuit = HalfOpen
		if now.Before(t) {
			st.Circuit = Open
		}
	}
	if st.Circuit != HalfOpen {
		st.ProbeInFlight = false
	}
	return st, nil
}

// Package endpointhealth names the Redis keys in which the deliverers share
// an endpoint's health (its circuit breaker and its in-flight leases), and
// reads them for the producer's health answer (GET
// /v1/subscriptions/{id}/health) without taking part in admission.
//
//	hookline:breaker:{<subscription id>}        hash: failures, since (unix ms),
//	                                            open_until (unix ms), opens
//	hookline:breaker:{<subscription id>}:probe  string: the half-open probe's lease
//	hookline:inflight:{<subscription id>}       sorted set: lease id → expiry (unix ms)
//
// The braces are a Redis Cluster hash tag: every key of one subscription
// lands in one slot. The deliverer's breaker and inflight packages write
// these keys; this package only names and reads them.
package endpointhealth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key prefixes.
const (
	BreakerPrefix  = "hookline:breaker:"
	InFlightPrefix = "hookline:inflight:"
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
func BreakerKey(subscriptionID string) string { return BreakerPrefix + "{" + subscriptionID + "}" }

// ProbeKey is the half-open probe lease of a subscription's circuit.
func ProbeKey(subscriptionID string) string { return BreakerKey(subscriptionID) + ":probe" }

// InFlightKey is the in-flight lease set of a subscription.
func InFlightKey(subscriptionID string) string { return InFlightPrefix + "{" + subscriptionID + "}" }

// Circuit states.
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half_open"
)

// Circuit is a subscription's circuit as stored.
type Circuit struct {
	State string `json:"state" enum:"closed,open,half_open" doc:"closed: attempts go; open: none until open_until (a cool-down or the endpoint's Retry-After); half_open: one probe at a time"`
	// ConsecutiveFailures in the current streak.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// FailingSince is when the streak began.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// OpenUntil is when the next probe may go (open), or went (half-open).
	OpenUntil *time.Time `json:"open_until,omitempty" doc:"when the next probe may go"`
	// Opens counts the openings of this streak (each doubles the cool-down).
	Opens int `json:"opens"`
	// ProbeInFlight: a half-open probe is being attempted now.
	ProbeInFlight bool `json:"probe_in_flight"`
}

// Snapshot is what Redis holds about an endpoint now.
type Snapshot struct {
	Circuit Circuit `json:"circuit"`
	// InFlight counts the unexpired leases: attempts under way across
	// every deliverer replica.
	InFlight int64 `json:"in_flight" doc:"attempts under way now, across every deliverer"`
}

// Read reads a subscription's circuit and in-flight leases in one round
// trip. Missing keys are a closed circuit and nothing in flight.
func Read(ctx context.Context, rdb redis.UniversalClient, subscriptionID string, now time.Time) (Snapshot, error) {
	pipe := rdb.Pipeline()
	st := pipe.HGetAll(ctx, BreakerKey(subscriptionID))
	probe := pipe.Exists(ctx, ProbeKey(subscriptionID))
	n := pipe.ZCount(ctx, InFlightKey(subscriptionID), strconv.FormatInt(now.UnixMilli()+1, 10), "+inf")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Snapshot{}, fmt.Errorf("endpoint health: %w", err)
	}
	var v struct {
		Failures  int   `redis:"failures"`
		Since     int64 `redis:"since"`
		OpenUntil int64 `redis:"open_until"`
		Opens     int   `redis:"opens"`
	}
	if err := st.Scan(&v); err != nil {
		return Snapshot{}, fmt.Errorf("endpoint health: circuit: %w", err)
	}
	c := Circuit{State: Closed, ConsecutiveFailures: v.Failures, Opens: v.Opens, ProbeInFlight: probe.Val() > 0}
	if v.Since > 0 {
		t := time.UnixMilli(v.Since).UTC()
		c.FailingSince = &t
	}
	if v.OpenUntil > 0 {
		t := time.UnixMilli(v.OpenUntil).UTC()
		c.OpenUntil = &t
		c.State = Open
		if !now.Before(t) {
			c.State = HalfOpen
		}
	}
	return Snapshot{Circuit: c, InFlight: n.Val()}, nil
}

// State is the flat view of a Snapshot that the stats answer carries
// (GET /v1/subscriptions/{id}/stats).
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

// ReadState is Read, flattened.
func ReadState(ctx context.Context, rdb redis.UniversalClient, subscriptionID string, now time.Time) (State, error) {
	s, err := Read(ctx, rdb, subscriptionID, now)
	if err != nil {
		return State{}, err
	}
	return s.State(), nil
}

// State flattens s.
func (s Snapshot) State() State {
	c := s.Circuit
	st := State{Circuit: c.State, OpenUntil: c.OpenUntil, Failures: c.ConsecutiveFailures,
		ProbeInFlight: c.ProbeInFlight && c.State == HalfOpen, InFlight: int(s.InFlight)}
	if c.ConsecutiveFailures > 0 {
		st.FailingSince = c.FailingSince
	}
	return st
}

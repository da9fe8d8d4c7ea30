package stream

import (
	"errors"
	"fmt"
	"time"
)

// Settings are the topology settings read from the environment. Both
// services embed them and check (or ensure) the streams at start-up, so
// they must read the same variables as whoever ensures the topology:
// otherwise the check fails, or whichever ensures last rewrites the
// other's retention.
type Settings struct {
	// Topology is what a service does with the topology at start-up:
	// TopologyCheck (the default) only checks that it exists as these
	// settings say, and waits, not ready, until it does; TopologyEnsure
	// creates or updates it, which needs STREAM.CREATE/UPDATE rights that
	// the shipped least-privilege NATS users do not have.
	Topology string `env:"HOOKLINE_TOPOLOGY" envDefault:"check"`

	Replicas         int           `env:"HOOKLINE_STREAM_REPLICAS" envDefault:"1"`
	EventsMaxAge     time.Duration `env:"HOOKLINE_EVENTS_MAX_AGE" envDefault:"168h"`
	DeadLetterMaxAge time.Duration `env:"HOOKLINE_DEAD_LETTER_MAX_AGE" envDefault:"2160h"`
	AttemptsMaxAge   time.Duration `env:"HOOKLINE_ATTEMPTS_MAX_AGE" envDefault:"720h"`
	DuplicateWindow  time.Duration `env:"HOOKLINE_DUPLICATE_WINDOW" envDefault:"20m"`
	// IdempotencyWindow is how long the API remembers an Idempotency-Key
	// (the TTL of the bucket hookline_idempotency).
	IdempotencyWindow time.Duration `env:"HOOKLINE_IDEMPOTENCY_WINDOW" envDefault:"24h"`
}

// Validate names the variable at fault.
func (s Settings) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(s.Topology == TopologyCheck || s.Topology == TopologyEnsure,
		"HOOKLINE_TOPOLOGY must be %q or %q, not %q", TopologyCheck, TopologyEnsure, s.Topology)
	check(s.Replicas >= 1 && s.Replicas <= 5, "HOOKLINE_STREAM_REPLICAS must be between 1 and 5, not %d", s.Replicas)
	check(s.EventsMaxAge > 0, "HOOKLINE_EVENTS_MAX_AGE must be positive, not %s", s.EventsMaxAge)
	check(s.DeadLetterMaxAge > 0, "HOOKLINE_DEAD_LETTER_MAX_AGE must be positive, not %s", s.DeadLetterMaxAge)
	check(s.AttemptsMaxAge > 0, "HOOKLINE_ATTEMPTS_MAX_AGE must be positive, not %s", s.AttemptsMaxAge)
	check(s.DuplicateWindow > 0, "HOOKLINE_DUPLICATE_WINDOW must be positive, not %s", s.DuplicateWindow)
	check(s.IdempotencyWindow >= time.Minute, "HOOKLINE_IDEMPOTENCY_WINDOW must be at least 1m, not %s", s.IdempotencyWindow)
	// JetStream refuses a duplicate window longer than a stream's max age.
	check(s.DuplicateWindow <= min(s.EventsMaxAge, s.DeadLetterMaxAge),
		"HOOKLINE_DUPLICATE_WINDOW (%s) must not exceed HOOKLINE_EVENTS_MAX_AGE or HOOKLINE_DEAD_LETTER_MAX_AGE", s.DuplicateWindow)
	return errors.Join(errs...)
}

// Values of HOOKLINE_TOPOLOGY.
const (
	TopologyCheck  = "check"
	TopologyEnsure = "ensure"
)

// Ensures reports whether the service creates or updates the topology
// itself (HOOKLINE_TOPOLOGY=ensure) instead of only checking it.
func (s Settings) Ensures() bool { return s.Topology == TopologyEnsure }

// Config is the topology configuration of these settings; consumer
// settings (AckWait, MaxAckPending) are the deliverer's to add.
func (s Settings) Config() Config {
	return Config{
		Replicas:          s.Replicas,
		EventsMaxAge:      s.EventsMaxAge,
		AttemptsMaxAge:    s.AttemptsMaxAge,
		DeadLetterMaxAge:  s.DeadLetterMaxAge,
		DuplicateWindow:   s.DuplicateWindow,
		IdempotencyWindow: s.IdempotencyWindow,
	}
}

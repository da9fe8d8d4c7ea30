package stream

import (
	"errors"
	"fmt"
	"time"
)

// Settings are the topology settings read from the environment. Both
// services embed them and both ensure the streams at start-up, so they must
// read the same variables: otherwise whichever starts last would rewrite
// the other's retention.
type Settings struct {
	Replicas         int           `env:"HOOKLINE_STREAM_REPLICAS" envDefault:"1"`
	EventsMaxAge     time.Duration `env:"HOOKLINE_EVENTS_MAX_AGE" envDefault:"168h"`
	DeadLetterMaxAge time.Duration `env:"HOOKLINE_DEAD_LETTER_MAX_AGE" envDefault:"2160h"`
	AttemptsMaxAge   time.Duration `env:"HOOKLINE_ATTEMPTS_MAX_AGE" envDefault:"720h"`
	DuplicateWindow  time.Duration `env:"HOOKLINE_DUPLICATE_WINDOW" envDefault:"20m"`
}

// Validate names the variable at fault.
func (s Settings) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(s.Replicas >= 1 && s.Replicas <= 5, "HOOKLINE_STREAM_REPLICAS must be between 1 and 5, not %d", s.Replicas)
	check(s.EventsMaxAge > 0, "HOOKLINE_EVENTS_MAX_AGE must be positive, not %s", s.EventsMaxAge)
	check(s.DeadLetterMaxAge > 0, "HOOKLINE_DEAD_LETTER_MAX_AGE must be positive, not %s", s.DeadLetterMaxAge)
	check(s.AttemptsMaxAge > 0, "HOOKLINE_ATTEMPTS_MAX_AGE must be positive, not %s", s.AttemptsMaxAge)
	check(s.DuplicateWindow > 0, "HOOKLINE_DUPLICATE_WINDOW must be positive, not %s", s.DuplicateWindow)
	// JetStream refuses a duplicate window longer than a stream's max age.
	check(s.DuplicateWindow <= min(s.EventsMaxAge, s.DeadLetterMaxAge),
		"HOOKLINE_DUPLICATE_WINDOW (%s) must not exceed HOOKLINE_EVENTS_MAX_AGE or HOOKLINE_DEAD_LETTER_MAX_AGE", s.DuplicateWindow)
	return errors.Join(errs...)
}

// Config is the topology configuration of these settings; consumer
// settings (AckWait, MaxAckPending) are the deliverer's to add.
func (s Settings) Config() Config {
	return Config{
		Replicas:         s.Replicas,
		EventsMaxAge:     s.EventsMaxAge,
		AttemptsMaxAge:   s.AttemptsMaxAge,
		DeadLetterMaxAge: s.DeadLetterMaxAge,
		DuplicateWindow:  s.DuplicateWindow,
	}
}

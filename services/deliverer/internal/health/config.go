package health

import (
	"errors"
	"fmt"
	"time"
)

// Config is endpoint health's part of the deliverer configuration (embedded
// in config.Config; the variables are documented in docs/configuration.md).
type Config struct {
	// DefaultMaxInFlight is the in-flight cap, across all replicas, that a
	// subscription whose max_in_flight is 0 starts with and never goes
	// below; DefaultMaxInFlightCeiling is the most it grows to while its
	// endpoint answers 2xx fast and tasks wait.
	DefaultMaxInFlight        int `env:"HOOKLINE_DEFAULT_MAX_IN_FLIGHT" envDefault:"10"`
	DefaultMaxInFlightCeiling int `env:"HOOKLINE_DEFAULT_MAX_IN_FLIGHT_CEILING" envDefault:"64"`
	// InFlightDefer is how long a task waits while its subscription's
	// circuit is half-open with a probe in flight (between one and two
	// times this, at random), and the spread added to an open circuit's
	// wait.
	InFlightDefer time.Duration `env:"HOOKLINE_IN_FLIGHT_DEFER" envDefault:"1s"`
	// BreakerFailures in a row open a subscription's circuit.
	BreakerFailures int `env:"HOOKLINE_BREAKER_FAILURES" envDefault:"5"`
	// BreakerCooldown is how long the circuit stays open the first time;
	// each failed probe doubles it, up to BreakerMaxCooldown.
	BreakerCooldown    time.Duration `env:"HOOKLINE_BREAKER_COOLDOWN" envDefault:"30s"`
	BreakerMaxCooldown time.Duration `env:"HOOKLINE_BREAKER_MAX_COOLDOWN" envDefault:"10m"`
	// AutoDisableAfter: a subscription whose endpoint has failed every
	// attempt for this long (and that was not changed meanwhile) is
	// disabled with reason "failing". 0 turns auto-disable off.
	AutoDisableAfter time.Duration `env:"HOOKLINE_AUTO_DISABLE_AFTER" envDefault:"120h"`
	// RedisTimeout bounds the Redis work of one admission decision; past
	// it, the decision is taken locally.
	RedisTimeout time.Duration `env:"HOOKLINE_HEALTH_REDIS_TIMEOUT" envDefault:"500ms"`
	// TenantWorkerShare is the share of one deliverer's workers (its
	// attempts in flight) that one tenant's attempts may take: the rest
	// stays free for the other tenants however slow or busy its
	// endpoints are. 1 turns the share off.
	TenantWorkerShare float64 `env:"HOOKLINE_TENANT_WORKER_SHARE" envDefault:"0.75"`
	// TenantMaxInFlight caps one tenant's attempts in flight across every
	// replica (0: no cap but the worker share).
	TenantMaxInFlight int `env:"HOOKLINE_TENANT_MAX_IN_FLIGHT" envDefault:"0"`
	// DestinationMaxInFlight caps the attempts in flight to one host (and
	// port) across every subscription, tenant and replica (0: no cap).
	DestinationMaxInFlight int `env:"HOOKLINE_DESTINATION_MAX_IN_FLIGHT" envDefault:"128"`
	// DestinationBreakerFailures failed attempts in a row to one host (and
	// port), whichever subscriptions and tenants they belong to, open the
	// host's circuit (0: no destination circuit). It cools down like a
	// subscription's (BreakerCooldown, doubling up to BreakerMaxCooldown).
	DestinationBreakerFailures int `env:"HOOKLINE_DESTINATION_BREAKER_FAILURES" envDefault:"20"`
}

// Validate names the variable at fault.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.DefaultMaxInFlight >= 1, "HOOKLINE_DEFAULT_MAX_IN_FLIGHT must be at least 1, not %d", c.DefaultMaxInFlight)
	check(c.DefaultMaxInFlightCeiling >= c.DefaultMaxInFlight,
		"HOOKLINE_DEFAULT_MAX_IN_FLIGHT_CEILING (%d) must be at least HOOKLINE_DEFAULT_MAX_IN_FLIGHT (%d)", c.DefaultMaxInFlightCeiling, c.DefaultMaxInFlight)
	check(c.InFlightDefer >= time.Millisecond, "HOOKLINE_IN_FLIGHT_DEFER must be at least 1ms, not %s", c.InFlightDefer)
	check(c.BreakerFailures >= 1, "HOOKLINE_BREAKER_FAILURES must be at least 1, not %d", c.BreakerFailures)
	check(c.BreakerCooldown >= time.Millisecond, "HOOKLINE_BREAKER_COOLDOWN must be at least 1ms, not %s", c.BreakerCooldown)
	check(c.BreakerMaxCooldown >= c.BreakerCooldown,
		"HOOKLINE_BREAKER_MAX_COOLDOWN (%s) must be at least HOOKLINE_BREAKER_COOLDOWN (%s)", c.BreakerMaxCooldown, c.BreakerCooldown)
	check(c.AutoDisableAfter >= 0, "HOOKLINE_AUTO_DISABLE_AFTER must not be negative, not %s", c.AutoDisableAfter)
	check(c.TenantWorkerShare > 0 && c.TenantWorkerShare <= 1, "HOOKLINE_TENANT_WORKER_SHARE must be in (0, 1], not %g", c.TenantWorkerShare)
	check(c.TenantMaxInFlight >= 0, "HOOKLINE_TENANT_MAX_IN_FLIGHT must not be negative, not %d", c.TenantMaxInFlight)
	check(c.DestinationMaxInFlight >= 0, "HOOKLINE_DESTINATION_MAX_IN_FLIGHT must not be negative, not %d", c.DestinationMaxInFlight)
	check(c.DestinationBreakerFailures >= 0, "HOOKLINE_DESTINATION_BREAKER_FAILURES must not be negative, not %d", c.DestinationBreakerFailures)
	check(c.RedisTimeout >= time.Millisecond, "HOOKLINE_HEALTH_REDIS_TIMEOUT must be at least 1ms, not %s", c.RedisTimeout)
	return errors.Join(errs...)
}

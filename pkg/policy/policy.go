// Package policy is a subscription's delivery policy: the retry schedule,
// the attempt timeout, the auto-disable window, the in-flight cap, the rate
// limit and the payload format, each resolved subscription > tenant >
// environment (Resolve), and the limits a value must respect (Limits).
// The producer validates and explains a policy with it; the deliverer
// applies the one Resolve gives.
package policy

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/proto"
)

// The level a value of the effective policy comes from.
const (
	SourceSubscription = "subscription"
	SourceTenant       = "tenant"
	SourceEnvironment  = "environment"
)

// Environment is the environment level: the deliverer's variables of the
// same names. The producer reads them too (to explain and to validate a
// policy), so both services must be given the same values, as with the
// topology variables.
type Environment struct {
	RetrySchedule    []time.Duration `env:"HOOKLINE_RETRY_SCHEDULE" envDefault:"0s,5s,5m,30m,2h,5h,10h,10h" envSeparator:","`
	AttemptTimeout   time.Duration   `env:"HOOKLINE_HTTP_TIMEOUT" envDefault:"15s"`
	AutoDisableAfter time.Duration   `env:"HOOKLINE_AUTO_DISABLE_AFTER" envDefault:"120h"`
}

// Validate names the variable at fault (the deliverer's own checks say
// the same).
func (e Environment) Validate() error {
	var errs []error
	if len(e.RetrySchedule) == 0 || e.RetrySchedule[0] != 0 {
		errs = append(errs, errors.New("HOOKLINE_RETRY_SCHEDULE must list at least one delay, the first 0s"))
	}
	for i, d := range e.RetrySchedule {
		if d < 0 {
			errs = append(errs, fmt.Errorf("HOOKLINE_RETRY_SCHEDULE entry %d is negative (%s)", i+1, d))
		}
	}
	if e.AttemptTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HOOKLINE_HTTP_TIMEOUT must be positive, not %s", e.AttemptTimeout))
	}
	if e.AutoDisableAfter < 0 {
		errs = append(errs, fmt.Errorf("HOOKLINE_AUTO_DISABLE_AFTER must not be negative, not %s", e.AutoDisableAfter))
	}
	return errors.Join(errs...)
}

// Value is one value of the effective policy and the level it comes from.
type Value[T any] struct {
	Value  T
	Source string
}

// Effective is the policy a subscription is delivered with.
type Effective struct {
	RetrySchedule    Value[[]time.Duration]
	AttemptTimeout   Value[time.Duration]
	AutoDisableAfter Value[time.Duration]
	// MaxInFlight 0 is the adaptive default (HOOKLINE_DEFAULT_MAX_IN_FLIGHT
	// up to its ceiling).
	MaxInFlight Value[uint32]
	// RateLimit is the rate and burst together: both come from the level
	// that sets a rate (0: unlimited).
	RateLimit Value[Rate]
	// PayloadFormat is the subscription's own: a tenant's default applies
	// when a subscription is created (a body's shape never changes under a
	// running receiver); a record without one predates payload formats
	// and gets "raw" from the environment.
	PayloadFormat Value[string]
}

// Rate is a rate limit: requests per second (0: unlimited) and burst (0:
// the default burst).
type Rate struct {
	PerSecond float64
	Burst     uint32
}

// Resolve is the effective policy of sub under tenant t (nil: the tenant
// has no record) and env. A stored value that does not parse (written by
// hand) is skipped, as if unset.
func Resolve(env Environment, t *hooklinev1.Tenant, sub *hooklinev1.Subscription) Effective {
	def := t.GetDefaults()
	var e Effective
	e.RetrySchedule = Value[[]time.Duration]{env.RetrySchedule, SourceEnvironment}
	if s, err := parseSchedule(def.GetRetrySchedule()); err == nil && len(s) > 0 {
		e.RetrySchedule = Value[[]time.Duration]{s, SourceTenant}
	}
	if s, err := parseSchedule(sub.GetRetrySchedule()); err == nil && len(s) > 0 {
		e.RetrySchedule = Value[[]time.Duration]{s, SourceSubscription}
	}
	e.AttemptTimeout = pick(env.AttemptTimeout, def.GetAttemptTimeout(), sub.GetAttemptTimeout())
	e.AutoDisableAfter = pick(env.AutoDisableAfter, def.GetAutoDisableAfter(), sub.GetAutoDisableAfter())
	e.MaxInFlight = Value[uint32]{0, SourceEnvironment}
	switch {
	case sub.GetMaxInFlight() > 0:
		e.MaxInFlight = Value[uint32]{sub.GetMaxInFlight(), SourceSubscription}
	case def.GetMaxInFlight() > 0:
		e.MaxInFlight = Value[uint32]{def.GetMaxInFlight(), SourceTenant}
	}
	e.RateLimit = Value[Rate]{Rate{}, SourceEnvironment}
	switch {
	case sub.GetRateLimitPerSecond() > 0:
		e.RateLimit = Value[Rate]{Rate{sub.GetRateLimitPerSecond(), sub.GetRateLimitBurst()}, SourceSubscription}
	case def.GetRateLimitPerSecond() > 0:
		e.RateLimit = Value[Rate]{Rate{def.GetRateLimitPerSecond(), def.GetRateLimitBurst()}, SourceTenant}
	}
	e.PayloadFormat = Value[string]{subscription.PayloadRaw, SourceEnvironment}
	if f := sub.GetPayloadFormat(); f != "" {
		e.PayloadFormat = Value[string]{f, SourceSubscription}
	}
	return e
}

// pick is the first of sub, tenant (Go durations; "" or unparsable: unset)
// and env.
func pick(env time.Duration, tenant, sub string) Value[time.Duration] {
	if d, err := time.ParseDuration(sub); sub != "" && err == nil {
		return Value[time.Duration]{d, SourceSubscription}
	}
	if d, err := time.ParseDuration(tenant); tenant != "" && err == nil {
		return Value[time.Duration]{d, SourceTenant}
	}
	return Value[time.Duration]{env, SourceEnvironment}
}

// Apply returns a copy of sub carrying the effective policy in its own
// fields, so that whatever reads a subscription (admission, endpoint
// health, the payload) reads the effective values. A duration whose
// source is the environment is left unset: the reader's own setting is
// the environment's. Durations are written in Go syntax.
func Apply(e Effective, sub *hooklinev1.Subscription) *hooklinev1.Subscription {
	out := proto.CloneOf(sub)
	out.RetrySchedule, out.AttemptTimeout, out.AutoDisableAfter = nil, "", ""
	if e.RetrySchedule.Source != SourceEnvironment {
		out.RetrySchedule = FormatSchedule(e.RetrySchedule.Value)
	}
	if e.AttemptTimeout.Source != SourceEnvironment {
		out.AttemptTimeout = e.AttemptTimeout.Value.String()
	}
	if e.AutoDisableAfter.Source != SourceEnvironment {
		out.AutoDisableAfter = e.AutoDisableAfter.Value.String()
	}
	out.MaxInFlight = e.MaxInFlight.Value
	out.RateLimitPerSecond, out.RateLimitBurst = e.RateLimit.Value.PerSecond, e.RateLimit.Value.Burst
	out.PayloadFormat = e.PayloadFormat.Value
	return out
}

// FormatSchedule writes a schedule as Go durations.
func FormatSchedule(s []time.Duration) []string {
	out := make([]string, len(s))
	for i, d := range s {
		out[i] = d.String()
	}
	return out
}

func parseSchedule(s []string) ([]time.Duration, error) {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// Bounds of a policy that are not derived from the topology.
const (
	// MaxAttempts is the most entries a retry schedule may have.
	MaxAttempts = 50
	// MinAttemptTimeout is the shortest attempt timeout.
	MinAttemptTimeout = time.Second
	// MinAutoDisable is the shortest auto-disable window other than 0s.
	MinAutoDisable = time.Minute
	// HealthStateTTL is how long endpoint health keeps a failure streak
	// beyond HOOKLINE_AUTO_DISABLE_AFTER: a window longer than
	// max(HOOKLINE_AUTO_DISABLE_AFTER, this) would outlive its streak.
	HealthStateTTL = 6 * 24 * time.Hour
	// AckWaitMargin is how much longer than an attempt's timeout the
	// deliver consumer's AckWait must be: time to sign, record the attempt
	// and settle the task (the deliverer's HOOKLINE_ACK_WAIT rule).
	AckWaitMargin = 5 * time.Second
)

// Limits are what a policy value must respect in this deployment.
type Limits struct {
	// EventsMaxAge and DeadLetterMaxAge (HOOKLINE_EVENTS_MAX_AGE,
	// HOOKLINE_DEAD_LETTER_MAX_AGE): a schedule must end within both.
	EventsMaxAge, DeadLetterMaxAge time.Duration
	// AckWait of the deliver consumer: an attempt's timeout plus
	// AckWaitMargin must fit in it.
	AckWait time.Duration
	// EnvAutoDisableAfter is HOOKLINE_AUTO_DISABLE_AFTER.
	EnvAutoDisableAfter time.Duration
}

// Schedule judges a retry schedule: 1 to MaxAttempts Go durations, the
// first 0s, none negative, all of them together within EVENTS' and
// DEADLETTER's max age (a delivery still retrying past EVENTS' would
// outlive its event and its delivery state; a dead letter points back at
// both).
func (l Limits) Schedule(s []string) ([]time.Duration, error) {
	if len(s) == 0 || len(s) > MaxAttempts {
		return nil, fmt.Errorf("must list 1 to %d delays (one per attempt)", MaxAttempts)
	}
	out := make([]time.Duration, len(s))
	var total time.Duration
	for i, v := range s {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("entry %d (%q) is not a duration such as 0s, 100ms, 5m or 2h", i+1, v)
		}
		if d < 0 {
			return nil, fmt.Errorf("entry %d (%s) is negative", i+1, d)
		}
		out[i] = d
		total += d
	}
	if out[0] != 0 {
		return nil, fmt.Errorf("must start with 0s (the first attempt is immediate), not %s", out[0])
	}
	if lim := min(l.EventsMaxAge, l.DeadLetterMaxAge); lim > 0 && total >= lim {
		return nil, fmt.Errorf("adds up to %s, which must stay below the event log's and the dead-letter stream's retention (%s: HOOKLINE_EVENTS_MAX_AGE %s, HOOKLINE_DEAD_LETTER_MAX_AGE %s)",
			total, lim, l.EventsMaxAge, l.DeadLetterMaxAge)
	}
	return out, nil
}

// Timeout judges an attempt timeout: at least MinAttemptTimeout, and
// with AckWaitMargin within the deliver consumer's AckWait (or a task
// buffered behind an attempt is redelivered and sent twice).
func (l Limits) Timeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 2s or 30s", s)
	}
	if d < MinAttemptTimeout {
		return 0, fmt.Errorf("must be at least %s, not %s", MinAttemptTimeout, d)
	}
	if l.AckWait > 0 && d+AckWaitMargin > l.AckWait {
		return 0, fmt.Errorf("must be at most %s: the deliver consumer's AckWait (%s, HOOKLINE_ACK_WAIT) less %s for settling", l.AckWait-AckWaitMargin, l.AckWait, AckWaitMargin)
	}
	return d, nil
}

// AutoDisable judges an auto-disable window: 0s (never) or between
// MinAutoDisable and what endpoint health keeps a failure streak for.
func (l Limits) AutoDisable(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 0s, 1h or 120h", s)
	}
	most := max(l.EnvAutoDisableAfter, HealthStateTTL)
	if d != 0 && (d < MinAutoDisable || d > most) {
		return 0, fmt.Errorf("must be 0s (never) or between %s and %s (how long endpoint health keeps a failure streak), not %s", MinAutoDisable, most, d)
	}
	return d, nil
}

// Metadata bounds (subscriptions and tenants).
const (
	MaxMetadata         = 32
	MaxMetadataKeyLen   = 64
	MaxMetadataValueLen = 512
	// MaxUIDLen bounds a subscription's uid.
	MaxUIDLen = 255
)

// ValidateMetadata judges a metadata map: at most MaxMetadata entries,
// keys of 1 to MaxMetadataKeyLen printable ASCII characters, values of at
// most MaxMetadataValueLen bytes of valid UTF-8 without control
// characters.
func ValidateMetadata(m map[string]string) error {
	if len(m) > MaxMetadata {
		return fmt.Errorf("must have at most %d entries", MaxMetadata)
	}
	for k, v := range m {
		if k == "" || len(k) > MaxMetadataKeyLen || !printableASCII(k) {
			return fmt.Errorf("key %q must be 1 to %d printable ASCII characters", truncate(k), MaxMetadataKeyLen)
		}
		if len(v) > MaxMetadataValueLen {
			return fmt.Errorf("value of %q must be at most %d bytes", k, MaxMetadataValueLen)
		}
		if err := plainText(v); err != nil {
			return fmt.Errorf("value of %q %w", k, err)
		}
	}
	return nil
}

// ValidateUID judges a subscription's external id: 1 to MaxUIDLen
// printable ASCII characters.
func ValidateUID(uid string) error {
	if uid == "" || len(uid) > MaxUIDLen || !printableASCII(uid) {
		return fmt.Errorf("must be 1 to %d printable ASCII characters", MaxUIDLen)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func plainText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8 without control characters")
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return errors.New("must be valid UTF-8 without control characters")
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

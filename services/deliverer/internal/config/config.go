// Package config holds the deliverer's configuration: one struct read from
// the environment (caarlos0/env) and a Validate that names the variable at
// fault without ever printing a secret.
package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/services/deliverer/internal/health"
)

// Config is every setting of the deliverer.
type Config struct {
	NATS  natsconn.Config
	Redis redisconn.Config
	// Secrets opens signing secrets sealed at rest (HOOKLINE_SECRET_KEY…).
	Secrets secretbox.Config
	// Health is endpoint health: in-flight cap, circuit breaker,
	// auto-disable (HOOKLINE_DEFAULT_MAX_IN_FLIGHT, HOOKLINE_BREAKER_…).
	Health health.Config

	// HTTPAddr serves /livez, /readyz, /metrics (and /debug/pprof).
	HTTPAddr string `env:"HOOKLINE_HTTP_ADDR" envDefault:":8081"`
	Pprof    bool   `env:"HOOKLINE_PPROF" envDefault:"false"`

	// Log is HOOKLINE_LOG_LEVEL and HOOKLINE_LOG_FORMAT.
	Log logging.Config
	// Tracing is OpenTelemetry, off unless an OTLP endpoint is set
	// (OTEL_EXPORTER_OTLP_ENDPOINT and the other standard OTEL_* variables).
	Tracing tracing.Config

	// Topology is read from the same variables as the producer's, so
	// whichever service starts last ensures the same streams.
	Topology stream.Settings

	DispatchWorkers int `env:"HOOKLINE_DISPATCH_WORKERS" envDefault:"128"`
	// DirectMax: how many first attempts dispatch may make (or wait in
	// line for) at once without storing a task, for endpoints measured fast
	// here (0: none; every delivery is stored as a task first). Half the
	// dispatch workers by default: the other half always fan out, so that
	// one subscription's burst never holds all of dispatch.
	DirectMax int `env:"HOOKLINE_DIRECT_MAX" envDefault:"64"`
	// DispatchBuffer: how many events dispatch fetches ahead of its
	// workers and serves a tenant at a time, in turn, so that one
	// tenant's flood of up to this many events does not hold up the
	// others' (0: three quarters of HOOKLINE_MAX_ACK_PENDING less twice
	// HOOKLINE_DISPATCH_WORKERS; see DispatchBufferSize).
	// DispatchBufferBytes bounds their payloads and headers.
	// TenantFanouts: how many of one tenant's events a replica fans out
	// into stored tasks at once while other tenants have events too (its
	// first attempts from dispatch are bounded by HOOKLINE_DIRECT_MAX
	// instead; a tenant alone is not held back). Storing is the broker's
	// work, and a few at once keep it as busy as many: the many only
	// lengthen the queues every other tenant's deliveries wait in. 0: no
	// bound but that of a sixteenth of the workers kept for other tenants.
	TenantFanouts       int   `env:"HOOKLINE_TENANT_FANOUTS" envDefault:"4"`
	DispatchBuffer      int   `env:"HOOKLINE_DISPATCH_BUFFER" envDefault:"0"`
	DispatchBufferBytes int64 `env:"HOOKLINE_DISPATCH_BUFFER_BYTES" envDefault:"67108864"`
	// GroupCommit stores the tasks of events dispatched together, and the
	// delivery states written together, as JetStream atomic batches: a
	// single nats-server with sync_interval: always then fsyncs once per
	// batch, not once per message. Off by default: with the default fsync
	// it costs latency (nats-server stages each atomic batch of a
	// one-replica file stream in a file store of its own).
	GroupCommit    bool `env:"HOOKLINE_GROUP_COMMIT" envDefault:"false"`
	DeliverWorkers int  `env:"HOOKLINE_DELIVER_WORKERS" envDefault:"64"`
	MaxAckPending  int  `env:"HOOKLINE_MAX_ACK_PENDING" envDefault:"10000"`
	// AdmissionMaxWait: a task refused admission (its subscription at its
	// in-flight cap or rate limit, a probe in flight) waits in its
	// subscription's line when it is expected to be attempted within this
	// long; otherwise it is deferred by its expected wait.
	AdmissionMaxWait time.Duration `env:"HOOKLINE_ADMISSION_MAX_WAIT" envDefault:"10s"`
	// AdmissionPollMax bounds the backoff of a line refused for want of a
	// slot (20ms, doubling): the most a waiting task lags behind a slot
	// freed by another replica (one freed here wakes it at once).
	AdmissionPollMax time.Duration `env:"HOOKLINE_ADMISSION_POLL_MAX" envDefault:"1s"`
	// OrderingKeyTTL: the line of an ordering key (in Redis) is forgotten
	// after this long unused; the key's numbers then start at 1 again.
	OrderingKeyTTL time.Duration `env:"HOOKLINE_ORDERING_KEY_TTL" envDefault:"168h"`
	// AckWait of both consumers. It must exceed HTTPTimeout by at least
	// AckWaitMargin. What it covers is the wait of a task buffered by the
	// pull consumer (PullMaxMessages = workers) for a free worker: at most
	// the time the worker ahead holds its own task — an attempt (HTTPTimeout)
	// plus its lookup and settling (the margin). A worker sends InProgress
	// when it takes a task and every AckWait/3 while it holds it, so the
	// attempt itself never outlives AckWait; a buffered task whose wait did
	// is redelivered, and POSTed twice.
	AckWait         time.Duration `env:"HOOKLINE_ACK_WAIT" envDefault:"60s"`
	MaxRedeliveries int           `env:"HOOKLINE_MAX_REDELIVERIES" envDefault:"5"`

	HTTPTimeout      time.Duration `env:"HOOKLINE_HTTP_TIMEOUT" envDefault:"15s"`
	MaxResponseBytes int64         `env:"HOOKLINE_MAX_RESPONSE_BYTES" envDefault:"65536"`
	// Destinations is the SSRF policy: HOOKLINE_ALLOW_PRIVATE_CIDRS opens
	// blocked ranges (tests, local runs); HOOKLINE_HTTPS_ONLY refuses to
	// deliver to http:// URLs, also those created before it was set.
	Destinations ssrf.Config

	// RetrySchedule is the delay before each attempt (the one place its
	// default is written). Attempt 1 is immediate; a failed attempt n is
	// retried after RetrySchedule[n] (± jitter, or longer when the
	// endpoint's Retry-After asks for it):
	//
	//	attempt  delay before  cumulative
	//	   1        0s            0s
	//	   2        5s            5s
	//	   3        5m            5m05s
	//	   4       30m           35m05s
	//	   5        2h          2h35m05s
	//	   6        5h          7h35m05s
	//	   7       10h         17h35m05s
	//	   8       10h         27h35m05s  → then dead letter (attempts_exhausted)
	//
	// so an endpoint has a little over a day to recover, and a receiver
	// that is down for a deploy (seconds) or an incident (hours) loses
	// nothing.
	RetrySchedule []time.Duration `env:"HOOKLINE_RETRY_SCHEDULE" envDefault:"0s,5s,5m,30m,2h,5h,10h,10h" envSeparator:","`
	RetryJitter   float64         `env:"HOOKLINE_RETRY_JITTER" envDefault:"0.1"`
	MaxRetryAfter time.Duration   `env:"HOOKLINE_MAX_RETRY_AFTER" envDefault:"24h"`

	// ShutdownTimeout bounds a stop (SIGTERM): the attempts in hand finish
	// and settle (tasks still buffered or waiting in a line are handed back
	// unattempted), so it must cover one attempt, HTTPTimeout plus
	// AckWaitMargin. Past it the process exits and logs every message it
	// leaves unsettled (pool.Held).
	ShutdownTimeout time.Duration `env:"HOOKLINE_SHUTDOWN_TIMEOUT" envDefault:"30s"`

	// AttemptLinger is how long a subscription's attempt records gather
	// into one ATTEMPTS message (0: one message per attempt).
	AttemptLinger time.Duration `env:"HOOKLINE_ATTEMPT_LINGER" envDefault:"50ms"`

	// ConsumerLagInterval is how often the dispatch and deliver consumers'
	// pending counts are read into hookline_consumer_*_messages (one
	// JetStream API request per consumer; 0: never).
	ConsumerLagInterval time.Duration `env:"HOOKLINE_CONSUMER_LAG_INTERVAL" envDefault:"15s"`
}

// AckWaitMargin is how much longer than the HTTP timeout AckWait must be:
// time to sign, record the attempt and publish the retry or dead letter.
// A subscription's own attempt timeout obeys it too (pkg/policy).
const AckWaitMargin = policy.AckWaitMargin

// PolicyEnvironment is the environment level of the delivery policy
// (pkg/policy), below a tenant's defaults and a subscription's own.
func (c Config) PolicyEnvironment() policy.Environment {
	return policy.Environment{RetrySchedule: c.RetrySchedule, AttemptTimeout: c.HTTPTimeout, AutoDisableAfter: c.Health.AutoDisableAfter}
}

// FromEnv reads the process environment.
func FromEnv() (Config, error) { return Load(envconfig.Environ()) }

// Load reads the configuration from m (tests pass a map) and validates it.
func Load(m map[string]string) (Config, error) {
	var c Config
	if err := envconfig.Parse(&c, m); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// LoadTopology reads m for `deliverer topology`: only what the topology
// step uses (NATS, logging, the topology settings, AckWait and
// MaxAckPending) must be valid; the rest (secrets, SSRF policy, …) is not
// looked at, so the admin step needs none of them.
func LoadTopology(m map[string]string) (Config, error) {
	var c Config
	if err := envconfig.Parse(&c, m); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	errs := []error{c.NATS.Validate(), c.Log.Validate(), c.Topology.Validate()}
	if c.MaxAckPending < 4 {
		errs = append(errs, fmt.Errorf("HOOKLINE_MAX_ACK_PENDING must be at least 4, not %d", c.MaxAckPending))
	}
	if c.AckWait <= 0 {
		errs = append(errs, fmt.Errorf("HOOKLINE_ACK_WAIT must be positive, not %s", c.AckWait))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// DispatchBufferSize is HOOKLINE_DISPATCH_BUFFER with its default
// applied: what a replica holds in all, waiting, in hand and prefetched
// (a worker's worth each), is three quarters of MaxAckPending, so that a
// replica that started first leaves the others work for their workers.
func (c Config) DispatchBufferSize() int {
	if c.DispatchBuffer > 0 {
		return c.DispatchBuffer
	}
	return max(1, c.MaxAckPending*3/4-2*c.DispatchWorkers)
}

// Validate names the variable at fault; it never prints a secret's value.
func (c Config) Validate() error {
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if err := c.Redis.Validate(); err != nil {
		return err
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if err := c.Health.Validate(); err != nil {
		errs = append(errs, err)
	}
	check(c.HTTPAddr != "", "HOOKLINE_HTTP_ADDR is empty")
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	check(c.DispatchWorkers >= 1, "HOOKLINE_DISPATCH_WORKERS must be at least 1, not %d", c.DispatchWorkers)
	check(c.TenantFanouts >= 0, "HOOKLINE_TENANT_FANOUTS must not be negative, not %d", c.TenantFanouts)
	check(c.DirectMax >= 0, "HOOKLINE_DIRECT_MAX must not be negative, not %d", c.DirectMax)
	check(c.DispatchBuffer >= 0 && c.DispatchBuffer < c.MaxAckPending,
		"HOOKLINE_DISPATCH_BUFFER must be 0 (the default) or below HOOKLINE_MAX_ACK_PENDING (%d), not %d", c.MaxAckPending, c.DispatchBuffer)
	check(c.DispatchBufferBytes >= 1<<20, "HOOKLINE_DISPATCH_BUFFER_BYTES must be at least 1 MiB (1048576), not %d", c.DispatchBufferBytes)
	check(c.DeliverWorkers >= 1, "HOOKLINE_DELIVER_WORKERS must be at least 1, not %d", c.DeliverWorkers)
	check(c.MaxAckPending >= 4, "HOOKLINE_MAX_ACK_PENDING must be at least 4, not %d", c.MaxAckPending)
	check(c.AdmissionMaxWait >= 0 && c.AdmissionMaxWait < c.AckWait*100,
		"HOOKLINE_ADMISSION_MAX_WAIT must be between 0s and 100 × HOOKLINE_ACK_WAIT, not %s", c.AdmissionMaxWait)
	check(c.AdmissionPollMax >= 20*time.Millisecond && c.AdmissionPollMax <= time.Minute,
		"HOOKLINE_ADMISSION_POLL_MAX must be between 20ms and 1m, not %s", c.AdmissionPollMax)
	check(c.OrderingKeyTTL >= time.Hour, "HOOKLINE_ORDERING_KEY_TTL must be at least 1h (it must outlast a head's retries), not %s", c.OrderingKeyTTL)
	check(c.ConsumerLagInterval == 0 || c.ConsumerLagInterval >= time.Second,
		"HOOKLINE_CONSUMER_LAG_INTERVAL must be 0 (off) or at least 1s, not %s", c.ConsumerLagInterval)
	check(c.MaxRedeliveries >= 1, "HOOKLINE_MAX_REDELIVERIES must be at least 1, not %d", c.MaxRedeliveries)
	check(c.HTTPTimeout > 0, "HOOKLINE_HTTP_TIMEOUT must be positive, not %s", c.HTTPTimeout)
	check(c.AckWait >= c.HTTPTimeout+AckWaitMargin,
		"HOOKLINE_ACK_WAIT (%s) must be at least HOOKLINE_HTTP_TIMEOUT (%s) + %s", c.AckWait, c.HTTPTimeout, AckWaitMargin)
	check(c.MaxResponseBytes >= 0, "HOOKLINE_MAX_RESPONSE_BYTES must not be negative, not %d", c.MaxResponseBytes)
	if _, err := c.SSRF(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Secrets.Validate(); err != nil {
		errs = append(errs, err)
	}
	check(len(c.RetrySchedule) >= 1, "HOOKLINE_RETRY_SCHEDULE needs at least one entry")
	if len(c.RetrySchedule) >= 1 {
		check(c.RetrySchedule[0] == 0, "HOOKLINE_RETRY_SCHEDULE must start with 0s (the first attempt is immediate), not %s", c.RetrySchedule[0])
	}
	for i, d := range c.RetrySchedule {
		check(d >= 0, "HOOKLINE_RETRY_SCHEDULE entry %d is negative (%s)", i+1, d)
	}
	check(c.RetryJitter >= 0 && c.RetryJitter < 1, "HOOKLINE_RETRY_JITTER must be in [0, 1), not %g", c.RetryJitter)
	check(c.MaxRetryAfter > 0, "HOOKLINE_MAX_RETRY_AFTER must be positive, not %s", c.MaxRetryAfter)
	check(c.ShutdownTimeout >= c.HTTPTimeout+AckWaitMargin,
		"HOOKLINE_SHUTDOWN_TIMEOUT (%s) must be at least HOOKLINE_HTTP_TIMEOUT (%s) + %s: an attempt in hand at SIGTERM must be able to finish and settle",
		c.ShutdownTimeout, c.HTTPTimeout, AckWaitMargin)
	check(c.AttemptLinger >= 0 && c.AttemptLinger <= 10*time.Second,
		"HOOKLINE_ATTEMPT_LINGER must be between 0s and 10s, not %s", c.AttemptLinger)
	return errors.Join(errs...)
}

// SSRF is the destination policy: every special-purpose range refused
// except HOOKLINE_ALLOW_PRIVATE_CIDRS.
func (c Config) SSRF() (ssrf.Policy, error) { return c.Destinations.Policy() }

// Stream is the topology configuration derived from this one.
func (c Config) Stream() stream.Config {
	sc := c.Topology.Config()
	sc.AckWait = c.AckWait
	sc.MaxAckPending = c.MaxAckPending
	return sc
}

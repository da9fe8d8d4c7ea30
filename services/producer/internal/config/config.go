// Package config holds the producer's configuration: one struct read from
// the environment (caarlos0/env) and a Validate that names the variable at
// fault without ever printing a secret.
package config

import (
	"errors"
	"fmt"
	"github.com/hookline/hookline/services/producer/internal/quota"
	"math"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
)

// Config is every setting of the producer.
type Config struct {
	NATS     natsconn.Config
	Redis    redisconn.Config
	Security Security // API tokens, secrets at rest, SSRF policy (security.go)
	Portal   Portal   // the embeddable portal and its sessions (portal.go)

	// HTTPAddr serves the API, /livez, /readyz and /metrics.
	HTTPAddr string `env:"HOOKLINE_HTTP_ADDR" envDefault:":8080"`

	// Log is HOOKLINE_LOG_LEVEL and HOOKLINE_LOG_FORMAT.
	Log logging.Config
	// Tracing is OpenTelemetry, off unless an OTLP endpoint is set
	// (OTEL_EXPORTER_OTLP_ENDPOINT and the other standard OTEL_* variables).
	Tracing tracing.Config

	// Topology (streams and KV bucket) ensured at start-up; the deliverer
	// reads the same variables.
	Topology stream.Settings
	// Policy is the environment level of the delivery policy, read from
	// the deliverer's variables (HOOKLINE_RETRY_SCHEDULE,
	// HOOKLINE_HTTP_TIMEOUT, HOOKLINE_AUTO_DISABLE_AFTER) to explain and
	// validate subscriptions' policies: give both services the same.
	Policy policy.Environment

	// MaxEventBytes bounds the body of POST /v1/events (413 above it) and
	// the data of each event in a batch.
	MaxEventBytes int64 `env:"HOOKLINE_MAX_EVENT_BYTES" envDefault:"262144"`
	// MaxBatch is the most events in one POST /v1/events/batch.
	MaxBatch int `env:"HOOKLINE_MAX_BATCH" envDefault:"500"`
	// MaxInFlightLimit and MaxRateLimit are the operator's maxima of a
	// subscription's max_in_flight and rate_limit_per_second: no tenant may
	// ask for more.
	MaxInFlightLimit uint32 `env:"HOOKLINE_MAX_IN_FLIGHT_LIMIT" envDefault:"256"`
	// MaxSubscriptionsPerTenant bounds a tenant's subscriptions.
	MaxSubscriptionsPerTenant int     `env:"HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT" envDefault:"1000"`
	MaxRateLimit              float64 `env:"HOOKLINE_MAX_RATE_LIMIT" envDefault:"10000"`
	// TenantEventsPerSecond is each tenant's events/s quota on the API
	// (0: off); TenantEventsBurst how many it may publish at once (0: one
	// second's worth, and at least HOOKLINE_MAX_BATCH).
	TenantEventsPerSecond float64 `env:"HOOKLINE_TENANT_EVENTS_PER_SECOND" envDefault:"0"`
	TenantEventsBurst     int     `env:"HOOKLINE_TENANT_EVENTS_BURST" envDefault:"0"`
	// MaxBatchBytes bounds the body of POST /v1/events/batch (413 above it).
	MaxBatchBytes int64 `env:"HOOKLINE_MAX_BATCH_BYTES" envDefault:"5242880"`
	// PublishTimeout bounds the wait for JetStream's acknowledgement of a
	// publish (or of a whole batch); past it the request answers 503.
	PublishTimeout time.Duration `env:"HOOKLINE_PUBLISH_TIMEOUT" envDefault:"5s"`
	// GroupCommit stores the events of concurrent publishes (and of one
	// batch request) as JetStream atomic batches: a single nats-server
	// with sync_interval: always then fsyncs once per batch, not once per
	// event. Off by default (see the deliverer's).
	GroupCommit bool `env:"HOOKLINE_GROUP_COMMIT" envDefault:"false"`
	// BatchGroupCommit is GroupCommit for batch requests only (on by
	// default): their events are published together anyway, and under
	// sync_interval: always one fsync per batch instead of one per event
	// more than doubled their rate.
	BatchGroupCommit bool `env:"HOOKLINE_BATCH_GROUP_COMMIT" envDefault:"true"`
	// NATSIngest serves ingest.<tenant>.<type…>: events published with
	// NATS, stored through the group commit (internal/ingest).
	NATSIngest bool `env:"HOOKLINE_NATS_INGEST" envDefault:"true"`

	// SecretOverlap is how long a rotated-out signing secret keeps signing
	// next to its successor.
	SecretOverlap time.Duration `env:"HOOKLINE_SECRET_OVERLAP" envDefault:"24h"`

	// ShutdownTimeout bounds finishing in-flight requests on SIGTERM.
	ShutdownTimeout time.Duration `env:"HOOKLINE_SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// Limits that Validate enforces.
const (
	// MaxEventBytesLimit: NATS' default max_payload is 1 MiB; the request
	// is checked against the server's actual max_payload at run time too.
	MaxEventBytesLimit = 8 << 20
	MaxBatchLimit      = 10000
)

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

// Validate names the variable at fault; it never prints a secret's value.
func (c Config) Validate() error {
	var errs []error
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Portal.Validate(); err != nil {
		errs = append(errs, err)
	}
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if err := c.Policy.Validate(); err != nil {
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
	check(c.MaxEventBytes >= 1 && c.MaxEventBytes <= MaxEventBytesLimit,
		"HOOKLINE_MAX_EVENT_BYTES must be between 1 and %d, not %d", MaxEventBytesLimit, c.MaxEventBytes)
	check(c.MaxBatch >= 1 && c.MaxBatch <= MaxBatchLimit, "HOOKLINE_MAX_BATCH must be between 1 and %d, not %d", MaxBatchLimit, c.MaxBatch)
	check(c.MaxBatchBytes >= c.MaxEventBytes,
		"HOOKLINE_MAX_BATCH_BYTES (%d) must be at least HOOKLINE_MAX_EVENT_BYTES (%d)", c.MaxBatchBytes, c.MaxEventBytes)
	check(c.MaxSubscriptionsPerTenant >= 1, "HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT must be at least 1, not %d", c.MaxSubscriptionsPerTenant)
	check(c.MaxInFlightLimit >= 1, "HOOKLINE_MAX_IN_FLIGHT_LIMIT must be at least 1, not %d", c.MaxInFlightLimit)
	check(c.MaxRateLimit >= 1 && !math.IsInf(c.MaxRateLimit, 0), "HOOKLINE_MAX_RATE_LIMIT must be at least 1, not %g", c.MaxRateLimit)
	check(c.PublishTimeout > 0, "HOOKLINE_PUBLISH_TIMEOUT must be positive, not %s", c.PublishTimeout)
	if err := c.Quota().Validate(c.MaxBatch); err != nil {
		errs = append(errs, err)
	}
	check(c.SecretOverlap >= 0, "HOOKLINE_SECRET_OVERLAP must not be negative, not %s", c.SecretOverlap)
	check(c.ShutdownTimeout > 0, "HOOKLINE_SHUTDOWN_TIMEOUT must be positive, not %s", c.ShutdownTimeout)
	return errors.Join(errs...)
}

// Quota is the tenant events/s quota, its burst defaulted.
func (c Config) Quota() quota.Config {
	q := quota.Config{Rate: c.TenantEventsPerSecond, Burst: c.TenantEventsBurst}
	if q.Rate > 0 && q.Burst == 0 && !math.IsNaN(q.Rate) {
		q.Burst = max(c.MaxBatch, int(math.Ceil(min(q.Rate, quota.MaxBurst))))
	}
	return q
}

// Stream is the topology configuration derived from this one.
func (c Config) Stream() stream.Config { return c.Topology.Config() }

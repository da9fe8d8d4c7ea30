package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config sizes the topology. Zero values take the defaults below.
type Config struct {
	// Replicas of every stream and the KV bucket: 1 locally, 3 in production.
	Replicas int
	// EventsMaxAge bounds the event log (default 7 days).
	EventsMaxAge time.Duration
	// AttemptsMaxAge bounds the attempt history (default 30 days).
	AttemptsMaxAge time.Duration
	// DeadLetterMaxAge bounds the dead-letter stream (default 90 days).
	DeadLetterMaxAge time.Duration
	// DuplicateWindow is how long a Nats-Msg-Id is remembered (default 20
	// minutes): longer than any publisher's retry loop.
	DuplicateWindow time.Duration
	// IdempotencyWindow is how long the API remembers an Idempotency-Key
	// after its request's last change (default 24 hours): the TTL of
	// IdempotencyBucket.
	IdempotencyWindow time.Duration
	// MemoryStorage is for benchmarks only; production uses file storage.
	MemoryStorage bool
	// AckWait of the consumers (default 60s): must exceed the HTTP attempt
	// timeout by a margin, or an attempt still running is redelivered.
	AckWait time.Duration
	// MaxAckPending of the deliver consumer (default 10,000).
	MaxAckPending int
	// EventsMaxMsgSize caps an EVENTS message, body and headers (0: none
	// below the server's max_payload). EnsureStreams sets it to
	// EventsLimit of the server's max_payload when it is 0.
	EventsMaxMsgSize int32
}

// EnvelopeHeadroom is what a task or a dead letter adds to an event's body
// at most: Hookline's headers (ids, tenant, type, attempt state, a last
// error of at most 512 bytes, the original subject). An event larger than
// max_payload less this could be stored but never fanned out or
// dead-lettered, so EVENTS refuses it at publish time.
const EnvelopeHeadroom = 16 << 10

// EventsLimit is the EVENTS size cap for a server whose max_payload is
// maxPayload.
func EventsLimit(maxPayload int64) int32 {
	return int32(max(maxPayload-EnvelopeHeadroom, 1))
}

// Defaults.
const (
	DefaultEventsMaxAge      = 7 * 24 * time.Hour
	DefaultAttemptsMaxAge    = 30 * 24 * time.Hour
	DefaultDeadLetterMaxAge  = 90 * 24 * time.Hour
	DefaultDuplicateWindow   = 20 * time.Minute
	DefaultIdempotencyWindow = 24 * time.Hour
	DefaultAckWait           = 60 * time.Second
	DefaultMaxAckPending     = 10000
)

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.EventsMaxAge <= 0 {
		c.EventsMaxAge = DefaultEventsMaxAge
	}
	if c.AttemptsMaxAge <= 0 {
		c.AttemptsMaxAge = DefaultAttemptsMaxAge
	}
	if c.DeadLetterMaxAge <= 0 {
		c.DeadLetterMaxAge = DefaultDeadLetterMaxAge
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.IdempotencyWindow <= 0 {
		c.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	return c
}

// StreamConfigs returns the configuration of every stream.
func StreamConfigs(c Config) []jetstream.StreamConfig {
	c = c.withDefaults()
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return []jetstream.StreamConfig{
		{
			Name:        Events,
			Description: "Hookline event log",
			Subjects:    []string{EventsPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.EventsMaxAge,
			MaxMsgSize:  c.EventsMaxMsgSize,
			Storage:     storage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
			// Group commit (pkg/groupcommit): one fsync per batch under
			// sync_interval: always.
			AllowAtomicPublish: true,
		},
		{
			Name:              Deliveries,
			Description:       "Hookline delivery tasks and scheduled retries",
			Subjects:          []string{DeliveriesPrefix + ".>", RetryPrefix + ".>"},
			Retention:         jetstream.WorkQueuePolicy,
			Storage:           storage,
			Replicas:          c.Replicas,
			Duplicates:        c.DuplicateWindow,
			AllowMsgSchedules: true,
			// Dispatch stores tasks by group commit (pkg/groupcommit).
			AllowAtomicPublish: true,
		},
		{
			Name:        Attempts,
			Description: "Hookline attempt history",
			Subjects:    []string{AttemptsPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.AttemptsMaxAge,
			Storage:     storage,
			Replicas:    c.Replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        DeadLetter,
			Description: "Hookline dead letters, replayable by hand",
			Subjects:    []string{DeadLetterPrefix + ".>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.DeadLetterMaxAge,
			Storage:     storage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
	}
}

// ConsumerConfigs returns the durable consumers by stream.
func ConsumerConfigs(c Config) map[string]jetstream.ConsumerConfig {
	c = c.withDefaults()
	return map[string]jetstream.ConsumerConfig{
		Events: {
			Durable:       DispatchConsumer,
			Description:   "fan-out of events to delivery tasks",
			FilterSubject: EventsPrefix + ".>",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: c.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      c.Replicas,
		},
		Deliveries: {
			Durable:       DeliverConsumer,
			Description:   "HTTP attempts",
			FilterSubject: DeliveriesPrefix + ".>",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: c.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      c.Replicas,
		},
	}
}

// KVConfig is the subscription registry bucket.
func KVConfig(c Config) jetstream.KeyValueConfig {
	return kvConfig(c, SubscriptionsBucket, "Hookline subscription registry (truth)", 5, 0)
}

// KVConfigs are every KV bucket of the topology.
func KVConfigs(c Config) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{KVConfig(c), ReplaysKVConfig(c), ReplayJobsKVConfig(c), DeliveriesKVConfig(c), PortalRevocationsKVConfig(c), IdempotencyKVConfig(c), EventIDsKVConfig(c), TenantsKVConfig(c)}
}

// TenantsKVConfig is the tenants bucket (TenantsBucket): records kept
// until changed, latest only.
func TenantsKVConfig(c Config) jetstream.KeyValueConfig {
	return kvConfig(c, TenantsBucket, "Hookline tenants: delivery policy defaults, metadata, subscription uids", 1, 0)
}

// ReplaysKVConfig is the bucket of replay marks (ReplaysBucket): one entry
// per replayed dead letter, kept as long as DEADLETTER keeps the letter.
func ReplaysKVConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return kvConfig(c, ReplaysBucket, "Hookline dead letters already replayed (exactly-once replay beyond the duplicate window)", 1, c.DeadLetterMaxAge)
}

// ReplayJobsKVConfig is the replay jobs bucket: the latest state of each
// job, kept ReplayJobsTTL after its last change.
func ReplayJobsKVConfig(c Config) jetstream.KeyValueConfig {
	return kvConfig(c, ReplayJobsBucket, "Hookline replay jobs (delivery API)", 1, ReplayJobsTTL)
}

// DeliveriesKVConfig is the delivery state bucket: one key per event ×
// subscription, the latest state only, kept as long as EVENTS keeps the
// event.
func DeliveriesKVConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return kvConfig(c, DeliveriesBucket, "Hookline delivery state per event and subscription (delivery API)", 1, c.EventsMaxAge)
}

// PortalRevocationsKVConfig is the bucket of revoked portal sessions
// (PortalRevocationsBucket): an entry lives a little longer than the
// longest session it can revoke.
func PortalRevocationsKVConfig(c Config) jetstream.KeyValueConfig {
	return kvConfig(c, PortalRevocationsBucket, "Hookline revoked portal sessions", 1, PortalSessionMaxTTL+time.Hour)
}

// IdempotencyKVConfig is the bucket of the API's Idempotency-Key
// requests, kept the idempotency window after their last change.
func IdempotencyKVConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return kvConfig(c, IdempotencyBucket, "Hookline API Idempotency-Key requests and their answers", 1, c.IdempotencyWindow)
}

// EventIDsKVConfig is the bucket of stored event ids, kept as long as
// EVENTS keeps the events.
func EventIDsKVConfig(c Config) jetstream.KeyValueConfig {
	c = c.withDefaults()
	return kvConfig(c, EventIDsBucket, "Hookline event ids stored by the producer (duplicates beyond the duplicate window)", 1, c.EventsMaxAge)
}

// kvConfig is a bucket of the topology on c's storage and replicas.
func kvConfig(c Config, bucket, description string, history uint8, ttl time.Duration) jetstream.KeyValueConfig {
	c = c.withDefaults()
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		History:     history,
		TTL:         ttl,
		Storage:     storage,
		Replicas:    c.Replicas,
	}
}

// Ensure creates or updates every stream, consumer and the KV bucket. It is
// idempotent and safe to run from every replica at start-up.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := EnsureStreams(ctx, js, c); err != nil {
		return err
	}
	for name, cc := range ConsumerConfigs(c) {
		if _, err := js.CreateOrUpdateConsumer(ctx, name, cc); err != nil {
			return fmt.Errorf("ensure consumer %s on %s: %w", cc.Durable, name, err)
		}
	}
	return nil
}

// EnsureStreams creates or updates the streams and the KV bucket but not
// the consumers, whose AckWait and MaxAckPending belong to the deliverer's
// configuration: the producer ensures only these.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	if c.EventsMaxMsgSize == 0 {
		mp := js.Conn().MaxPayload()
		if mp <= 0 {
			return errors.New("ensure streams: not connected to NATS (no max_payload yet)")
		}
		c.EventsMaxMsgSize = EventsLimit(mp)
	}
	for _, sc := range StreamConfigs(c) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range KVConfigs(c) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("ensure kv bucket %s: %w", kc.Bucket, err)
		}
		if AtomicBuckets[kc.Bucket] {
			if err := allowAtomic(ctx, js, "KV_"+kc.Bucket); err != nil {
				return fmt.Errorf("ensure kv bucket %s: %w", kc.Bucket, err)
			}
		}
	}
	return nil
}

// AtomicBuckets are the KV buckets written by group commit
// (pkg/groupcommit), whose streams allow atomic publish; KeyValueConfig
// cannot say so.
var AtomicBuckets = map[string]bool{DeliveriesBucket: true, EventIDsBucket: true}

// allowAtomic turns atomic publish on for the stream name.
func allowAtomic(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

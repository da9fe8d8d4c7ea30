package subscription

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Syncer timing: retry backoff after a failure (doubling up to the max), and
// how often the ready marker is checked when no lookup asks for a resync.
const (
	syncBackoffMin = 100 * time.Millisecond
	syncBackoffMax = 5 * time.Second
	markerCheck    = time.Second
)

// DefaultTombstoneTTL is how long the tombstone of a deleted subscription
// stays in Redis. It only has to outlast a late write of an older revision
// (a producer's write-through that lost the race with the delete: seconds);
// kept forever, tombstones grew every tenant hash that churns
// subscriptions, and ForEvent reads the whole hash.
const DefaultTombstoneTTL = time.Hour

// pruneScript deletes a tombstone unless the field changed since.
var pruneScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`)

// tombstone is one the Syncer wrote (or replayed) and prunes at due.
type tombstone struct {
	due               time.Time
	tenant, id, value string
}

// errResync restarts the watch (and so replays the bucket into Redis).
var errResync = errors.New("redis lost the cache; replaying")

// markReady sets the ready marker only if the replay token set before the
// replay is still there: a FLUSHALL or restart during the replay removes
// the token, and the replay must then start over.
var markReady = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
`)

// Syncer keeps Redis coherent with the KV bucket: it watches every key,
// applies each change through Cache.Apply, and marks the cache ready once
// the initial values are in.
type Syncer struct {
	store   *Store
	cache   *Cache
	log     *zap.Logger
	tombTTL time.Duration
	tombs   []tombstone // oldest first; only the watch goroutine uses it
}

// SyncerOption configures a Syncer.
type SyncerOption func(*Syncer)

// WithTombstoneTTL sets how long tombstones stay (DefaultTombstoneTTL).
func WithTombstoneTTL(d time.Duration) SyncerOption {
	return func(s *Syncer) { s.tombTTL = d }
}

// NewSyncer returns a Syncer; the cache logs through log unless it has a
// logger of its own.
func NewSyncer(store *Store, cache *Cache, log *zap.Logger, opts ...SyncerOption) *Syncer {
	if log == nil {
		log = zap.NewNop()
	}
	cache.adoptLogger(log)
	s := &Syncer{store: store, cache: cache, log: log, tombTTL: DefaultTombstoneTTL}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Run watches the bucket until ctx is done and returns nil then. It survives
// Redis and NATS outages: it logs, backs off and starts over; a restart
// replays the latest value of every key, so nothing missed is lost.
func (s *Syncer) Run(ctx context.Context) error {
	backoff := syncBackoffMin
	for {
		replayed, err := s.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errResync) {
			s.log.Info("subscription cache incomplete; replaying kv into redis")
			backoff = syncBackoffMin
			continue
		}
		if replayed {
			backoff = syncBackoffMin
		}
		s.log.Warn("subscription sync interrupted; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, syncBackoffMax)
	}
}

// watch replays the bucket into Redis, marks it ready and follows changes
// until ctx is done, a resync is needed, or something fails. replayed
// reports whether the initial replay completed.
func (s *Syncer) watch(ctx context.Context) (replayed bool, err error) {
	token, err := newToken()
	if err != nil {
		return false, err
	}
	if err := s.cache.rdb.Set(ctx, SyncKey, token, 0).Err(); err != nil {
		return false, fmt.Errorf("redis: set replay token: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.store.kv.WatchAll(wctx)
	if err != nil {
		return false, fmt.Errorf("watch kv: %w", err)
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(min(markerCheck, s.tombTTL))
	defer tick.Stop()
	// The replay brings every delete marker back as a tombstone to prune.
	s.tombs = s.tombs[:0]
	start, applied := time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return replayed, nil
		case e, ok := <-w.Updates():
			if !ok {
				return replayed, errors.New("kv watcher closed")
			}
			if e == nil {
				ok, err := markReady.Run(ctx, s.cache.rdb, []string{SyncKey, ReadyKey}, token).Int()
				if err != nil {
					return false, fmt.Errorf("redis: set ready marker: %w", err)
				}
				if ok == 0 {
					return false, errResync
				}
				replayed = true
				s.log.Info("subscription cache ready", zap.Int("keys", applied), zap.Float64("duration_s", time.Since(start).Seconds()))
				continue
			}
			if err := s.apply(ctx, e); err != nil {
				return replayed, err
			}
			applied++
		case <-s.cache.resync:
			if replayed && s.markerLost(ctx) {
				return replayed, errResync
			}
		case <-tick.C:
			if replayed && s.markerLost(ctx) {
				return replayed, errResync
			}
			s.prune(ctx)
		}
	}
}

func (s *Syncer) apply(ctx context.Context, e jetstream.KeyValueEntry) error {
	tenant, id, ok := splitKey(e.Key())
	if !ok {
		s.log.Warn("ignoring kv key that is not <tenant>.<id>", zap.String("key", e.Key()))
		return nil
	}
	if e.Operation() != jetstream.KeyValuePut {
		if err := s.cache.Apply(ctx, e.Revision(), tenant, id, nil); err != nil {
			return err
		}
		s.tombs = append(s.tombs, tombstone{due: time.Now().Add(s.tombTTL), tenant: tenant, id: id,
			value: strconv.FormatUint(e.Revision(), 10) + " "})
		return nil
	}
	sub, err := Unmarshal(e.Value())
	if err != nil {
		// A record nobody can read cannot be delivered to either; keep
		// following the rest.
		s.log.Error("undecodable subscription in kv", zap.String("subscription_id", id), zap.Uint64("revision", e.Revision()), zap.Error(err))
		return nil
	}
	return s.cache.Apply(ctx, e.Revision(), tenant, id, sub)
}

// prune removes the tombstones that are due, in one pipeline; after a
// Redis error they stay queued for the next tick.
func (s *Syncer) prune(ctx context.Context) {
	now := time.Now()
	n := 0
	for n < len(s.tombs) && !s.tombs[n].due.After(now) {
		n++
	}
	if n == 0 {
		return
	}
	_, err := s.cache.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range s.tombs[:n] {
			pruneScript.Eval(ctx, p, []string{TenantKey(t.tenant)}, t.id, t.value)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("tombstones not pruned; retrying", zap.Int("count", n), zap.Error(err))
		return
	}
	s.tombs = s.tombs[n:]
}

// markerLost reports whether the ready marker is gone (Redis flushed or
// restarted). A Redis error counts as lost: the replay retries with backoff.
func (s *Syncer) markerLost(ctx context.Context) bool {
	n, err := s.cache.rdb.Exists(ctx, ReadyKey).Result()
	return err != nil || n == 0
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("replay token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

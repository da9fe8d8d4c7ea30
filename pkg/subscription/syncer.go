package subscription

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
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

// pruneScript deletes a tombstone unless the field changed since; a
// tenant hash left empty is also taken out of the ready hash, so that its
// absence reads as "no subscriptions" rather than "evicted".
//
//	KEYS[1] tenant hash   KEYS[2] ready hash   ARGV[1] id   ARGV[2] tombstone   ARGV[3] tenant
var pruneScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
return 1
`)

// tombstone is one the Syncer wrote (or replayed) and prunes at due.
type tombstone struct {
	due               time.Time
	tenant, id, value string
}

// errResync restarts the watch (and so replays the bucket into Redis).
var errResync = errors.New("redis lost the cache; replaying")

// replayLease is how long a syncer's claim to make the cache ready lasts
// without being renewed (it is renewed every markerCheck while it replays):
// a syncer that dies mid-replay blocks the others for at most this long.
const replayLease = 15 * time.Second

// markReady ends a replay. The syncer that claimed the replay token (SET NX
// before its replay) marks the cache ready — only if the token is still
// there: a FLUSHALL or restart during the replay removes it, and the replay
// must start over. It writes the ready field and every tenant it replayed,
// drops tenants whose hash no longer exists, and gives the token up. A
// tenant the replay left with a live subscription (ARGV[4] of them, first)
// is listed whether its hash exists or not: a hash evicted since it was
// replayed then reads as lost (answered from KV, replayed again), where
// leaving the tenant out read as "no subscriptions" for every event until
// something else made the cache replay.
// The cache's origin (ReadyOrigin) must be the bucket the replay read
// (ARGV[3]), or absent (after a flush: it is set); another one means the
// bucket changed under the replay, which starts over. Marking the cache
// ready ends a reset's wipe (the claimer wiped before its replay).
// Returns 1 when it marked the cache ready; 2 when the cache is ready
// already (another syncer made it so); 3 when another syncer holds the
// token (its replay will); 0 when nobody does (start over).
//
//	KEYS[1] token   KEYS[2] ready hash
//	ARGV[1] token   ARGV[2] TenantPrefix   ARGV[3] origin
//	ARGV[4] n       ARGV[5…4+n] tenants with a live subscription   ARGV[5+n…] the other tenants replayed
var markReady = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local o = redis.call('HGET', KEYS[2], '` + ReadyOrigin + `')
if o and o ~= ARGV[3] then return 0 end
if cur == ARGV[1] then
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    if f ~= '*' and string.sub(f, 1, 1) ~= '@' and redis.call('EXISTS', ARGV[2] .. f) == 0 then redis.call('HDEL', KEYS[2], f) end
  end
  local live = tonumber(ARGV[4])
  for i = 5, #ARGV do
    if i <= 4 + live or redis.call('EXISTS', ARGV[2] .. ARGV[i]) == 1 then redis.call('HSET', KEYS[2], ARGV[i], '1') end
  end
  redis.call('HDEL', KEYS[2], '` + readyWipe + `')
  redis.call('HSET', KEYS[2], '*', ARGV[1], '` + ReadyOrigin + `', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('HEXISTS', KEYS[2], '*') == 1 then return 2 end
if cur then return 3 end
return 0
`)

// markReadyArgs are markReady's arguments for the tenants a replay saw:
// those left with a live subscription first, counted.
func markReadyArgs(token string, origin int64, tenants map[string]map[string]bool) []any {
	var live, other []any
	for t, ids := range tenants {
		if len(ids) > 0 {
			live = append(live, t)
		} else {
			other = append(other, t)
		}
	}
	args := []any{token, TenantPrefix, strconv.FormatInt(origin, 10), strconv.Itoa(len(live))}
	return append(append(args, live...), other...)
}

// renewClaim extends the replay token while it is the caller's.
var renewClaim = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
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
		if errors.Is(err, errResync) || errors.Is(err, errRedisLostWrites) || errors.Is(err, errRegistryRewound) {
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
	// Every change up to the registry's last revision now is in the
	// replay that follows: once it is applied the cache is current up to
	// there at least (the replay's own revisions may be lower, when the
	// newest records were purged). The bucket's origin says which bucket
	// the cache's revisions must come from.
	bucket, _, err := s.checkBucket(ctx)
	if err != nil {
		return false, err
	}
	floor, origin := bucket.Last, bucket.Origin
	// One syncer at a time claims the right to mark the cache ready: when
	// every syncer overwrote one token, several replaying at once (after a
	// FLUSHALL) cancelled each other over and over. The others replay too
	// (their writes are revision-guarded) and wait for the marker.
	claimed, err := s.cache.rdb.SetNX(ctx, SyncKey, token, replayLease).Result()
	if err != nil {
		return false, fmt.Errorf("redis: claim replay token: %w", err)
	}
	if claimed {
		// After a reset, or when the cache does not say which bucket its
		// records come from (flushed, its ready hash evicted), the
		// claimer wipes the tenant hashes before its watch begins: its
		// replay then brings back every record, and no record of another
		// bucket (a higher revision the guard would prefer) stays.
		flags, err := s.cache.rdb.HMGet(ctx, ReadyKey, readyWipe, ReadyOrigin).Result()
		if err != nil {
			return false, fmt.Errorf("redis: read the wipe flag: %w", err)
		}
		if len(flags) != 2 || flags[0] != nil || flags[1] == nil {
			if err := s.wipeTenants(ctx); err != nil {
				return false, err
			}
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.store.kv.WatchAll(wctx)
	if err != nil {
		return false, fmt.Errorf("watch kv: %w", err)
	}
	defer StopWatch(w)
	// A watch notices a restarted server only when heartbeats go missing
	// (about 20 s); a dropped or re-established connection starts over at
	// once instead, replaying what was missed.
	interrupted := natsconn.Interruptions(wctx, s.store.js.Conn())
	tick := time.NewTicker(min(markerCheck, s.tombTTL))
	defer tick.Stop()
	// The replay brings every delete marker back as a tombstone to prune.
	s.tombs = s.tombs[:0]
	start, applied := time.Now(), 0
	// tenants are those the replay saw, each with the ids whose last
	// entry was a put (its live subscriptions).
	tenants := map[string]map[string]bool{}
	// wm is the watermark this watch last set; seen the newest revision it
	// applied.
	var wm, seen uint64
	for {
		select {
		case <-ctx.Done():
			return replayed, nil
		case <-interrupted:
			return replayed, errors.New("nats connection dropped or reconnected: watching again")
		case e, ok := <-w.Updates():
			if !ok {
				return replayed, errors.New("kv watcher closed")
			}
			if e == nil {
				args := markReadyArgs(token, origin, tenants)
				res, err := markReady.Run(ctx, s.cache.rdb, []string{SyncKey, ReadyKey}, args...).Int()
				if err != nil {
					return false, fmt.Errorf("redis: set ready marker: %w", err)
				}
				if res == 0 {
					return false, errResync
				}
				replayed, tenants = true, nil
				if res == 1 {
					s.log.Info("subscription cache ready", zap.Int("keys", applied), zap.Float64("duration_s", time.Since(start).Seconds()))
				}
				upTo, err := s.replayedUpTo(ctx, seen, floor)
				if err != nil {
					return replayed, err
				}
				if wm, err = s.advanceWatermark(ctx, upTo, wm); err != nil {
					return replayed, err
				}
				continue
			}
			if !replayed {
				if t, id, ok := splitKey(e.Key()); ok {
					if tenants[t] == nil {
						tenants[t] = map[string]bool{}
					}
					if e.Operation() == jetstream.KeyValuePut {
						tenants[t][id] = true
					} else {
						delete(tenants[t], id)
					}
				}
			}
			if err := s.apply(ctx, e); err != nil {
				return replayed, err
			}
			applied++
			seen = max(seen, e.Revision())
			if replayed {
				if wm, err = s.advanceWatermark(ctx, seen, wm); err != nil {
					return replayed, err
				}
			}
		case <-s.cache.resync:
			if err := s.checkRewound(ctx, origin, max(seen, wm)); err != nil {
				return replayed, err
			}
			if replayed && s.markerLost(ctx) {
				return replayed, errResync
			}
		case <-tick.C:
			if err := s.checkRewound(ctx, origin, max(seen, wm)); err != nil {
				return replayed, err
			}
			if !replayed {
				_ = renewClaim.Run(ctx, s.cache.rdb, []string{SyncKey}, token, replayLease.Milliseconds()).Err()
			}
			if replayed && s.markerLost(ctx) {
				return replayed, errResync
			}
			s.prune(ctx)
		}
	}
}

// replayedUpTo is the revision up to which a finished replay brought every
// change into Redis: seen, the newest it applied, or floor, the bucket's
// last revision before the watch began, when nothing lies between the two
// (the newest records were purged or deleted). A watch is a one-replica
// consumer that a cluster may place on a follower lagging the leader: its
// replay then lacks the records the follower had not applied, and the
// leader, asked for the first record after seen, names one at or before
// floor. The watch delivers it later and raises the watermark then.
func (s *Syncer) replayedUpTo(ctx context.Context, seen, floor uint64) (uint64, error) {
	if floor <= seen {
		return seen, nil
	}
	next, err := s.store.nextRevisionAfter(ctx, seen)
	if err != nil {
		return 0, err
	}
	return replayedUpTo(seen, floor, next), nil
}

// replayedUpTo decides for Syncer.replayedUpTo; next is the leader's first
// revision after seen (0: none).
func replayedUpTo(seen, floor, next uint64) uint64 {
	if floor <= seen || (next != 0 && next <= floor) {
		return seen
	}
	return floor
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
	sub, err := decodeEntry(e)
	if err != nil {
		// A record nobody can read, or one that names another tenant or
		// id than its key, is delivered to nobody: the cache holds a
		// tombstone for it. Keep following the rest.
		s.log.Error("unusable subscription record in kv", zap.String("subscription_id", id), zap.Uint64("revision", e.Revision()), zap.Error(err))
		return s.cache.Apply(ctx, e.Revision(), tenant, id, nil)
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
			pruneScript.Eval(ctx, p, []string{TenantKey(t.tenant), ReadyKey}, t.id, t.value, t.tenant)
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
// restarted) with nobody replaying to set it again. A Redis error counts as
// lost: the replay retries with backoff.
func (s *Syncer) markerLost(ctx context.Context) bool {
	var ready *redis.BoolCmd
	var claimed *redis.IntCmd
	_, err := s.cache.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ready = p.HExists(ctx, ReadyKey, ReadyAll)
		claimed = p.Exists(ctx, SyncKey)
		return nil
	})
	return err != nil || (!ready.Val() && claimed.Val() == 0)
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("replay token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// checkRewound returns errRegistryRewound when the bucket is no longer
// the one the watch began on (origin) or went below seen (see rewound).
func (s *Syncer) checkRewound(ctx context.Context, origin int64, seen uint64) error {
	back, err := s.rewound(ctx, origin, seen)
	if back {
		return errRegistryRewound
	}
	return err
}

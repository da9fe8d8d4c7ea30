package subscription

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// A subscriptions bucket deleted and created again, or restored from an
// older backup, counts its revisions again from lower down: a Redis
// watermark (and the records, tombstones included, that carry the old
// revisions) would then claim more than the registry holds, and the
// revision guard would keep the new records out. The cache therefore
// remembers which bucket its revisions come from (ReadyOrigin), and a
// Syncer checks, when it starts a watch and every markerCheck, that the
// bucket is still that one and that its last revision has not gone below
// what the cache (or the Syncer's own watch) already holds. When it has,
// the cache is reset: marked incomplete, its watermark removed, every
// tenant hash wiped by the Syncer that claims the replay, and replayed.

// ReadyOrigin is the field of the ReadyKey hash naming the bucket the
// cache's revisions come from: BucketState.Origin in decimal. A lookup
// that needs a revision trusts Redis only when it names the bucket the
// lookup's Horizon read. Tenant names cannot start with '@'.
const ReadyOrigin = "@origin"

// readyWipe is present in the ReadyKey hash after a reset until a replay
// that wiped every tenant hash first marks the cache ready.
const readyWipe = "@wipe"

// checkBucketScript resets the cache when its origin is not the bucket's
// (ARGV[1]) or a watermark read before the bucket's last revision
// (ARGV[3]) is beyond that revision (ARGV[2]) and still in place. Read in
// that order, a watermark beyond the last revision proves the revisions
// went back (a change applied in between only raises the watermark after
// the read). It lists the tenants whose hashes the ready hash names in
// the wipe list (KEYS[4]), deletes the ready hash, the watermark and any
// replay claim, and records the new origin with the wipe flag. A ready cache
// without an origin (written by an older version) adopts the bucket's.
// Returns 1 when it reset the cache, else 0.
//
//	KEYS[1] ready hash   KEYS[2] watermark   KEYS[3] replay token
//	KEYS[4] wipe list
var checkBucketScript = redis.NewScript(`
local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end
local o = redis.call('HGET', KEYS[1], '` + ReadyOrigin + `')
local wm = redis.call('GET', KEYS[2]) or '0'
if (o and o ~= ARGV[1]) or (older(ARGV[2], ARGV[3]) and wm == ARGV[3]) then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if f ~= '*' and string.sub(f, 1, 1) ~= '@' then
      redis.call('HSET', KEYS[4], f, '1')
    end
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], '` + ReadyOrigin + `', ARGV[1], '` + readyWipe + `', '1')
  return 1
end
if not o and redis.call('HEXISTS', KEYS[1], '*') == 1 then
  redis.call('HSET', KEYS[1], '` + ReadyOrigin + `', ARGV[1])
end
return 0
`)

// errRegistryRewound restarts a Syncer's watch: the bucket it follows is
// not the one it began with, or its revisions went back.
var errRegistryRewound = errors.New("subscription registry recreated or restored backwards; replaying kv into redis")

// checkBucket reads the cache's watermark, then the bucket's state from
// its stream's leader, and resets the cache when it holds revisions of
// another bucket, or beyond the bucket's last; it reports whether it did.
func (s *Syncer) checkBucket(ctx context.Context) (BucketState, bool, error) {
	wm, err := s.cache.rdb.Get(ctx, WatermarkKey).Result()
	if errors.Is(err, redis.Nil) {
		wm, err = "0", nil
	}
	if err != nil {
		return BucketState{}, false, fmt.Errorf("redis: read the watermark: %w", err)
	}
	st, err := s.store.state(ctx)
	if err != nil {
		return BucketState{}, false, err
	}
	res, err := checkBucketScript.Run(ctx, s.cache.rdb, []string{ReadyKey, WatermarkKey, SyncKey, wipeListKey},
		strconv.FormatInt(st.Origin, 10), strconv.FormatUint(st.Last, 10), wm).Int()
	if err != nil {
		return st, false, fmt.Errorf("redis: check the cache's origin: %w", err)
	}
	if res == 1 {
		s.cache.rewound.Add(1)
		s.log.Warn("subscription registry recreated or restored backwards: redis cache reset, replaying kv into it",
			zap.Int64("origin", st.Origin), zap.Uint64("last_revision", st.Last), zap.String("watermark", wm))
	}
	return st, res == 1, nil
}

// rewound reports whether the cache had to be reset (checkBucket), or the
// bucket is no longer the one this watch began on (origin), or its last
// revision is below seen, the newest revision the watch applied or set as
// the watermark (both before the bucket's state is read).
func (s *Syncer) rewound(ctx context.Context, origin int64, seen uint64) (bool, error) {
	st, reset, err := s.checkBucket(ctx)
	if err != nil {
		if st.Origin == 0 {
			// NATS unreachable or the stream electing a leader: the
			// watch notices an outage itself; check again at the next
			// tick.
			return false, nil
		}
		return false, err
	}
	if reset {
		return true, nil
	}
	if st.Origin == origin && st.Last >= seen {
		return false, nil
	}
	s.cache.rewound.Add(1)
	s.log.Warn("subscription registry went back under this syncer's watch; watching again",
		zap.Int64("origin", origin), zap.Int64("bucket_origin", st.Origin),
		zap.Uint64("seen", seen), zap.Uint64("last_revision", st.Last))
	return true, nil
}

// wipeListKey is a hash naming (as fields) the tenants whose hashes a
// reset found in the ready hash: the wipe before the next replay deletes
// them. A list, not a SCAN of the keyspace: the services' Redis users may
// not enumerate keys (deploy/security/users.acl).
const wipeListKey = "hookline:subs:wipe"

// wipeTenants deletes the tenant hashes a reset listed, and those the
// ready hash names, before a replay that will mark the cache ready, when
// their records may carry revisions of another bucket (which the revision
// guard would prefer to the new ones).
func (s *Syncer) wipeTenants(ctx context.Context) error {
	listed, err := s.cache.rdb.HKeys(ctx, wipeListKey).Result()
	if err != nil {
		return fmt.Errorf("redis: wipe tenant hashes: %w", err)
	}
	named, err := s.cache.rdb.HKeys(ctx, ReadyKey).Result()
	if err != nil {
		return fmt.Errorf("redis: wipe tenant hashes: %w", err)
	}
	seen := map[string]bool{}
	var keys []string
	for _, t := range append(listed, named...) {
		if t == ReadyAll || strings.HasPrefix(t, "@") || seen[t] {
			continue
		}
		seen[t] = true
		keys = append(keys, TenantKey(t))
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 500)]
		keys = keys[len(batch):]
		if err := s.cache.rdb.Del(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("redis: wipe tenant hashes: %w", err)
		}
	}
	if err := s.cache.rdb.Del(ctx, wipeListKey).Err(); err != nil {
		return fmt.Errorf("redis: wipe tenant hashes: %w", err)
	}
	if len(seen) > 0 {
		s.log.Info("subscription cache wiped before a replay (reset, flushed or evicted)", zap.Int("tenant_hashes", len(seen)))
	}
	return nil
}

// Rewound is how many times this process found the subscriptions bucket
// recreated or restored backwards (its Syncer's watch began on another
// bucket, or the bucket's last revision went below what the cache held)
// and reset the Redis cache or replayed into it.
func (c *Cache) Rewound() uint64 { return c.rewound.Load() }

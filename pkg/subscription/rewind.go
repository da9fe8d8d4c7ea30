package subscription

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
// the read). It deletes the ready hash, the watermark and any replay
// claim, and records the new origin with the wipe flag. A ready cache
// without an origin (written by an older version) adopts the bucket's.
// Returns 1 when it reset the cache, else 0.
//
//	KEYS[1] ready hash   KEYS[2] watermark   KEYS[3] replay token
var checkBucketScript = redis.NewScript(`
local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end
local o = redis.call('HGET', KEYS[1], '` + ReadyOrigin + `')
local wm = redis.call('GET', KEYS[2]) or '0'
if (o and o ~= ARGV[1]) or (older(ARGV[2], ARGV[3]) and wm == ARGV[3]) then
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
	res, err := checkBucketScript.Run(ctx, s.cache.rdb, []string{ReadyKey, WatermarkKey, SyncKey},
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

// wipeTenants deletes every tenant hash before a replay that will mark the
// cache ready, when their records may carry revisions of another bucket
// (which the revision guard would prefer to the new ones).
func (s *Syncer) wipeTenants(ctx context.Context) error {
	it := s.cache.rdb.Scan(ctx, 0, TenantPrefix+"*", 1000).Iterator()
	batch := make([]string, 0, 500)
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.cache.rdb.Unlink(ctx, batch...).Err(); err != nil {
			return err
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for it.Next(ctx) {
		batch = append(batch, it.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return fmt.Errorf("redis: wipe tenant hashes: %w", err)
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("redis: wipe tenant hashes: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("redis: wipe tenant hashes: %w", err)
	}
	if n > 0 {
		s.log.Info("subscription cache wiped before a replay (reset, flushed or evicted)", zap.Int("tenant_hashes", n))
	}
	return nil
}

// Rewound is how many times this process found the subscriptions bucket
// recreated or restored backwards (its Syncer's watch began on another
// bucket, or the bucket's last revision went below what the cache held)
// and reset the Redis cache or replayed into it.
func (c *Cache) Rewound() uint64 { return c.rewound.Load() }

package subscription

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis keys; see the package documentation.
const (
	ReadyKey     = "hookline:subs:ready"
	SyncKey      = "hookline:subs:sync"
	TenantPrefix = "hookline:subs:t:"
)

// TenantKey is the Redis hash of a tenant's subscriptions.
func TenantKey(tenant string) string { return TenantPrefix + tenant }

// ReadyAll is the field of the ReadyKey hash whose presence says the cache
// is complete (its value is the replay token that made it so); every other
// field of that hash is a tenant that has a hash.
const ReadyAll = "*"

// applyScript writes "<rev> <json>" (or the tombstone "<rev> ") into the
// tenant hash unless the field already holds the same or a newer revision,
// and, when the cache is ready, records the tenant in the ready hash.
// Revisions are compared as decimal strings (length, then bytes) so that
// they stay exact beyond 2^53. Returns 1 when written, 0 when older.
//
//	KEYS[1] tenant hash   KEYS[2] ready hash
//	ARGV[1] id   ARGV[2] revision   ARGV[3] json ("" for a tombstone)   ARGV[4] tenant
var applyScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], '*') == 1 then
  redis.call('HSET', KEYS[2], ARGV[4], '1')
end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if sp then
    local old = string.sub(cur, 1, sp - 1)
    local new = ARGV[2]
    if #old > #new or (#old == #new and old >= new) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
`)

// replaceScript overwrites a field only if it still holds what was read:
// the repair of a record that cannot be true.
//
//	KEYS[1] tenant hash  ARGV[1] id  ARGV[2] value read  ARGV[3] new value
var replaceScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
`)

// authPrefix starts the tag of an authenticated record:
// "<rev> h1:<tag> <json>" (a tombstone: "<rev> h1:<tag> ").
const authPrefix = "h1:"

// errUnauthenticated: a record without a valid tag while records are
// authenticated (written by someone without the key: not Hookline).
var errUnauthenticated = errors.New("record not authenticated by HOOKLINE_SECRET_KEY")

// Fallback tuning: after a Redis error the Cache answers from the Store for
// redisBackoff; then one lookup (and only one) probes Redis while the others
// keep using the Store, so a down Redis never adds its dial and retry time
// to every lookup. Fallback warnings are logged at most once per logEvery.
const (
	redisBackoff = time.Second
	probeWindow  = 30 * time.Second
	logEvery     = 5 * time.Second
)

// Cache is the deliverers' Redis lookup of subscriptions, coherent with the
// Store through Apply (write-through) and the Syncer (watch). It falls back
// to the Store whenever Redis cannot give a complete answer.
type Cache struct {
	rdb    redis.UniversalClient
	store  *Store
	resync chan struct{}
	// auth authenticates records (nil: records are trusted as read).
	auth *secretbox.Box

	mu  sync.Mutex
	log *zap.Logger

	behind    atomic.Uint64 // lookups the watermark sent to the registry
	rewound   atomic.Uint64 // times the bucket was found recreated or restored backwards
	downUntil atomic.Int64  // unix nanos; Redis skipped until then (0: up)
	lastLog   atomic.Int64  // unix nanos of the last fallback log line
}

// CacheOption configures a Cache.
type CacheOption func(*Cache)

// WithLogger sets the Cache's logger (default: the Syncer's, else none).
func WithLogger(log *zap.Logger) CacheOption {
	return func(c *Cache) { c.log = log }
}

// WithRecordAuth authenticates every record written to Redis with a tag
// derived from box's key, which Redis never sees: a record forged in Redis
// (another URL, a huge revision) is read as unknown (the registry answers)
// and repaired. nil: records are trusted as read.
func WithRecordAuth(box *secretbox.Box) CacheOption {
	return func(c *Cache) { c.auth = box }
}

// NewCache returns a Cache over rdb that falls back to store.
func NewCache(rdb redis.UniversalClient, store *Store, opts ...CacheOption) *Cache {
	c := &Cache{rdb: rdb, store: store, resync: make(chan struct{}, 1)}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *Cache) logger() *zap.Logger {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log == nil {
		return zap.NewNop()
	}
	return c.log
}

func (c *Cache) adoptLogger(log *zap.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log == nil {
		c.log = log
	}
}

// Resync asks the Syncer to replay the bucket into Redis (non-blocking).
func (c *Cache) requestResync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

// ForEvent returns the enabled subscriptions of tenant whose filters match
// eventType. It answers from Redis when the cache is complete, else from the
// Store; it fails only when the Store fails too.
func (c *Cache) ForEvent(ctx context.Context, tenant, eventType string) ([]*hooklinev1.Subscription, error) {
	return c.ForEventAt(ctx, tenant, eventType, 0)
}

// ForEventAt is ForEvent from a view that holds every registry change up to
// revision need: Redis answers only when its watermark reaches need, else
// the Store does.
func (c *Cache) ForEventAt(ctx context.Context, tenant, eventType string, need uint64) ([]*hooklinev1.Subscription, error) {
	if ValidateTenant(tenant) != nil {
		// No subscription can belong to it (tenants are validated when a
		// subscription is created): matching nothing is the answer, not an
		// error that would redo the event forever while Redis is not ready.
		return nil, nil
	}
	all, ok := c.tenantFromRedis(ctx, tenant, need)
	if !ok {
		// A list read through a watch may come from a replica that has
		// not applied need yet; ListAt's does not.
		subs, err := c.store.ListAt(ctx, tenant, need)
		if err != nil {
			return nil, err
		}
		all = subs
	}
	var out []*hooklinev1.Subscription
	for _, sub := range all {
		if !sub.GetDisabled() && MatchesAny(sub.GetEventTypes(), eventType) {
			out = append(out, sub)
		}
	}
	return out, nil
}

// tenantFromRedis reads every live subscription of tenant; ok is false when
// Redis cannot give a complete answer: the cache is not ready, it is not
// current up to revision need, Redis fails, or the tenant's hash is missing
// although the ready hash lists the tenant (evicted or deleted: "unknown",
// never "no subscriptions").
func (c *Cache) tenantFromRedis(ctx context.Context, tenant string, need uint64) ([]*hooklinev1.Subscription, bool) {
	if !c.useRedis() {
		return nil, false
	}
	var ready *redis.SliceCmd
	var hash *redis.MapStringStringCmd
	var wm *redis.StringCmd
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ready = p.HMGet(ctx, ReadyKey, ReadyAll, tenant, ReadyOrigin)
		hash = p.HGetAll(ctx, TenantKey(tenant))
		wm = p.Get(ctx, WatermarkKey)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		c.redisFailed(err)
		return nil, false
	}
	c.redisUp()
	flags := ready.Val()
	if len(flags) != 3 || flags[0] == nil {
		c.requestResync()
		return nil, false
	}
	if !c.current(wm.Val(), flags[2], need) {
		return nil, false
	}
	if len(hash.Val()) == 0 && flags[1] != nil {
		// The cache is no longer complete: say so for every reader, and
		// have a Syncer replay the bucket.
		c.warn("subscription cache lost a tenant's entries (evicted or deleted); answering from kv and replaying",
			zap.String("tenant", tenant))
		if err := c.rdb.HDel(ctx, ReadyKey, ReadyAll).Err(); err != nil {
			c.redisFailed(err)
		}
		c.requestResync()
		return nil, false
	}
	subs := make([]*hooklinev1.Subscription, 0, len(hash.Val()))
	for id, v := range hash.Val() {
		_, sub, err := c.parseEntry(tenant, id, v)
		if err != nil {
			c.warn("subscription cache entry unreadable; answering from kv", zap.String("subscription_id", id), zap.Error(err))
			c.requestResync()
			return nil, false
		}
		if sub != nil {
			subs = append(subs, sub)
		}
	}
	return subs, true
}

// Get returns one subscription (disabled ones too). It returns ErrNotFound
// when the subscription was deleted or never existed.
func (c *Cache) Get(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, error) {
	return c.GetAt(ctx, tenant, id, 0)
}

// GetAt is Get from a view that holds every registry change up to revision
// need: Redis answers only when its watermark reaches need, else the
// registry's leader does.
func (c *Cache) GetAt(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error) {
	if ValidateTenant(tenant) != nil || ValidateID(id) != nil {
		return nil, ErrNotFound
	}
	if c.useRedis() {
		var ready *redis.SliceCmd
		var field, wm *redis.StringCmd
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			ready = p.HMGet(ctx, ReadyKey, ReadyAll, ReadyOrigin)
			field = p.HGet(ctx, TenantKey(tenant), id)
			wm = p.Get(ctx, WatermarkKey)
			return nil
		})
		if err == nil || errors.Is(err, redis.Nil) {
			c.redisUp()
		}
		flags := ready.Val()
		switch {
		case err != nil && !errors.Is(err, redis.Nil):
			c.redisFailed(err)
		case len(flags) != 2 || flags[0] == nil:
			c.requestResync()
		case !c.current(wm.Val(), flags[1], need):
		case field.Err() == nil:
			_, sub, perr := c.parseEntry(tenant, id, field.Val())
			if perr == nil {
				if sub == nil {
					return nil, ErrNotFound
				}
				return sub, nil
			}
			c.requestResync()
			// A field that is absent while the cache is ready means a
			// change not seen yet (or a stranger's id): ask the truth.
		}
	}
	if need > 0 {
		// A direct get may be answered by a follower that has not applied
		// the changes the caller needs; the leader has.
		sub, _, err := c.store.leaderGet(ctx, tenant, id)
		return sub, err
	}
	sub, _, err := c.store.GetTenant(ctx, tenant, id)
	return sub, err
}

// current reports whether a Redis watermark (WatermarkKey's value) reaches
// need, counted in the bucket the lookup's revision came from: the cache's
// origin (ReadyOrigin's value, nil when absent) must be the one the store
// read last (the Horizon's round for need read it), and the watermark no
// higher than the last revision that read found. A watermark beyond it is
// a change applied since (rare: the next round covers it) or a bucket
// restored from an older backup under the cache (its origin unchanged);
// either way the registry answers and a Syncer checks. A cache that is not
// current is counted, and the answer comes from the registry.
func (c *Cache) current(wm string, origin any, need uint64) bool {
	if need == 0 {
		return true
	}
	w := parseWatermark(wm)
	if known, last := c.store.known(); known != 0 {
		if o, _ := origin.(string); o != strconv.FormatInt(known, 10) || w > last {
			c.behind.Add(1)
			c.requestResync()
			return false
		}
	}
	if w >= need {
		return true
	}
	c.behind.Add(1)
	return false
}

// Behind is how many lookups found the Redis cache behind the revision
// they needed and read the registry instead.
func (c *Cache) Behind() uint64 { return c.behind.Load() }

// Apply writes one KV change into Redis unless Redis already holds the same
// or a newer revision of it. sub == nil means deleted: a tombstone with rev
// is kept so that an older write arriving late cannot resurrect it (the
// Syncer prunes it after its tombstone TTL, an hour by default).
func (c *Cache) Apply(ctx context.Context, rev uint64, tenant, id string, sub *hooklinev1.Subscription) error {
	var body string
	if sub != nil {
		b, err := Marshal(sub)
		if err != nil {
			return fmt.Errorf("apply subscription %s: %w", id, err)
		}
		body = string(b)
	}
	revStr := strconv.FormatUint(rev, 10)
	body = c.tagged(tenant, id, revStr, body)
	written, err := applyScript.Run(ctx, c.rdb, []string{TenantKey(tenant), ReadyKey}, id, revStr, body, tenant).Int()
	if err != nil {
		return fmt.Errorf("apply subscription %s to redis: %w", id, err)
	}
	if written == 0 {
		c.repair(ctx, tenant, id, rev, revStr+" "+body)
	}
	return nil
}

// repair overwrites a record that kept a write out although it cannot be
// true: unauthenticated (when records are), unreadable, or of a revision
// the registry never reached. A record newer than the write and real is
// left alone (the write came late).
func (c *Cache) repair(ctx context.Context, tenant, id string, rev uint64, value string) {
	cur, err := c.rdb.HGet(ctx, TenantKey(tenant), id).Result()
	if err != nil {
		return
	}
	curRev, _, perr := c.parseEntry(tenant, id, cur)
	why := ""
	switch {
	case perr != nil:
		why = perr.Error()
	case curRev > rev:
		last, err := c.store.LastRevision(ctx)
		if err != nil || curRev <= last {
			return
		}
		why = fmt.Sprintf("revision %d is beyond the registry's last revision %d", curRev, last)
	default:
		return
	}
	if err := replaceScript.Run(ctx, c.rdb, []string{TenantKey(tenant)}, id, cur, value).Err(); err != nil {
		c.redisFailed(err)
		return
	}
	c.warn("subscription cache record could not be true; replaced with the registry's",
		zap.String("subscription_id", id), zap.String("why", why))
}

// tagged prefixes a record's body ("" for a tombstone) with its tag when
// records are authenticated.
func (c *Cache) tagged(tenant, id, rev, body string) string {
	if c.auth == nil {
		return body
	}
	return authPrefix + c.auth.Sign(recordData(tenant, id, rev, body)) + " " + body
}

// recordData is what a record's tag authenticates: the record and where
// it is filed (a record copied under another id or tenant fails).
func recordData(tenant, id, rev, body string) []byte {
	return []byte(tenant + "\x00" + id + "\x00" + rev + "\x00" + body)
}

// parseEntry reads "<rev> [h1:<tag> ]<json>" filed under tenant and id;
// sub is nil for a tombstone.
func (c *Cache) parseEntry(tenant, id, v string) (uint64, *hooklinev1.Subscription, error) {
	revStr, body, ok := strings.Cut(v, " ")
	if !ok {
		return 0, nil, errors.New("no revision")
	}
	rev, err := strconv.ParseUint(revStr, 10, 64)
	if err != nil {
		return 0, nil, errors.New("bad revision")
	}
	if t, rest, ok := strings.Cut(body, " "); ok && strings.HasPrefix(t, authPrefix) {
		if c.auth != nil && !c.auth.Verify(recordData(tenant, id, revStr, rest), t[len(authPrefix):]) {
			return 0, nil, errUnauthenticated
		}
		body = rest
	} else if c.auth != nil {
		return 0, nil, errUnauthenticated
	}
	if body == "" {
		return rev, nil, nil
	}
	sub, err := Unmarshal([]byte(body))
	if err != nil {
		return 0, nil, err
	}
	return rev, sub, nil
}

// useRedis reports whether this lookup should ask Redis: always while it is
// up; after a failure, only the one lookup that wins the probe once
// redisBackoff has passed.
func (c *Cache) useRedis() bool {
	until := c.downUntil.Load()
	if until == 0 {
		return true
	}
	now := time.Now()
	if now.UnixNano() < until {
		return false
	}
	return c.downUntil.CompareAndSwap(until, now.Add(probeWindow).UnixNano())
}

func (c *Cache) redisUp() {
	if c.downUntil.Load() != 0 {
		c.downUntil.Store(0)
	}
}

func (c *Cache) redisFailed(err error) {
	c.downUntil.Store(time.Now().Add(redisBackoff).UnixNano())
	c.warn("redis unavailable; answering subscription lookups from kv", zap.Error(err))
}

// warn logs at most once per logEvery.
func (c *Cache) warn(msg string, fields ...zap.Field) {
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(logEvery) || !c.lastLog.CompareAndSwap(last, now) {
		return
	}
	c.logger().Warn(msg, fields...)
}

package security_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const redisACL = "../../deploy/security/users.acl"

// startSecureRedis starts a real redis-server with the example ACL file,
// its password placeholders replaced by the hashes of random passwords
// (nothing else changed).
func startSecureRedis(t *testing.T) (addr string, passwords map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(redisACL)
	if err != nil {
		t.Fatal(err)
	}
	acl := string(raw)
	passwords = map[string]string{}
	for _, user := range []string{"producer", "deliverer"} {
		passwords[user] = randomPassword(t)
		sum := sha256.Sum256([]byte(passwords[user]))
		placeholder := "<" + user + "-password-sha256>"
		if !strings.Contains(acl, placeholder) {
			t.Fatalf("users.acl has no %s placeholder", placeholder)
		}
		acl = strings.ReplaceAll(acl, placeholder, hex.EncodeToString(sum[:]))
	}
	path := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(path, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	s := redistest.Start(t, "--aclfile", path)
	return s.Addr, passwords
}

func redisAs(t *testing.T, addr, user, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: password, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// redisAllowed and redisDenied run one command; denied means an ACL
// refusal, nothing else.
func redisAllowed(t *testing.T, user string, c *redis.Client, args ...any) {
	t.Helper()
	if err := c.Do(context.Background(), args...).Err(); err != nil && err != redis.Nil {
		t.Errorf("%s: %v must be allowed: %v", user, args, err)
	}
}

func redisDenied(t *testing.T, user string, c *redis.Client, args ...any) {
	t.Helper()
	err := c.Do(context.Background(), args...).Err()
	// Inside a script the refusal reads "The user executing the script
	// can't run this command".
	if err == nil || !(strings.HasPrefix(err.Error(), "NOPERM") || strings.Contains(err.Error(), "user executing the script can't run")) {
		t.Errorf("%s: %v = %v, want NOPERM", user, args, err)
	}
}

// What every user must be refused: the whole key space, the server, other
// users, pub/sub, scripts reaching outside the key pattern.
func deniedToEveryone(t *testing.T, user string, c *redis.Client) {
	t.Helper()
	for _, cmd := range [][]any{
		{"flushall"}, {"flushdb"}, {"keys", "*"}, {"scan", "0"}, {"randomkey"},
		{"config", "get", "*"}, {"config", "set", "appendonly", "no"},
		{"acl", "list"}, {"acl", "setuser", user, "+@all"}, {"monitor"}, {"client", "list"}, {"client", "kill", "127.0.0.1:1"},
		{"script", "flush"}, {"save"}, {"bgsave"}, {"replicaof", "127.0.0.1", "1"}, {"module", "list"},
		{"publish", "hookline:x", "y"}, {"subscribe", "hookline:x"},
		{"get", "session:1"}, {"set", "other", "x"}, {"del", "other"},
		{"eval", "return redis.call('GET', KEYS[1])", "1", "session:1"},
		{"eval", "return redis.call('FLUSHALL')", "0"},
	} {
		redisDenied(t, user, c, cmd...)
	}
}

// The example Redis ACL file: each component's normal commands are
// accepted, on its keys only; the dangerous ones are refused.
func TestRedisLeastPrivilege(t *testing.T) {
	addr, pw := startSecureRedis(t)
	ctx := context.Background()

	t.Run("no default user", func(t *testing.T) {
		err := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1}).Ping(ctx).Err()
		if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Fatalf("PING without a user = %v, want NOAUTH", err)
		}
		err = redis.NewClient(&redis.Options{Addr: addr, Username: "deliverer", Password: "wrong", MaxRetries: -1}).Ping(ctx).Err()
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("PING with a wrong password = %v, want WRONGPASS", err)
		}
	})

	// The real subscription registry and cache: the producer writes the
	// cache, the deliverer's syncer replays the registry into it and its
	// lookups are answered from Redis (no fallback to the store).
	nats := natstest.Start(t)
	_, js := nats.Connect(t)
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := store.Create(ctx, subscriptionRecord("sub_1"))
	if err != nil {
		t.Fatal(err)
	}

	producer := redisAs(t, addr, "producer", pw["producer"])
	deliverer := redisAs(t, addr, "deliverer", pw["deliverer"])

	t.Run("producer", func(t *testing.T) {
		core, logs := observer.New(zapcore.WarnLevel)
		cache := subscription.NewCache(producer, store, subscription.WithLogger(zap.New(core)))
		if err := cache.Apply(ctx, rev, "acme", "sub_1", subscriptionRecord("sub_1")); err != nil {
			t.Fatalf("cache apply as producer: %v", err)
		}
		if n, err := producer.HLen(ctx, subscription.TenantKey("acme")).Result(); err != nil || n != 1 {
			t.Fatalf("tenant hash after apply: %d, %v", n, err)
		}
		if logs.Len() != 0 {
			t.Fatalf("cache warned as producer: %v", logs.All())
		}
		k := subscription.TenantKey("acme")
		for _, cmd := range [][]any{
			{"ping"}, {"get", subscription.ReadyKey}, {"set", "hookline:subs:probe", "1"}, {"exists", k},
			{"hget", k, "sub_1"}, {"hgetall", k}, {"hset", k, "sub_x", "1 "}, {"hexists", k, "sub_1"},
			{"hlen", k}, {"del", "hookline:subs:probe"},
		} {
			redisAllowed(t, "producer", producer, cmd...)
		}
		if _, err := producer.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Exists(ctx, subscription.ReadyKey)
			p.HGetAll(ctx, k)
			return nil
		}); err != nil {
			t.Errorf("producer: MULTI/EXEC: %v", err)
		}
		tombstonesPrunedAs(t, "producer", producer, store, "sub_p")
		// The producer reads an endpoint's health (GET
		// /v1/subscriptions/{id}/health: pkg/endpointhealth) and never
		// writes it.
		if _, err := endpointhealth.Read(ctx, producer, "sub_1", time.Now()); err != nil {
			t.Errorf("producer: read endpoint health: %v", err)
		}
		// It reads the deliverers' deferral counts too (…/stats, …/health).
		if _, err := endpointhealth.ReadDeferrals(ctx, producer, "sub_1", time.Now().Add(-time.Hour), time.Now()); err != nil {
			t.Errorf("producer: read deferral counts: %v", err)
		}
		redisDenied(t, "producer", producer, "hincrby", endpointhealth.DeferralsKey("sub_1", time.Now()), "rate_limited", "1")
		redisDenied(t, "producer", producer, "set", "hookline:inflight:{sub_1}", "x")
		redisDenied(t, "producer", producer, "zadd", "hookline:inflight:{sub_1}", "1", "x")
		redisDenied(t, "producer", producer, "hset", "hookline:breaker:{sub_1}", "open_until", "1")
		redisDenied(t, "producer", producer, "del", "hookline:breaker:{sub_1}")
		redisDenied(t, "producer", producer, "get", "hookline:ratelimit:{sub_1}")
		redisDenied(t, "producer", producer, "hgetall", "hookline:ratelimit:{sub_1}")
		deniedToEveryone(t, "producer", producer)
	})

	t.Run("deliverer", func(t *testing.T) {
		cache, logs := syncerAs(t, "deliverer", deliverer, store)
		deadline := time.Now().Add(15 * time.Second)
		for deliverer.Exists(ctx, subscription.ReadyKey).Val() != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("the syncer never marked the cache ready as deliverer (warnings: %v)", logs.All())
			}
			time.Sleep(10 * time.Millisecond)
		}
		subs, err := cache.ForEvent(ctx, "acme", "order.created")
		if err != nil || len(subs) != 1 {
			t.Fatalf("lookup as deliverer: %v, %v", subs, err)
		}
		if logs.Len() != 0 {
			t.Fatalf("cache or syncer warned as deliverer (a refused command?): %v", logs.All())
		}

		tombstonesPrunedAs(t, "deliverer", deliverer, store, "sub_d")

		// In-flight cap, rate limit and circuit breaker: the commands their
		// Lua scripts call (services/deliverer/internal/{inflight,ratelimit,breaker}).
		scripts := []struct {
			name, lua string
			keys      []string
		}{
			{"in-flight acquire/release", `
				redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', 0)
				local n = redis.call('ZCARD', KEYS[1])
				redis.call('ZADD', KEYS[1], 100, 'lease')
				redis.call('PEXPIRE', KEYS[1], 1000)
				redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
				return redis.call('ZREM', KEYS[1], 'lease')`, []string{"hookline:inflight:{sub_1}"}},
			{"rate limit GCRA", `
				local st = redis.call('HMGET', KEYS[1], 'tat', 'w', 'n')
				redis.call('HSET', KEYS[1], 'tat', '1', 'w', '1', 'n', '1')
				return redis.call('PEXPIRE', KEYS[1], 2000)`, []string{"hookline:ratelimit:{sub_1}"}},
			{"breaker", `
				local ou = redis.call('HGET', KEYS[1], 'open_until')
				local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
				redis.call('HSETNX', KEYS[1], 'since', '1')
				redis.call('HEXISTS', KEYS[1], 'open_until')
				redis.call('SET', KEYS[2], 'token', 'NX', 'PX', 1000)
				redis.call('PTTL', KEYS[2])
				if redis.call('GET', KEYS[2]) == 'token' then redis.call('DEL', KEYS[2]) end
				redis.call('PEXPIRE', KEYS[1], 1000)
				return redis.call('DEL', KEYS[1], KEYS[2])`, []string{"hookline:breaker:{sub_1}", "hookline:breaker:{sub_1}:probe"}},
		}
		for _, s := range scripts {
			// go-redis runs scripts with EVALSHA, falling back to EVAL.
			if err := redis.NewScript(s.lua).Run(ctx, deliverer, s.keys).Err(); err != nil && err != redis.Nil {
				t.Errorf("deliverer: %s script: %v", s.name, err)
			}
		}
		if err := deliverer.HGetAll(ctx, "hookline:breaker:{sub_1}").Err(); err != nil {
			t.Errorf("deliverer: breaker status: %v", err)
		}
		// Deferral counts (services/deliverer/internal/deferrals).
		pipe := deliverer.Pipeline()
		endpointhealth.AddDeferrals(ctx, pipe, "sub_1", "rate_limited", time.Now(), 2)
		if _, err := pipe.Exec(ctx); err != nil {
			t.Errorf("deliverer: count deferrals: %v", err)
		}
		deniedToEveryone(t, "deliverer", deliverer)
		redisDenied(t, "deliverer", deliverer, "zadd", "inflight:{sub_1}", "1", "x")
	})
}

// syncerAs runs a Syncer and its Cache as user until the (sub)test ends;
// logs holds the warnings of both.
func syncerAs(t *testing.T, user string, rdb *redis.Client, store *subscription.Store, opts ...subscription.SyncerOption) (*subscription.Cache, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	cache := subscription.NewCache(rdb, store, subscription.WithLogger(log))
	syncer := subscription.NewSyncer(store, cache, log, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: syncer: %v", user, err)
		}
	})
	return cache, logs
}

// tombstonesPrunedAs runs a Syncer as user (both services run one) with a
// short tombstone TTL: a deleted subscription's tombstone is written and
// then pruned, and nothing is refused on the way.
func tombstonesPrunedAs(t *testing.T, user string, rdb *redis.Client, store *subscription.Store, id string) {
	t.Helper()
	ctx := context.Background()
	_, logs := syncerAs(t, user, rdb, store, subscription.WithTombstoneTTL(100*time.Millisecond))
	if _, err := store.Create(ctx, subscriptionRecord(id)); err != nil {
		t.Fatal(err)
	}
	k := subscription.TenantKey("acme")
	waitFor(t, user+": "+id+" in redis", func() bool { return rdb.HExists(ctx, k, id).Val() })
	if _, _, err := store.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, user+": "+id+"'s tombstone pruned", func() bool {
		ok, err := rdb.HExists(ctx, k, id).Result()
		return err == nil && !ok
	})
	if logs.Len() != 0 {
		t.Fatalf("%s: syncer warned (a refused command?): %v", user, logs.All())
	}
}

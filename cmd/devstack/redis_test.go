package main

import (
	"context"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func TestChooseRedis(t *testing.T) {
	t.Parallel()
	found := func(string) (string, error) { return "/usr/bin/redis-server", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	tests := []struct {
		name     string
		url      string
		mode     redisMode
		lookPath func(string) (string, error)
		want     redisKind
		wantErr  bool
	}{
		{name: "url wins over everything", url: "redis://10.0.0.1:6379/0", mode: redisAuto, lookPath: found, want: kindExternal},
		{name: "url wins over miniredis", url: "redis://x:6379", mode: redisMiniredis, lookPath: missing, want: kindExternal},
		{name: "redis-server on PATH", mode: redisAuto, lookPath: found, want: kindServer},
		{name: "nothing on PATH", mode: redisAuto, lookPath: missing, want: kindMiniredis},
		{name: "miniredis asked for", mode: redisMiniredis, lookPath: found, want: kindMiniredis},
		{name: "redis-server asked for", mode: redisServer, lookPath: found, want: kindServer},
		{name: "redis-server asked for but missing", mode: redisServer, lookPath: missing, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind, _, err := chooseRedis(tt.url, tt.mode, tt.lookPath)
			if (err != nil) != tt.wantErr || kind != tt.want {
				t.Fatalf("chooseRedis = %q, %v; want %q (error %v)", kind, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestStartRedis starts each kind for real, stores a key through the URL the
// services would get, and stops it.
func TestStartRedis(t *testing.T) {
	t.Parallel()
	for _, mode := range []redisMode{redisServer, redisMiniredis} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			cfg := config{DataDir: t.TempDir(), Redis: mode, RedisPort: 0, StopTimeout: 10 * time.Second}
			r, err := startRedis(context.Background(), cfg, newConsole(io.Discard), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := r.stop(cfg.StopTimeout); err != nil {
					t.Errorf("stop: %v", err)
				}
			}()
			if r.Kind != kindServer && mode == redisServer || r.Kind != kindMiniredis && mode == redisMiniredis {
				t.Fatalf("kind %q for mode %q", r.Kind, mode)
			}
			useRedis(t, r.URL)

			// An external Redis (REDIS_URL) is used, not started.
			ext, err := startRedis(context.Background(), config{RedisURL: r.URL, Redis: redisAuto}, newConsole(io.Discard), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			if ext.Kind != kindExternal || ext.URL != r.URL || ext.child != nil || ext.mini != nil {
				t.Fatalf("external: %+v", ext)
			}
		})
	}
}

func TestStartRedisRefusesAnUnreachableURL(t *testing.T) {
	t.Parallel()
	addr, err := freeAddr() // nobody listens there
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // fail at once instead of waiting out the PING deadline
	_, err = startRedis(ctx, config{RedisURL: "redis://" + addr + "/0"}, newConsole(io.Discard), zap.NewNop())
	if err == nil {
		t.Fatal("startRedis accepted a Redis that does not answer")
	}
}

func useRedis(t *testing.T, url string) {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "hookline:devstack", "ok", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "hookline:devstack").Result()
	if err != nil || got != "ok" {
		t.Fatalf("get = %q, %v", got, err)
	}
}

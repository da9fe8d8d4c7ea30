package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/hookline/hookline/pkg/freeport"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisMode is the --redis flag: what to start when no Redis URL is given.
type redisMode string

const (
	redisAuto      redisMode = "auto"
	redisServer    redisMode = "redis-server"
	redisMiniredis redisMode = "miniredis"
)

func (m *redisMode) String() string { return string(*m) }

func (m *redisMode) Set(s string) error {
	switch redisMode(s) {
	case redisAuto, redisServer, redisMiniredis:
		*m = redisMode(s)
		return nil
	}
	return fmt.Errorf("want auto, redis-server or miniredis")
}

// redisKind is the Redis the stack ends up with.
type redisKind string

const (
	kindExternal  redisKind = "external (REDIS_URL)"
	kindServer    redisKind = "redis-server"
	kindMiniredis redisKind = "embedded miniredis"
)

// chooseRedis decides which Redis to use: the URL when one is given, else
// redis-server when it is on PATH (or asked for), else miniredis. bin is the
// redis-server path for kindServer.
func chooseRedis(url string, mode redisMode, lookPath func(string) (string, error)) (kind redisKind, bin string, err error) {
	if url != "" {
		return kindExternal, "", nil
	}
	if mode == redisMiniredis {
		return kindMiniredis, "", nil
	}
	bin, err = lookPath("redis-server")
	switch {
	case err == nil:
		return kindServer, bin, nil
	case mode == redisServer:
		return "", "", fmt.Errorf("--redis=redis-server, but redis-server is not on PATH (apt-get install redis-server)")
	default:
		return kindMiniredis, "", nil
	}
}

// localRedis is the Redis the services use, and how to stop it.
type localRedis struct {
	Kind  redisKind
	URL   string
	child *child               // kindServer
	mini  *miniredis.Miniredis // kindMiniredis
}

// startRedis starts (or checks) the chosen Redis and waits until it answers PING.
func startRedis(ctx context.Context, cfg config, con *console, log *zap.Logger) (*localRedis, error) {
	kind, bin, err := chooseRedis(cfg.RedisURL, cfg.Redis, exec.LookPath)
	if err != nil {
		return nil, err
	}
	r := &localRedis{Kind: kind}
	switch kind {
	case kindExternal:
		r.URL = cfg.RedisURL
		if err := ping(ctx, r.URL, nil); err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		log.Info("redis: using REDIS_URL", zap.String("url", redactURL(r.URL)))
	case kindServer:
		addr, err := redisAddr(cfg.RedisPort)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(cfg.DataDir, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("redis data dir: %w", err)
		}
		_, port, _ := net.SplitHostPort(addr)
		// A cache: no snapshots, no AOF. Flushing it loses nothing.
		args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
		r.child, err = startChild(con, "redis", bin, args, os.Environ())
		if err != nil {
			return nil, err
		}
		r.URL = "redis://" + addr + "/0"
		if err := ping(ctx, r.URL, r.child.done); err != nil {
			_ = r.child.stop(cfg.StopTimeout)
			return nil, fmt.Errorf("redis-server: %w", err)
		}
		log.Info("redis: started redis-server", zap.String("url", r.URL), zap.String("bin", bin), zap.Int("pid", r.child.Pid()))
	case kindMiniredis:
		addr, err := redisAddr(cfg.RedisPort)
		if err != nil {
			return nil, err
		}
		r.mini = miniredis.NewMiniRedis()
		if err := r.mini.StartAddr(addr); err != nil {
			return nil, fmt.Errorf("miniredis: %w", err)
		}
		r.URL = "redis://" + addr + "/0"
		log.Info("redis: started an embedded miniredis (no redis-server on PATH and no REDIS_URL; apt-get install redis-server for a real one)", zap.String("url", r.URL))
	}
	return r, nil
}

// stop stops what startRedis started; an external Redis is left alone.
func (r *localRedis) stop(timeout time.Duration) error {
	switch {
	case r.child != nil:
		return r.child.stop(timeout)
	case r.mini != nil:
		r.mini.Close()
	}
	return nil
}

// redisAddr is 127.0.0.1:<port> when that port is free, else a free port.
func redisAddr(port int) (string, error) {
	preferred := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port != 0 && portFree(preferred) {
		return preferred, nil
	}
	return freeAddr()
}

// ping waits until Redis answers PING, the context ends, or exited closes.
func ping(ctx context.Context, url string, exited <-chan struct{}) error {
	o, err := redis.ParseURL(url)
	if err != nil {
		return errors.New("not a redis:// or rediss:// URL")
	}
	o.MaxRetries = -1
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		last = c.Ping(pctx).Err()
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before it answered PING")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING within 15s: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// portFree reports whether addr can be listened on now.
func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// freeAddr is a loopback address with a port nobody listens on now.
func freeAddr() (string, error) { return freeport.Loopback() }

// redactURL hides a password in a URL.
func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// config is what the flags and the environment choose.
type config struct {
	// Root is the repository root (the folder holding go.work).
	Root string
	// DataDir holds NATS's file storage, Redis's folder and the built binaries.
	DataDir string
	// NATSPort of the embedded nats-server on 127.0.0.1.
	NATSPort int
	// Listen addresses of the producer (the API), the deliverer (probes and
	// metrics) and the demo receiver.
	ProducerAddr, DelivererAddr, ReceiverAddr string
	// RedisURL, when set, is a Redis to use instead of starting one.
	RedisURL string
	// Redis chooses what to start when RedisURL is empty.
	Redis redisMode
	// RedisPort is the preferred port of a started Redis: a free one when it
	// is taken or 0.
	RedisPort int
	// StopTimeout is how long a child gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// NATSSync is how the embedded nats-server fsyncs JetStream writes.
	NATSSync natsSync
}

// natsSync is the --nats-sync flag.
type natsSync string

const (
	// syncDefault is nats-server's default: fsync every 2 minutes.
	syncDefault natsSync = "default"
	// syncAlways fsyncs every write (sync_interval: always), as production
	// runs.
	syncAlways natsSync = "always"
)

func (s *natsSync) String() string { return string(*s) }

func (s *natsSync) Set(v string) error {
	switch natsSync(v) {
	case syncDefault, syncAlways:
		*s = natsSync(v)
		return nil
	}
	return fmt.Errorf("want default or always")
}

const usageText = `Usage: go run ./cmd/devstack [flags]

Runs Hookline locally: an embedded NATS server with JetStream, a Redis, the
producer and the deliverer, and a demo receiver that verifies and prints every
webhook it gets. Ctrl-C stops everything.

Environment:
  HOOKLINE_DEV_NATS_PORT  port of the embedded NATS server (default 4222)
  REDIS_URL               use this Redis instead of starting one
  HOOKLINE_*              passed to the producer and deliverer (for example
                          HOOKLINE_RETRY_SCHEDULE=0s,5s,30s for a faster demo)

Flags:
`

// errUsage marks an error in the command line: main prints the usage and
// exits 2.
var errUsage = errors.New("usage")

// parseConfig reads flags and the environment. It returns flag.ErrHelp for
// -h/--help, and an error wrapping errUsage for a command line it cannot use.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	cfg := config{Redis: redisAuto, NATSSync: syncDefault}
	fs, err := flagSet(&cfg, getenv)
	if err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := cfg.resolve(); err != nil {
		return config{}, err
	}
	if err := cfg.validate(); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

func flagSet(cfg *config, getenv func(string) string) (*flag.FlagSet, error) {
	natsPort := 4222
	if v := getenv("HOOKLINE_DEV_NATS_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("HOOKLINE_DEV_NATS_PORT=%q is not a port number", v)
		}
		natsPort = p
	}
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // main prints errors and the usage once
	fs.StringVar(&cfg.Root, "root", "", "repository root holding go.work (default: found from the working directory)")
	fs.StringVar(&cfg.DataDir, "data-dir", ".data", "data folder, relative to the repository root unless absolute")
	fs.IntVar(&cfg.NATSPort, "nats-port", natsPort, "port of the embedded NATS server on 127.0.0.1 (env HOOKLINE_DEV_NATS_PORT)")
	fs.StringVar(&cfg.ProducerAddr, "producer-addr", "127.0.0.1:8080", "listen address of the producer (the API)")
	fs.StringVar(&cfg.DelivererAddr, "deliverer-addr", "127.0.0.1:8081", "listen address of the deliverer (probes, metrics)")
	fs.StringVar(&cfg.ReceiverAddr, "receiver-addr", "127.0.0.1:9000", "listen address of the demo receiver")
	fs.StringVar(&cfg.RedisURL, "redis-url", getenv("REDIS_URL"), "use this Redis instead of starting one (env REDIS_URL)")
	fs.IntVar(&cfg.RedisPort, "redis-port", 6379, "preferred port of a started Redis (a free one when taken; 0: any free port)")
	fs.Var(&cfg.Redis, "redis", "what to start when no Redis URL is given: auto (redis-server when on PATH, else miniredis), redis-server or miniredis")
	fs.Var(&cfg.NATSSync, "nats-sync", "how NATS fsyncs JetStream writes: default (every 2 minutes, NATS's default) or always (every write, production's durability)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 45*time.Second, "time a child gets to stop after SIGTERM before it is killed")
	return fs, nil
}

// printUsage writes the usage text and the flags.
func printUsage(w io.Writer) {
	_, _ = io.WriteString(w, usageText)
	fs, _ := flagSet(&config{Redis: redisAuto, NATSSync: syncDefault}, func(string) string { return "" })
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// resolve makes Root and DataDir absolute.
func (c *config) resolve() error {
	if c.Root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		root, err := findRoot(wd)
		if err != nil {
			return err
		}
		c.Root = root
	}
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return fmt.Errorf("--root: %w", err)
	}
	c.Root = root
	if !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(c.Root, c.DataDir)
	}
	return nil
}

// findRoot walks up from dir to the folder that holds go.work.
func findRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.work in %s or above: run from the Hookline repository or pass --root", dir)
		}
		d = parent
	}
}

func (c config) validate() error {
	if c.NATSPort < 1 || c.NATSPort > 65535 {
		return fmt.Errorf("--nats-port %d is not a port number (1-65535)", c.NATSPort)
	}
	for _, a := range []struct{ flag, addr string }{
		{"--producer-addr", c.ProducerAddr},
		{"--deliverer-addr", c.DelivererAddr},
		{"--receiver-addr", c.ReceiverAddr},
	} {
		_, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("%s %q is not host:port", a.flag, a.addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%s %q needs a port number (1-65535)", a.flag, a.addr)
		}
	}
	if c.RedisPort < 0 || c.RedisPort > 65535 {
		return fmt.Errorf("--redis-port %d is not a port number (0-65535)", c.RedisPort)
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return errors.New("REDIS_URL (or --redis-url) is not a redis:// or rediss:// URL")
		}
	}
	if c.StopTimeout <= 0 {
		return errors.New("--stop-timeout must be positive")
	}
	return nil
}

package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--root", root}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr error // nil: no error
		check   func(t *testing.T, c config)
	}{
		{
			name: "defaults",
			args: base,
			check: func(t *testing.T, c config) {
				if c.NATSPort != 4222 || c.ProducerAddr != "127.0.0.1:8080" || c.DelivererAddr != "127.0.0.1:8081" ||
					c.ReceiverAddr != "127.0.0.1:9000" || c.Redis != redisAuto || c.RedisURL != "" {
					t.Errorf("defaults: %+v", c)
				}
				if c.DataDir != filepath.Join(root, ".data") {
					t.Errorf("data dir %q, want under the root", c.DataDir)
				}
				if c.NATSSync != syncDefault {
					t.Errorf("nats sync %q, want the NATS default", c.NATSSync)
				}
			},
		},
		{
			name: "nats port from the environment",
			args: base,
			env:  map[string]string{"HOOKLINE_DEV_NATS_PORT": "14222"},
			check: func(t *testing.T, c config) {
				if c.NATSPort != 14222 {
					t.Errorf("nats port %d, want 14222", c.NATSPort)
				}
			},
		},
		{
			name: "flag beats the environment",
			args: append([]string{"--nats-port", "5222"}, base...),
			env:  map[string]string{"HOOKLINE_DEV_NATS_PORT": "14222"},
			check: func(t *testing.T, c config) {
				if c.NATSPort != 5222 {
					t.Errorf("nats port %d, want 5222", c.NATSPort)
				}
			},
		},
		{
			name: "REDIS_URL",
			args: base,
			env:  map[string]string{"REDIS_URL": "redis://127.0.0.1:6390/2"},
			check: func(t *testing.T, c config) {
				if c.RedisURL != "redis://127.0.0.1:6390/2" {
					t.Errorf("redis url %q", c.RedisURL)
				}
			},
		},
		{
			name: "absolute data dir and miniredis",
			args: append([]string{"--data-dir", "/tmp/x", "--redis", "miniredis", "--stop-timeout", "3s"}, base...),
			check: func(t *testing.T, c config) {
				if c.DataDir != "/tmp/x" || c.Redis != redisMiniredis || c.StopTimeout != 3*time.Second {
					t.Errorf("%+v", c)
				}
			},
		},
		{
			name: "production durability",
			args: append([]string{"--nats-sync", "always"}, base...),
			check: func(t *testing.T, c config) {
				if c.NATSSync != syncAlways {
					t.Errorf("nats sync %q, want always", c.NATSSync)
				}
			},
		},
		{name: "bad nats sync", args: append([]string{"--nats-sync", "sometimes"}, base...), wantErr: errUsage},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp},
		{name: "unknown flag", args: []string{"--frobnicate"}, wantErr: errUsage},
		{name: "stray argument", args: append(base, "extra"), wantErr: errUsage},
		{name: "bad redis mode", args: append([]string{"--redis", "memcached"}, base...), wantErr: errUsage},
		{name: "bad env port", args: base, env: map[string]string{"HOOKLINE_DEV_NATS_PORT": "x"}, wantErr: errUsage},
		{name: "port out of range", args: append([]string{"--nats-port", "70000"}, base...), wantErr: errUsage},
		{name: "addr without port", args: append([]string{"--producer-addr", "localhost"}, base...), wantErr: errUsage},
		{name: "bad REDIS_URL", args: base, env: map[string]string{"REDIS_URL": "http://x"}, wantErr: errUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] })
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestFindRootWalksUpToGoWork(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	deep := filepath.Join(root, "cmd", "hookctl", "devstack")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := findRoot(deep)
	if err != nil || got != root {
		t.Fatalf("findRoot = %q, %v; want %q", got, err, root)
	}
	if _, err := findRoot(t.TempDir()); err == nil {
		t.Fatal("findRoot found a go.work where there is none")
	}
}

func TestServiceEnvKeepsTheStackAddresses(t *testing.T) {
	t.Parallel()
	base := []string{
		"PATH=/usr/bin",
		"HOOKLINE_NATS_URL=nats://elsewhere:4222",
		"HOOKLINE_NATS_CREDS=/home/me/prod.creds",
		"HOOKLINE_REDIS_PASSWORD=hunter2",
		"HOOKLINE_HTTP_ADDR=:1",
		"HOOKLINE_RETRY_SCHEDULE=0s,1s",
		"HOOKLINE_LOG_FORMAT=json",
	}
	env := envMap(serviceEnv(base, "nats://127.0.0.1:4222", "redis://127.0.0.1:6379/0", "127.0.0.1:8080"))
	want := map[string]string{
		"PATH":                         "/usr/bin",
		"HOOKLINE_NATS_URL":            "nats://127.0.0.1:4222",
		"HOOKLINE_REDIS_URL":           "redis://127.0.0.1:6379/0",
		"HOOKLINE_HTTP_ADDR":           "127.0.0.1:8080",
		"HOOKLINE_RETRY_SCHEDULE":      "0s,1s", // the developer's own setting passes
		"HOOKLINE_LOG_FORMAT":          "json",  // and beats the local default
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": privateCIDRs,
		"HOOKLINE_TOPOLOGY":            "ensure", // no admin step locally
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"HOOKLINE_NATS_CREDS", "HOOKLINE_REDIS_PASSWORD"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s leaked into the local services", k)
		}
	}
}

// envMap is what a process sees: the last of duplicate keys wins.
func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		for i := range len(kv) {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	return m
}

// --nats-sync always starts the embedded server with sync_interval: always.
func TestNATSSyncAlways(t *testing.T) {
	t.Parallel()
	for _, sync := range []natsSync{syncDefault, syncAlways} {
		cfg := config{DataDir: t.TempDir(), NATSPort: -1, NATSSync: sync}
		s, err := startNATS(cfg, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		got := s.JetStreamConfig().SyncAlways
		stopNATS(s)
		if got != (sync == syncAlways) {
			t.Errorf("--nats-sync %s: the server's SyncAlways is %v", sync, got)
		}
	}
	if b := banner(config{NATSSync: syncAlways}, &localRedis{}, false, ""); !strings.Contains(b, "fsync on every write") {
		t.Errorf("the banner does not say NATS fsyncs every write:\n%s", b)
	}
	if b := banner(config{NATSSync: syncDefault}, &localRedis{}, false, ""); !strings.Contains(b, "--nats-sync always") {
		t.Errorf("the banner does not say how to run production's durability:\n%s", b)
	}
}

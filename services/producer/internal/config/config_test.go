package config_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/services/producer/internal/config"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.Log.Level != "info" || c.Log.Format != "json" || c.Topology.Replicas != 1 ||
		c.Topology.EventsMaxAge != 168*time.Hour || c.Topology.DeadLetterMaxAge != 2160*time.Hour || c.Topology.AttemptsMaxAge != 720*time.Hour ||
		c.Topology.DuplicateWindow != 20*time.Minute || c.MaxEventBytes != 262144 || c.MaxBatch != 500 ||
		c.MaxBatchBytes != 5<<20 || c.PublishTimeout != 5*time.Second || c.SecretOverlap != 24*time.Hour ||
		c.ShutdownTimeout != 20*time.Second || c.NATS.URL != "nats://127.0.0.1:4222" || c.Redis.URL != "redis://127.0.0.1:6379/0" {
		t.Fatalf("defaults: %+v", c)
	}
	s := c.Stream()
	if s.Replicas != 1 || s.EventsMaxAge != 168*time.Hour || s.DuplicateWindow != 20*time.Minute ||
		s.DeadLetterMaxAge != 2160*time.Hour || s.AttemptsMaxAge != 720*time.Hour {
		t.Fatalf("stream config %+v", s)
	}
}

func TestSetButEmptyFallsBackToDefault(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{"HOOKLINE_HTTP_ADDR": "", "HOOKLINE_MAX_BATCH": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.MaxBatch != 500 {
		t.Fatalf("empty values: addr %q batch %d", c.HTTPAddr, c.MaxBatch)
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{
		"HOOKLINE_HTTP_ADDR": "127.0.0.1:9000", "HOOKLINE_STREAM_REPLICAS": "3", "HOOKLINE_MAX_EVENT_BYTES": "1024",
		"HOOKLINE_SECRET_OVERLAP": "0s", "HOOKLINE_LOG_FORMAT": "console", "HOOKLINE_DUPLICATE_WINDOW": "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9000" || c.Topology.Replicas != 3 || c.MaxEventBytes != 1024 || c.SecretOverlap != 0 ||
		c.Log.Format != "console" || c.Topology.DuplicateWindow != time.Hour {
		t.Fatalf("overrides: %+v", c)
	}
}

func TestValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "unparsable duration", env: map[string]string{"HOOKLINE_EVENTS_MAX_AGE": "a week"}, want: "HOOKLINE_EVENTS_MAX_AGE"},
		{name: "unparsable int", env: map[string]string{"HOOKLINE_MAX_BATCH": "many"}, want: "HOOKLINE_MAX_BATCH"},
		{name: "log level", env: map[string]string{"HOOKLINE_LOG_LEVEL": "loud"}, want: "HOOKLINE_LOG_LEVEL"},
		{name: "trace exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: "OTEL_TRACES_EXPORTER"},
		{name: "log format", env: map[string]string{"HOOKLINE_LOG_FORMAT": "xml"}, want: "HOOKLINE_LOG_FORMAT"},
		{name: "replicas", env: map[string]string{"HOOKLINE_STREAM_REPLICAS": "7"}, want: "HOOKLINE_STREAM_REPLICAS"},
		{name: "negative max age", env: map[string]string{"HOOKLINE_DEAD_LETTER_MAX_AGE": "-1h"}, want: "HOOKLINE_DEAD_LETTER_MAX_AGE"},
		{name: "attempts max age", env: map[string]string{"HOOKLINE_ATTEMPTS_MAX_AGE": "0s"}, want: "HOOKLINE_ATTEMPTS_MAX_AGE"},
		{name: "duplicate window longer than events", env: map[string]string{"HOOKLINE_DUPLICATE_WINDOW": "200h"}, want: "HOOKLINE_DUPLICATE_WINDOW"},
		{name: "idempotency window too short", env: map[string]string{"HOOKLINE_IDEMPOTENCY_WINDOW": "30s"}, want: "HOOKLINE_IDEMPOTENCY_WINDOW"},
		{name: "event bytes zero", env: map[string]string{"HOOKLINE_MAX_EVENT_BYTES": "0"}, want: "HOOKLINE_MAX_EVENT_BYTES"},
		{name: "batch zero", env: map[string]string{"HOOKLINE_MAX_BATCH": "0"}, want: "HOOKLINE_MAX_BATCH"},
		{name: "batch bytes below event bytes", env: map[string]string{"HOOKLINE_MAX_BATCH_BYTES": "100"}, want: "HOOKLINE_MAX_BATCH_BYTES"},
		{name: "publish timeout", env: map[string]string{"HOOKLINE_PUBLISH_TIMEOUT": "0s"}, want: "HOOKLINE_PUBLISH_TIMEOUT"},
		{name: "negative overlap", env: map[string]string{"HOOKLINE_SECRET_OVERLAP": "-1s"}, want: "HOOKLINE_SECRET_OVERLAP"},
		{name: "shutdown timeout", env: map[string]string{"HOOKLINE_SHUTDOWN_TIMEOUT": "0s"}, want: "HOOKLINE_SHUTDOWN_TIMEOUT"},
		{name: "nats password without user", env: map[string]string{"HOOKLINE_NATS_PASSWORD": "hunter2"}, want: "HOOKLINE_NATS_PASSWORD"},
		{name: "redis url", env: map[string]string{"HOOKLINE_REDIS_URL": "http://:hunter2@host"}, want: "HOOKLINE_REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error prints a secret: %v", err)
			}
		})
	}
}

func TestPortalSettings(t *testing.T) {
	t.Parallel()
	base := map[string]string{}
	tests := []struct {
		name, key, value, want string
	}{
		{"short key", "HOOKLINE_PORTAL_KEY", "c2hvcnQ=", "HOOKLINE_PORTAL_KEY must be base64 of 32 bytes"},
		{"ttl too long", "HOOKLINE_PORTAL_SESSION_TTL", "25h", "HOOKLINE_PORTAL_SESSION_TTL"},
		{"frame-ancestors injection", "HOOKLINE_PORTAL_FRAME_ANCESTORS", "https://a.example; script-src *", "HOOKLINE_PORTAL_FRAME_ANCESTORS"},
		{"none with others", "HOOKLINE_PORTAL_FRAME_ANCESTORS", "'none' https://a.example", "HOOKLINE_PORTAL_FRAME_ANCESTORS"},
		{"colour", "HOOKLINE_PORTAL_ACCENT_COLOR", "red;}body{", "HOOKLINE_PORTAL_ACCENT_COLOR"},
		{"url with query", "HOOKLINE_PORTAL_URL", "https://h.example/?a=1", "HOOKLINE_PORTAL_URL"},
		{"logo not http", "HOOKLINE_PORTAL_LOGO_URL", "javascript:alert(1)", "HOOKLINE_PORTAL_LOGO_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{tt.key: tt.value}
			for k, v := range base {
				m[k] = v
			}
			_, err := config.Load(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error naming %s", err, tt.want)
			}
			if tt.key == "HOOKLINE_PORTAL_KEY" && strings.Contains(err.Error(), tt.value) {
				t.Fatalf("the key was printed: %v", err)
			}
		})
	}
	c, err := config.Load(map[string]string{"HOOKLINE_PORTAL_FRAME_ANCESTORS": "'self' https://app.example.com https://*.example.org:8443"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Portal.SessionTTL != time.Hour || c.Portal.Name != "Webhooks" {
		t.Fatalf("defaults %+v", c.Portal)
	}
}

// The portal's session key: HOOKLINE_PORTAL_KEY (or _FILE) when set, else
// derived from the secret key however it is given (never that key itself),
// else random.
func TestPortalSigningKey(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	portalKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromValue, src, err := config.Portal{}.SigningKey(secretbox.Config{Key: secret})
	if err != nil || src != config.PortalKeyDerived {
		t.Fatalf("from HOOKLINE_SECRET_KEY: %s %v", src, err)
	}
	fromFile, src, err := config.Portal{}.SigningKey(secretbox.Config{KeyFile: file})
	if err != nil || src != config.PortalKeyDerived || !bytes.Equal(fromFile, fromValue) {
		t.Fatalf("from HOOKLINE_SECRET_KEY_FILE: %s %v; want the same derived key", src, err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(secret); bytes.Equal(fromValue, raw) {
		t.Fatal("the portal key is the secret key itself")
	}
	if _, _, err := (config.Portal{}).SigningKey(secretbox.Config{KeyFile: file + ".missing"}); err == nil || !strings.Contains(err.Error(), "HOOKLINE_SECRET_KEY_FILE") {
		t.Fatalf("missing secret key file: %v", err)
	}
	k, src, err := config.Portal{Key: portalKey}.SigningKey(secretbox.Config{Key: secret})
	if want, _ := base64.StdEncoding.DecodeString(portalKey); err != nil || src != config.PortalKeyConfigured || !bytes.Equal(k, want) {
		t.Fatalf("HOOKLINE_PORTAL_KEY: %s %v", src, err)
	}
	if _, _, err := (config.Portal{Key: portalKey, KeyFile: file}).SigningKey(secretbox.Config{}); err == nil || !strings.Contains(err.Error(), "set only one of HOOKLINE_PORTAL_KEY and HOOKLINE_PORTAL_KEY_FILE") {
		t.Fatalf("both portal key variables: %v", err)
	}
	if _, src, err := (config.Portal{}).SigningKey(secretbox.Config{}); err != nil || src != config.PortalKeyRandom {
		t.Fatalf("no key: %s %v", src, err)
	}
}

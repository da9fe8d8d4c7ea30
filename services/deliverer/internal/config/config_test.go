package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/services/deliverer/internal/config"
)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	if len(c.RetrySchedule) != len(want) {
		t.Fatalf("schedule %v, want %v", c.RetrySchedule, want)
	}
	for i := range want {
		if c.RetrySchedule[i] != want[i] {
			t.Fatalf("schedule %v, want %v", c.RetrySchedule, want)
		}
	}
	var total time.Duration
	for _, d := range c.RetrySchedule {
		total += d
	}
	if want := 27*time.Hour + 35*time.Minute + 5*time.Second; total != want {
		t.Fatalf("schedule sums to %s; the comment table says %s", total, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http addr", c.HTTPAddr, ":8081"},
		{"lag interval", c.ConsumerLagInterval, 15 * time.Second},
		{"tracing off", c.Tracing.Enabled(), false},
		{"pprof", c.Pprof, false},
		{"nats url", c.NATS.URL, "nats://127.0.0.1:4222"},
		{"redis url", c.Redis.URL, "redis://127.0.0.1:6379/0"},
		{"dispatch workers", c.DispatchWorkers, 128},
		{"direct attempts", c.DirectMax, 64},
		{"a tenant's fan-outs at once", c.TenantFanouts, 4},
		{"deliver workers", c.DeliverWorkers, 64},
		{"ack wait", c.AckWait, 60 * time.Second},
		{"http timeout", c.HTTPTimeout, 15 * time.Second},
		{"max response", c.MaxResponseBytes, int64(65536)},
		{"max redeliveries", c.MaxRedeliveries, 5},
		{"jitter", c.RetryJitter, 0.1},
		{"max retry after", c.MaxRetryAfter, 24 * time.Hour},
		{"max ack pending", c.MaxAckPending, 10000},
		{"replicas", c.Topology.Replicas, 1},
		{"shutdown", c.ShutdownTimeout, 30 * time.Second},
		{"attempt linger", c.AttemptLinger, 50 * time.Millisecond},
		{"log", c.Log.Level + "/" + c.Log.Format, "info/json"},
		{"default max in flight", c.Health.DefaultMaxInFlight, 10},
		{"in-flight defer", c.Health.InFlightDefer, time.Second},
		{"breaker failures", c.Health.BreakerFailures, 5},
		{"breaker cooldown", c.Health.BreakerCooldown, 30 * time.Second},
		{"breaker max cooldown", c.Health.BreakerMaxCooldown, 10 * time.Minute},
		{"destination max in flight", c.Health.DestinationMaxInFlight, 128},
		{"destination breaker failures", c.Health.DestinationBreakerFailures, 20},
		{"auto-disable after", c.Health.AutoDisableAfter, 120 * time.Hour},
		{"health redis timeout", c.Health.RedisTimeout, 500 * time.Millisecond},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	sc := c.Stream()
	if sc.AckWait != c.AckWait || sc.MaxAckPending != c.MaxAckPending || sc.Replicas != 1 {
		t.Errorf("stream config %+v does not carry the settings", sc)
	}
}

func TestLoadOverrides(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{
		"HOOKLINE_NATS_URL":            "nats://nats:4222",
		"HOOKLINE_RETRY_SCHEDULE":      "0s,1s,1s",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8, 10.1.2.3",
		"HOOKLINE_HTTP_TIMEOUT":        "2s",
		"HOOKLINE_ACK_WAIT":            "7s",
		"HOOKLINE_DELIVER_WORKERS":     "3",
		"HOOKLINE_PPROF":               "true",
		"HOOKLINE_LOG_FORMAT":          "console",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RetrySchedule) != 3 || c.RetrySchedule[2] != time.Second {
		t.Errorf("schedule %v", c.RetrySchedule)
	}
	policy, err := c.SSRF()
	if err != nil || len(policy.Allow) != 2 || policy.Allow[1].String() != "10.1.2.3/32" {
		t.Errorf("allowed %v, %v", policy.Allow, err)
	}
	if c.NATS.URL != "nats://nats:4222" || c.DeliverWorkers != 3 || !c.Pprof || c.Log.Format != "console" {
		t.Errorf("overrides not applied: %+v", c)
	}
}

func TestValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"ack wait too short", map[string]string{"HOOKLINE_ACK_WAIT": "19s"}, "HOOKLINE_ACK_WAIT"},
		{"ack wait vs custom timeout", map[string]string{"HOOKLINE_HTTP_TIMEOUT": "60s"}, "HOOKLINE_ACK_WAIT"},
		{"zero timeout", map[string]string{"HOOKLINE_HTTP_TIMEOUT": "0s"}, "HOOKLINE_HTTP_TIMEOUT"},
		{"schedule not starting at 0", map[string]string{"HOOKLINE_RETRY_SCHEDULE": "1s,5s"}, "HOOKLINE_RETRY_SCHEDULE"},
		{"negative schedule entry", map[string]string{"HOOKLINE_RETRY_SCHEDULE": "0s,-5s"}, "HOOKLINE_RETRY_SCHEDULE"},
		{"unparsable schedule", map[string]string{"HOOKLINE_RETRY_SCHEDULE": "0s,soon"}, "HOOKLINE_RETRY_SCHEDULE"},
		{"jitter too big", map[string]string{"HOOKLINE_RETRY_JITTER": "1.5"}, "HOOKLINE_RETRY_JITTER"},
		{"negative jitter", map[string]string{"HOOKLINE_RETRY_JITTER": "-0.1"}, "HOOKLINE_RETRY_JITTER"},
		{"zero deliver workers", map[string]string{"HOOKLINE_DELIVER_WORKERS": "0"}, "HOOKLINE_DELIVER_WORKERS"},
		{"zero dispatch workers", map[string]string{"HOOKLINE_DISPATCH_WORKERS": "0"}, "HOOKLINE_DISPATCH_WORKERS"},
		{"negative tenant fan-outs", map[string]string{"HOOKLINE_TENANT_FANOUTS": "-1"}, "HOOKLINE_TENANT_FANOUTS"},
		{"dispatch buffer as large as the consumer window", map[string]string{"HOOKLINE_DISPATCH_BUFFER": "10000"}, "HOOKLINE_DISPATCH_BUFFER"},
		{"dispatch buffer under 1 MiB", map[string]string{"HOOKLINE_DISPATCH_BUFFER_BYTES": "1000"}, "HOOKLINE_DISPATCH_BUFFER_BYTES"},
		{"bad cidr", map[string]string{"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.1/33"}, "HOOKLINE_ALLOW_PRIVATE_CIDRS"},
		{"grpc exporter", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"lag interval too short", map[string]string{"HOOKLINE_CONSUMER_LAG_INTERVAL": "10ms"}, "HOOKLINE_CONSUMER_LAG_INTERVAL"},
		{"not an address", map[string]string{"HOOKLINE_ALLOW_PRIVATE_CIDRS": "localhost"}, "HOOKLINE_ALLOW_PRIVATE_CIDRS"},
		{"bad log level", map[string]string{"HOOKLINE_LOG_LEVEL": "loud"}, "HOOKLINE_LOG_LEVEL"},
		{"bad log format", map[string]string{"HOOKLINE_LOG_FORMAT": "xml"}, "HOOKLINE_LOG_FORMAT"},
		{"replicas", map[string]string{"HOOKLINE_STREAM_REPLICAS": "0"}, "HOOKLINE_STREAM_REPLICAS"},
		{"max redeliveries", map[string]string{"HOOKLINE_MAX_REDELIVERIES": "0"}, "HOOKLINE_MAX_REDELIVERIES"},
		{"max ack pending", map[string]string{"HOOKLINE_MAX_ACK_PENDING": "0"}, "HOOKLINE_MAX_ACK_PENDING"},
		{"negative body cap", map[string]string{"HOOKLINE_MAX_RESPONSE_BYTES": "-1"}, "HOOKLINE_MAX_RESPONSE_BYTES"},
		{"max retry after", map[string]string{"HOOKLINE_MAX_RETRY_AFTER": "0s"}, "HOOKLINE_MAX_RETRY_AFTER"},
		{"shutdown timeout", map[string]string{"HOOKLINE_SHUTDOWN_TIMEOUT": "0s"}, "HOOKLINE_SHUTDOWN_TIMEOUT"},
		// A SIGTERM'd deliverer finishes the attempt in hand: its budget
		// covers one (15s) and its settling (5s).
		{"shutdown shorter than an attempt", map[string]string{"HOOKLINE_SHUTDOWN_TIMEOUT": "19s"}, "HOOKLINE_SHUTDOWN_TIMEOUT"},
		{"negative attempt linger", map[string]string{"HOOKLINE_ATTEMPT_LINGER": "-1ms"}, "HOOKLINE_ATTEMPT_LINGER"},
		{"long attempt linger", map[string]string{"HOOKLINE_ATTEMPT_LINGER": "1m"}, "HOOKLINE_ATTEMPT_LINGER"},
		{"bad redis url", map[string]string{"HOOKLINE_REDIS_URL": "http://x"}, "HOOKLINE_REDIS_URL"},
		{"nats password without user", map[string]string{"HOOKLINE_NATS_PASSWORD": "hunter2"}, "HOOKLINE_NATS_PASSWORD"},
		{"not a number", map[string]string{"HOOKLINE_DELIVER_WORKERS": "many"}, "HOOKLINE_DELIVER_WORKERS"},
		{"zero in-flight cap", map[string]string{"HOOKLINE_DEFAULT_MAX_IN_FLIGHT": "0"}, "HOOKLINE_DEFAULT_MAX_IN_FLIGHT"},
		{"unparsable breaker cooldown", map[string]string{"HOOKLINE_BREAKER_COOLDOWN": "soon"}, "HOOKLINE_BREAKER_COOLDOWN"},
		{"negative auto-disable window", map[string]string{"HOOKLINE_AUTO_DISABLE_AFTER": "-1h"}, "HOOKLINE_AUTO_DISABLE_AFTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load(%v) = %v, want an error naming %s", tt.env, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error prints a secret: %v", err)
			}
		})
	}
}

// The producer reads the environment level of the delivery policy from
// the deliverer's variables with pkg/policy's defaults: they must be the
// deliverer's.
func TestPolicyEnvironmentDefaultsAreTheDeliverers(t *testing.T) {
	t.Parallel()
	c, err := config.Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	var want policy.Environment
	if err := envconfig.Parse(&want, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if got := c.PolicyEnvironment(); !reflect.DeepEqual(got, want) {
		t.Fatalf("deliverer defaults %+v, pkg/policy defaults %+v", got, want)
	}
}

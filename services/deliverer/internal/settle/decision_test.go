package settle_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
)

// schedule is a retry schedule of eight attempts, like the default.
var schedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

func policy() settle.Policy {
	return settle.Policy{
		Schedule:      schedule,
		MaxRetryAfter: 24 * time.Hour,
	}
}

func failed(status int, class string) sender.Result {
	return sender.Result{Status: status, ErrorClass: class, Err: errors.New("failed")}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	withRetryAfter := func(r sender.Result, d time.Duration) sender.Result { r.RetryAfter = d; return r }
	tests := []struct {
		name     string
		result   sender.Result
		attempts int
		want     settle.Decision
	}{
		{"200", sender.Result{Status: 200}, 1, settle.Decision{Kind: settle.Ack}},
		{"204 on the last attempt", sender.Result{Status: 204}, 8, settle.Decision{Kind: settle.Ack}},
		{"500 after the first", failed(500, sender.ClassHTTPStatus), 1, settle.Decision{Kind: settle.Retry, Delay: 5 * time.Second}},
		{"timeout after the third", failed(0, sender.ClassTimeout), 3, settle.Decision{Kind: settle.Retry, Delay: 30 * time.Minute}},
		{"after the seventh", failed(502, sender.ClassHTTPStatus), 7, settle.Decision{Kind: settle.Retry, Delay: 10 * time.Hour}},
		{"exhausted", failed(500, sender.ClassHTTPStatus), 8, settle.Dead(wire.DeadLetterAttemptsExhausted)},
		{"404 is retried", failed(404, sender.ClassHTTPStatus), 1, settle.Decision{Kind: settle.Retry, Delay: 5 * time.Second}},
		{"401 is retried", failed(401, sender.ClassHTTPStatus), 2, settle.Decision{Kind: settle.Retry, Delay: 5 * time.Minute}},
		{"redirect is retried", failed(302, sender.ClassRedirect), 1, settle.Decision{Kind: settle.Retry, Delay: 5 * time.Second}},
		{"410 is gone", failed(410, sender.ClassHTTPStatus), 1, settle.Dead(wire.DeadLetterGone)},
		{"blocked", failed(0, sender.ClassBlocked), 1, settle.Dead(wire.DeadLetterBlockedDestination)},
		{"invalid url", failed(0, sender.ClassInvalidURL), 1, settle.Dead(wire.DeadLetterPermanentFailure)},
		{"retry-after longer", withRetryAfter(failed(429, sender.ClassHTTPStatus), time.Hour), 1, settle.Decision{Kind: settle.Retry, Delay: time.Hour}},
		{"retry-after shorter keeps the schedule", withRetryAfter(failed(503, sender.ClassHTTPStatus), time.Second), 2, settle.Decision{Kind: settle.Retry, Delay: 5 * time.Minute}},
		{"retry-after capped", withRetryAfter(failed(429, sender.ClassHTTPStatus), 72*time.Hour), 1, settle.Decision{Kind: settle.Retry, Delay: 24 * time.Hour}},
		{"retry-after on the last attempt", withRetryAfter(failed(429, sender.ClassHTTPStatus), time.Minute), 8, settle.Dead(wire.DeadLetterAttemptsExhausted)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := policy().Decide(tt.result, tt.attempts); got != tt.want {
				t.Fatalf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecideJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rnd  float64
		want time.Duration
	}{
		{"lowest", 0, 270 * time.Second},
		{"middle", 0.5, 300 * time.Second},
		{"highest", 0.999999, 330 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policy()
			p.Jitter = 0.1
			p.Rand = func() float64 { return tt.rnd }
			got := p.Decide(failed(500, sender.ClassHTTPStatus), 2).Delay
			if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Fatalf("delay %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFireAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 10, 300_000_000, time.UTC)
	tests := []struct {
		name  string
		delay time.Duration
		want  time.Time
	}{
		{"zero is now", 0, now},
		{"rounded up", 5 * time.Second, time.Date(2026, 1, 1, 0, 0, 16, 0, time.UTC)},
		{"already whole", 700 * time.Millisecond, time.Date(2026, 1, 1, 0, 0, 11, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := settle.FireAt(now, tt.delay)
			if !got.Equal(tt.want) || got.Before(now.Add(tt.delay)) {
				t.Fatalf("FireAt = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	if got := settle.OneLine("a\r\nb\tc"); got != "a  b c" {
		t.Fatalf("OneLine = %q", got)
	}
	long := make([]byte, 2000)
	for i := range long {
		long[i] = 'x'
	}
	if got := settle.OneLine(string(long)); len(got) != 512 {
		t.Fatalf("OneLine kept %d bytes", len(got))
	}
}

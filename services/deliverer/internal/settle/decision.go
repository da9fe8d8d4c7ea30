// Package settle decides what becomes of a delivery task after an attempt
// (Ack, a scheduled Retry, a Defer that consumes no attempt, or a
// DeadLetter) and holds the retry schedule and the scheduler of retries.
package settle

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// Kind is what happens to the task message.
type Kind int

// Kinds of Decision.
const (
	// Ack: delivered (2xx).
	Ack Kind = iota + 1
	// Retry: publish a copy scheduled at now+Delay with the attempt count
	// incremented, then Ack the original.
	Retry
	// Defer: like Retry, but no attempt was made and the count is kept
	// (endpoint health, or an infrastructure error before the attempt).
	Defer
	// DeadLetter: publish the dead letter with Reason, then Term.
	DeadLetter
)

func (k Kind) String() string {
	switch k {
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	case Defer:
		return "defer"
	case DeadLetter:
		return "dead_letter"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Outcome is the attempt record's and the metrics' name of the kind.
func (k Kind) Outcome() string {
	switch k {
	case Ack:
		return "success"
	case Defer:
		return "deferred"
	}
	return k.String()
}

// Decision is the fate of a task.
type Decision struct {
	Kind  Kind
	Delay time.Duration
	// Reason of a DeadLetter: one of pkg/wire's DeadLetter* reasons.
	Reason string
}

// Dead is a DeadLetter decision for reason (a wire.DeadLetter* reason).
func Dead(reason string) Decision { return Decision{Kind: DeadLetter, Reason: reason} }

// Later is a Defer decision: try again after d without counting an attempt.
func Later(d time.Duration) Decision { return Decision{Kind: Defer, Delay: d} }

// Policy decides retries.
type Policy struct {
	// Schedule[i] is the delay before attempt i+1; len(Schedule) is the
	// number of attempts. Schedule[0] is 0. The default is config's
	// HOOKLINE_RETRY_SCHEDULE.
	Schedule []time.Duration
	// Jitter spreads each delay by ±Jitter (0.1 = ±10%) so that the
	// retries of an outage do not return in one wave.
	Jitter float64
	// MaxRetryAfter caps an endpoint's Retry-After.
	MaxRetryAfter time.Duration
	// Rand returns a number in [0, 1) (nil: math/rand/v2).
	Rand func() float64
}

// Attempts is the number of attempts the schedule allows.
func (p Policy) Attempts() int { return len(p.Schedule) }

// Decide is the single place where the result of an HTTP attempt becomes
// the task's fate. attempts counts the attempts made, this one included.
//
//   - 2xx: Ack.
//   - permanent, dead-lettered at once: a destination the dial guard
//     refused ("blocked_destination"), 410 Gone ("gone"; the endpoint said
//     so, and endpoint health also disables the subscription), an
//     unusable URL ("permanent_failure").
//   - everything else is retried while attempts remain, then dead-lettered
//     ("attempts_exhausted"). That includes 4xx such as 400, 401, 403, 404
//     and 413: an endpoint that answers them is usually misconfigured
//     (a deploy without the route, a rotated secret not yet installed) and
//     recovers within the schedule; giving up at once would turn a
//     receiver's five-minute mistake into a manual replay. 408, 409, 425
//     and 429 are transient by definition.
func (p Policy) Decide(r sender.Result, attempts int) Decision {
	if r.OK() {
		return Decision{Kind: Ack}
	}
	switch {
	case r.ErrorClass == sender.ClassBlocked:
		return Dead(wire.DeadLetterBlockedDestination)
	case r.Status == http.StatusGone:
		return Dead(wire.DeadLetterGone)
	case r.ErrorClass == sender.ClassInvalidURL:
		return Dead(wire.DeadLetterPermanentFailure)
	}
	if attempts >= len(p.Schedule) {
		return Dead(wire.DeadLetterAttemptsExhausted)
	}
	delay := p.jitter(p.Schedule[max(attempts, 0)])
	if r.RetryAfter > 0 {
		// Honour Retry-After within [scheduled delay, MaxRetryAfter].
		delay = max(delay, min(r.RetryAfter, p.MaxRetryAfter))
	}
	return Decision{Kind: Retry, Delay: delay}
}

func (p Policy) jitter(d time.Duration) time.Duration {
	if p.Jitter <= 0 || d <= 0 {
		return d
	}
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	f := 1 + p.Jitter*(2*rnd()-1)
	return time.Duration(float64(d) * f)
}

// ErrorText is the Last-Error text of a result (see OneLine).
func ErrorText(r sender.Result) string {
	if r.Err == nil {
		return ""
	}
	return OneLine(r.Err.Error())
}

// OneLine makes s fit a NATS header value: control characters (CR and LF
// are not allowed there) become spaces, and it is cut at 512 bytes.
func OneLine(s string) string {
	s = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, s)
	const maxLen = 512
	if len(s) > maxLen {
		s = strings.ToValidUTF8(s[:maxLen], "")
	}
	return s
}

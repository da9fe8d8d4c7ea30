// Package breaker is a circuit breaker per endpoint (subscription), shared by
// every deliverer replica through Redis.
//
//	closed ──N consecutive failures──► open ──cool-down over──► half-open
//	   ▲                                 ▲                         │ one probe
//	   └──────────── success ────────────┼──── probe fails ────────┘
//	                                     (cool-down doubles, up to a cap)
//
// While open, attempts are not made: Allow says how long until the cool-down
// ends and the deliverer defers the task without spending an attempt. Once
// the cool-down is over exactly one attempt, the probe, gets through (a SET
// NX lease that expires if its holder crashes); the others wait. A success
// closes the circuit and forgets the failure streak; a failure reopens it
// with a doubled cool-down.
//
// The same state records when the current failure streak began
// (Streak.Since): the health package disables a subscription that has been
// failing for too long. A Retry-After from the endpoint pauses the circuit
// for that long (FailureCmd's pause), so that no replica calls it earlier.
//
// Timestamps are Redis' (redisclock): a replica whose clock is off shares
// the others' time line.
package breaker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redisclock"
	"github.com/hookline/hookline/pkg/redisdown"
	admission "github.com/hookline/hookline/services/deliverer/internal/redisdown"
)

// KeyPrefix starts every key of this package:
//
//	hookline:breaker:{<subscription id>}        hash: failures, since (unix
//	                                            ms), open_until (unix ms), opens;
//	                                            mark:<flag> (MarkCmd); for a
//	                                            told circuit opened_at,
//	                                            opened_status, opened_error
//	                                            and told:<who> (TellCmd)
//	hookline:breaker:{<subscription id>}:probe  string: the probe's lease token
//
// The braces are a Redis Cluster hash tag: both keys share a slot.
const KeyPrefix = endpointhealth.BreakerPrefix

// Key is the state hash of a subscription's circuit.
func Key(subscriptionID string) string { return endpointhealth.BreakerKey(subscriptionID) }

// ProbeKey is the half-open probe lease of a subscription's circuit.
func ProbeKey(subscriptionID string) string { return endpointhealth.ProbeKey(subscriptionID) }

// allow: {1, failures} closed (failures in a row so far); {0, ms, since}
// open for ms more; {2, 0} half-open and this caller holds the probe;
// {3, pttl, since} half-open and another probe is in flight. since is the
// streak's start (unix ms): it names the spell a refusal belongs to.
//
//	KEYS[1] state  KEYS[2] probe
//	ARGV[1] now (redisclock.Clock.Arg)  ARGV[2] token  ARGV[3] probe ttl ms
var allowScript = redis.NewScript(redisclock.Lua + `
local st = redis.call('HMGET', KEYS[1], 'open_until', 'failures', 'since')
local ou = tonumber(st[1])
if not ou then return {1, tonumber(st[2]) or 0} end
local since = tonumber(st[3]) or 0
local now = math.floor(now_ms(ARGV[1]))
if now < ou then return {0, ou - now, since} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {2, 0} end
return {3, redis.call('PTTL', KEYS[2]), since}
`)

// failure records a failed attempt and opens the circuit when due.
// Returns {failures, since ms, opened (0/1), open_until ms or 0, opens, now
// ms, told (0/1)}. With an opening (ARGV[7..10]), the streak's first
// opening also records when it opened, the failure's status and error
// class, and who was told (field told:<who>, value ARGV[8]; told is 1
// when this call recorded it).
//
//	KEYS[1] state  KEYS[2] probe
//	ARGV[1] now (redisclock.Clock.Arg)  ARGV[2] threshold  ARGV[3] cool-down ms
//	ARGV[4] max cool-down ms  ARGV[5] state ttl ms  ARGV[6] pause ms (Retry-After; 0 for none)
//	ARGV[7] who ("" for no opening)  ARGV[8] what  ARGV[9] status  ARGV[10] error class
var failureScript = redis.NewScript(redisclock.Lua + `
local now = math.floor(now_ms(ARGV[1]))
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSETNX', KEYS[1], 'since', now)
local since = tonumber(redis.call('HGET', KEYS[1], 'since'))
local ou = tonumber(redis.call('HGET', KEYS[1], 'open_until'))
local opened = 0
if (ou and now >= ou) or (not ou and n >= tonumber(ARGV[2])) then
  local opens = redis.call('HINCRBY', KEYS[1], 'opens', 1)
  ou = now + math.min(tonumber(ARGV[3]) * 2 ^ (opens - 1), tonumber(ARGV[4]))
  opened = 1
  redis.call('DEL', KEYS[2])
end
local pause = tonumber(ARGV[6])
if pause > 0 and (not ou or ou < now + pause) then
  ou = now + pause
end
if ou then redis.call('HSET', KEYS[1], 'open_until', ou) end
local opens = tonumber(redis.call('HGET', KEYS[1], 'opens')) or 0
local told = 0
if opened == 1 and opens == 1 and ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'opened_status', ARGV[9], 'opened_error', ARGV[10])
  told = redis.call('HSETNX', KEYS[1], 'told:' .. ARGV[7], ARGV[8])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {n, since, opened, ou or 0, opens, now, told}
`)

// tell records that who was told of the open circuit's spell (field
// told:<who> = what) unless it already was. Returns {0} when the circuit
// is closed (nothing to tell), else {first (0/1), since ms, opened_at ms
// or 0, open_until ms, opened status, opened error class}.
//
//	KEYS[1] state  ARGV[1] who  ARGV[2] what
var tellScript = redis.NewScript(`
local st = redis.call('HMGET', KEYS[1], 'open_until', 'since', 'opened_at', 'opened_status', 'opened_error')
if not st[1] then return {0} end
local first = redis.call('HSETNX', KEYS[1], 'told:' .. ARGV[1], ARGV[2])
return {first, tonumber(st[2]) or 0, tonumber(st[3]) or 0, tonumber(st[1]), st[4] or '', st[5] or ''}
`)

// untell forgets that who was told (a tell whose message was lost), when
// it still says what.
//
//	KEYS[1] state  ARGV[1] who  ARGV[2] what
var untellScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'told:' .. ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], 'told:' .. ARGV[1]) end
return 0
`)

// close is success, returning also who was told of the spell it ends:
// {was open (0/1), who, what, who, what, …}, read and deleted at once.
//
//	KEYS[1] state  KEYS[2] probe
var closeScript = redis.NewScript(`
local was = redis.call('HEXISTS', KEYS[1], 'open_until')
local out = {was}
if was == 1 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 5) == 'told:' then
      out[#out + 1] = string.sub(all[i], 6)
      out[#out + 1] = all[i + 1]
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return out
`)

// success closes the circuit and forgets the streak. Returns 1 when the
// circuit was open or half-open.
var successScript = redis.NewScript(`
local was = redis.call('HEXISTS', KEYS[1], 'open_until')
redis.call('DEL', KEYS[1], KEYS[2])
return was
`)

// releaseProbe gives the probe lease back when its holder did not make the
// attempt after all.
var releaseProbeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Defaults.
const (
	DefaultFailures    = 5
	DefaultCooldown    = 30 * time.Second
	DefaultMaxCooldown = 10 * time.Minute
)

// Config tunes a Breaker. Zero values take the defaults.
type Config struct {
	// Failures in a row that open the circuit (default 5).
	Failures int
	// Cooldown of the first opening (default 30s); it doubles with each
	// failed probe up to MaxCooldown (default 10m).
	Cooldown    time.Duration
	MaxCooldown time.Duration
	// ProbeTTL bounds the probe lease when its holder crashes: the attempt
	// timeout plus a margin (default 1m).
	ProbeTTL time.Duration
	// ProbeWait is how long others wait while a probe is in flight
	// (default 1s).
	ProbeWait time.Duration
	// StateTTL is how long a failure streak is remembered without a new
	// failure (default 7 days): longer than the auto-disable window.
	StateTTL time.Duration
	// RedisRetry is how long the circuit is taken as closed without asking
	// Redis after Redis failed (default 1s).
	RedisRetry time.Duration
	// Degraded counts the decisions taken without Redis (nil: not
	// counted); Logger says when they start and end (nil: nowhere).
	Degraded *admission.Metrics
	Log      *zap.Logger
	// Now is this process's clock (time.Now when nil), for what stays in
	// the process: the RedisRetry window.
	Now func() time.Time
	// StateClock is the time of the circuit's state: nil (the default)
	// is Redis' own, so that replicas whose clocks disagree share one
	// time line; tests that move time set theirs.
	StateClock redisclock.Clock
}

func (c Config) withDefaults() Config {
	if c.Failures <= 0 {
		c.Failures = DefaultFailures
	}
	if c.Cooldown <= 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.MaxCooldown < c.Cooldown {
		c.MaxCooldown = max(DefaultMaxCooldown, c.Cooldown)
	}
	if c.ProbeTTL <= 0 {
		c.ProbeTTL = time.Minute
	}
	if c.ProbeWait <= 0 {
		c.ProbeWait = time.Second
	}
	if c.StateTTL <= 0 {
		c.StateTTL = 7 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Breaker is safe for concurrent use.
type Breaker struct {
	rdb  redis.UniversalClient
	cfg  Config
	down *redisdown.Guard
}

// New returns a breaker on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Breaker {
	cfg = cfg.withDefaults()
	return &Breaker{rdb: rdb, cfg: cfg,
		down: redisdown.New(redisdown.Config{Component: admission.Breaker, Consequence: "circuits taken as closed",
			Retry: cfg.RedisRetry, Count: cfg.Degraded.Counter(admission.Breaker), Log: cfg.Log})}
}

// Decision is the answer of Allow.
type Decision struct {
	// Allow: the attempt may be made.
	Allow bool
	// Probe is the lease token when this attempt is the half-open probe
	// (give it back with ReleaseProbe if the attempt is not made after all).
	Probe string
	// Wait is how long to defer when not allowed.
	Wait time.Duration
	// Open: not allowed because the circuit is open (false while another
	// probe is in flight).
	Open bool
	// Failures in a row so far in a closed circuit. When 0 (and this is not
	// a probe), a success has nothing to reset: Success may be skipped.
	Failures int
	// Since is the start of the failure streak that refuses the attempt
	// (zero when allowed): the spell of the circuit, the same for every
	// refusal until the circuit closes.
	Since time.Time
}

// PendingAllow is an AllowCmd queued on a pipeline.
type PendingAllow struct {
	b     *Breaker
	ctx   context.Context
	now   time.Time
	token string
	cmd   *redis.Cmd // nil: Redis skipped
}

// AllowCmd queues the question whether an attempt on the subscription may
// be made now on pipe (so that the caller can send it with other commands in
// one round trip); Result answers once pipe ran. When Redis fails the
// circuit is taken as closed (delivery goes on), counted and logged, and
// Result's error says why (redisdown.ErrSkipped while Redis is not asked
// after a failure: see Config.RedisRetry).
func (b *Breaker) AllowCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string) *PendingAllow {
	p := &PendingAllow{b: b, ctx: ctx, now: b.cfg.Now()}
	if b.down.Skip(p.now) {
		return p
	}
	p.token = rand.Text()
	// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
	p.cmd = allowScript.Eval(ctx, pipe, []string{Key(subscriptionID), ProbeKey(subscriptionID)},
		b.cfg.StateClock.Arg(), p.token, b.cfg.ProbeTTL.Milliseconds())
	return p
}

// Result is the answer of an AllowCmd whose pipe ran (see AllowCmd).
func (p *PendingAllow) Result() (Decision, error) {
	b := p.b
	if p.cmd == nil {
		return Decision{Allow: true}, redisdown.ErrSkipped
	}
	res, err := p.cmd.Int64Slice()
	if err != nil {
		b.down.Fail(p.ctx, p.now, err)
		return Decision{Allow: true}, fmt.Errorf("circuit breaker (taken as closed): %w", err)
	}
	b.down.OK()
	if len(res) < 2 || ((res[0] == 0 || res[0] == 3) && len(res) != 3) {
		return Decision{Allow: true}, errors.New("circuit breaker: unexpected script reply")
	}
	switch res[0] {
	case 1:
		return Decision{Allow: true, Failures: int(res[1])}, nil
	case 0:
		return Decision{Open: true, Wait: time.Duration(res[1]) * time.Millisecond, Since: time.UnixMilli(res[2])}, nil
	case 2:
		return Decision{Allow: true, Probe: p.token}, nil
	default:
		wait := b.cfg.ProbeWait
		if pttl := time.Duration(res[1]) * time.Millisecond; pttl > 0 && pttl < wait {
			wait = pttl
		}
		return Decision{Wait: wait, Since: time.UnixMilli(res[2])}, nil
	}
}

// ReleaseProbeCmd queues giving back a probe lease whose attempt was not
// made on pipe.
func (b *Breaker) ReleaseProbeCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID, token string) *redis.Cmd {
	return releaseProbeScript.Eval(ctx, pipe, []string{ProbeKey(subscriptionID)}, token)
}

// SuccessCmd queues recording a successful attempt on pipe: the circuit
// closes and the failure streak is forgotten. SuccessResult answers once
// pipe ran; closed reports whether the circuit was open or half-open before.
func (b *Breaker) SuccessCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string) *redis.Cmd {
	return successScript.Eval(ctx, pipe, []string{Key(subscriptionID), ProbeKey(subscriptionID)})
}

// MarkCmd queues setting a flag on the subscription's failure streak: the
// answer is true for the first caller only, of every replica, and the flag
// goes with the streak (a success forgets it). For things to do once per
// streak, like telling the tenant.
func (b *Breaker) MarkCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID, flag string) *redis.BoolCmd {
	return pipe.HSetNX(ctx, Key(subscriptionID), "mark:"+flag, 1)
}

// CloseCmd queues recording a successful attempt on pipe, as SuccessCmd,
// and reads who was told of the spell it ends (TellCmd, an Opening):
// PendingClose answers once pipe ran. The record goes with the circuit's
// state, read and deleted in one step, so each one told is given to one
// caller of every replica, once.
func (b *Breaker) CloseCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string) *PendingClose {
	return &PendingClose{cmd: closeScript.Eval(ctx, pipe, []string{Key(subscriptionID), ProbeKey(subscriptionID)})}
}

// PendingClose is a CloseCmd queued on a pipeline.
type PendingClose struct{ cmd *redis.Cmd }

// Cmd is the queued command, for its error.
func (p *PendingClose) Cmd() redis.Cmder { return p.cmd }

// Told is one told of a circuit's spell: who, and what was recorded with
// it.
type Told struct{ Who, What string }

// Result reports whether the circuit was open or half-open before, and
// who was told of the spell it closed.
func (p *PendingClose) Result() (closed bool, told []Told, err error) {
	res, err := p.cmd.Slice()
	if err != nil {
		return false, nil, fmt.Errorf("circuit breaker success: %w", err)
	}
	if len(res) == 0 || len(res)%2 != 1 {
		return false, nil, errors.New("circuit breaker success: unexpected script reply")
	}
	was, _ := res[0].(int64)
	for i := 1; i+1 < len(res); i += 2 {
		who, _ := res[i].(string)
		what, _ := res[i+1].(string)
		told = append(told, Told{Who: who, What: what})
	}
	return was == 1, told, nil
}

// Tell is the answer of a TellCmd.
type Tell struct {
	// Open: the circuit was open or half-open (nothing recorded when not).
	Open bool
	// First: this call recorded who as told; false when the circuit is
	// closed or who was told of this spell already.
	First bool
	// Since is the start of the spell's failure streak.
	Since time.Time
	// OpenedAt is when the spell's first opening happened (zero when it
	// was not recorded: opened by FailureCmd, not with an Opening).
	OpenedAt time.Time
	// OpenUntil is when the cool-down ends.
	OpenUntil time.Time
	// Status and ErrorClass are those of the failure that opened it.
	Status     int
	ErrorClass string
}

// PendingTell is a TellCmd queued on a pipeline.
type PendingTell struct{ cmd *redis.Cmd }

// TellCmd queues on pipe recording that who was told (with what) of the
// spell of the subscription's circuit, while it is open or half-open:
// Result's First is true for one caller of every replica per spell, until
// a success closes the circuit (CloseCmd hands the record over) or the
// state expires with it. For things to tell once per spell to each of
// many, like every tenant refused by a host's circuit.
func (b *Breaker) TellCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID, who, what string) *PendingTell {
	return &PendingTell{cmd: tellScript.Eval(ctx, pipe, []string{Key(subscriptionID)}, who, what)}
}

// Result is the answer of a TellCmd whose pipe ran.
func (p *PendingTell) Result() (Tell, error) {
	res, err := p.cmd.Slice()
	if err != nil {
		return Tell{}, fmt.Errorf("circuit breaker tell: %w", err)
	}
	if len(res) == 1 {
		return Tell{}, nil
	}
	if len(res) != 6 {
		return Tell{}, errors.New("circuit breaker tell: unexpected script reply")
	}
	ints := make([]int64, 4)
	for i := range ints {
		ints[i], _ = res[i].(int64)
	}
	t := Tell{Open: true, First: ints[0] == 1, Since: time.UnixMilli(ints[1]), OpenUntil: time.UnixMilli(ints[3])}
	if ints[2] > 0 {
		t.OpenedAt = time.UnixMilli(ints[2])
	}
	status, _ := res[4].(string)
	t.Status, _ = strconv.Atoi(status)
	t.ErrorClass, _ = res[5].(string)
	return t, nil
}

// UntellCmd queues on pipe forgetting that who was told, when the record
// still holds what: for a tell whose message could not be sent, so that
// the next caller tells again, and the close does not hand it over.
func (b *Breaker) UntellCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID, who, what string) *redis.Cmd {
	return untellScript.Eval(ctx, pipe, []string{Key(subscriptionID)}, who, what)
}

// SuccessResult is the answer of a SuccessCmd whose pipe ran.
func SuccessResult(cmd *redis.Cmd) (closed bool, err error) {
	n, err := cmd.Int64()
	if err != nil {
		return false, fmt.Errorf("circuit breaker success: %w", err)
	}
	return n == 1, nil
}

// Streak is the failure streak after Failure.
type Streak struct {
	// Failures in a row, counting this one.
	Failures int
	// Since is the time of the streak's first failure.
	Since time.Time
	// Now is the time this failure was recorded at (Redis' clock).
	Now time.Time
	// Opened: this failure opened (or reopened) the circuit.
	Opened bool
	// Opens counts the openings of this streak (1: the first, when
	// Opened; more after failed probes).
	Opens int
	// OpenUntil is when the cool-down or pause ends (zero when closed).
	OpenUntil time.Time
	// Told: this failure, the streak's first opening, recorded its
	// Opening's who as told (FailureTellCmd).
	Told bool
}

// Failing is how long the subscription has been failing.
func (s Streak) Failing() time.Duration { return s.Now.Sub(s.Since) }

// PendingFailure is a FailureCmd queued on a pipeline.
type PendingFailure struct {
	cmd *redis.Cmd
}

// FailureCmd queues recording a failed attempt on pipe; Result answers once
// pipe ran. pause > 0 (the endpoint's Retry-After) keeps the circuit open at
// least that long, without counting as an opening.
func (b *Breaker) FailureCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string, pause time.Duration) *PendingFailure {
	return b.FailureTellCmd(ctx, pipe, subscriptionID, pause, Opening{}) // no Who: nothing recorded
}

// Opening is what a failure records when it is its streak's first
// opening (FailureTellCmd), for those told later (TellCmd): when, what
// the failure was, and who it tells at once.
type Opening struct {
	// Who is recorded as told, with What (TellCmd's arguments).
	Who, What string
	// Status and ErrorClass are the failure's.
	Status     int
	ErrorClass string
}

// FailureTellCmd is FailureCmd for a circuit whose spells are told
// (TellCmd): the streak's first opening also records o, and Streak.Told
// says whether o.Who was recorded as told by it.
func (b *Breaker) FailureTellCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string, pause time.Duration, o Opening) *PendingFailure {
	return &PendingFailure{cmd: failureScript.Eval(ctx, pipe, []string{Key(subscriptionID), ProbeKey(subscriptionID)},
		b.cfg.StateClock.Arg(), b.cfg.Failures, b.cfg.Cooldown.Milliseconds(), b.cfg.MaxCooldown.Milliseconds(),
		b.cfg.StateTTL.Milliseconds(), max(pause, 0).Milliseconds(), o.Who, o.What, o.Status, o.ErrorClass)}
}

// Result is the answer of a FailureCmd whose pipe ran (see FailureCmd).
func (p *PendingFailure) Result() (Streak, error) {
	res, err := p.cmd.Int64Slice()
	if err != nil {
		return Streak{}, fmt.Errorf("circuit breaker failure: %w", err)
	}
	if len(res) != 7 {
		return Streak{}, errors.New("circuit breaker failure: unexpected script reply")
	}
	s := Streak{Failures: int(res[0]), Since: time.UnixMilli(res[1]), Now: time.UnixMilli(res[5]), Opened: res[2] == 1, Opens: int(res[4]), Told: res[6] == 1}
	if res[3] > 0 {
		s.OpenUntil = time.UnixMilli(res[3])
	}
	return s, nil
}

// State of a circuit.
type State string

// States.
const (
	Closed   State = "closed"
	Open     State = "open"
	HalfOpen State = "half_open"
)

// Snapshot is a circuit's state as stored.
type Snapshot struct {
	State     State
	Failures  int
	Since     time.Time // zero when not failing
	OpenUntil time.Time // zero when closed
	Opens     int
}

// Snapshot reads the circuit of a subscription.
func (b *Breaker) Snapshot(ctx context.Context, subscriptionID string) (Snapshot, error) {
	var v struct {
		Failures  int   `redis:"failures"`
		Since     int64 `redis:"since"`
		OpenUntil int64 `redis:"open_until"`
		Opens     int   `redis:"opens"`
	}
	if err := b.rdb.HGetAll(ctx, Key(subscriptionID)).Scan(&v); err != nil {
		return Snapshot{}, fmt.Errorf("circuit breaker state: %w", err)
	}
	now, err := b.cfg.StateClock.Now(ctx, b.rdb)
	if err != nil {
		return Snapshot{}, fmt.Errorf("circuit breaker state: %w", err)
	}
	s := Snapshot{State: Closed, Failures: v.Failures, Opens: v.Opens}
	if v.Since > 0 {
		s.Since = time.UnixMilli(v.Since)
	}
	if v.OpenUntil > 0 {
		s.OpenUntil = time.UnixMilli(v.OpenUntil)
		s.State = Open
		if !now.Before(s.OpenUntil) {
			s.State = HalfOpen
		}
	}
	return s, nil
}

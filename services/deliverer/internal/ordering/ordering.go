// Package ordering keeps the key lines of ordered subscriptions. For a
// subscription with ordered on, the events that carry one ordering key are
// attempted one at a time, in EVENTS sequence order (publish order), while
// different keys run in parallel.
//
// The line of a key is shared by every deliverer replica, in Redis:
//
//	hookline:ord:{<sub>}:<digest>    sorted set of the key's pending tasks:
//	                                 member <event id>@<sequence>, score
//	                                 its EVENTS sequence
//	hookline:ord:{<sub>}:<digest>:h  hash: last (the numbers handed out),
//	                                 head and hseq (the task being
//	                                 attempted and its number), next (unix
//	                                 ms of the head's next attempt)
//	hookline:ord:{<sub>}:<digest>:f  sorted set of the tasks finished in
//	                                 the last FinishedHorizon (member as
//	                                 above, score the time): what a
//	                                 redelivered copy is recognised by
//
// Only membership of the finished set makes a task Done. A task that is in
// neither set (Redis lost its data, a line expired while its head waited
// for a retry) is put back in line and reported Lost: it is delivered out
// of order rather than acked unsent.
//
// Dispatch registers a task before it publishes it (Register). Before
// admission the deliverer asks Check: Head (attempt it, under its number),
// Wait (an earlier event of the key is pending) or Done (the line already
// moved past it: a redelivered duplicate, acked without an attempt).
// Finish, before the task's message is acked, takes it out of the line and
// moves done on; Hold tells the followers when a failing head comes back.
//
// Dispatch runs events in parallel, so an event may be registered after a
// later one of its key. A task may therefore be head only once every
// earlier event was fanned out: once the dispatch consumer's ack floor has
// reached the sequence just before it (Floor).
package ordering

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every key of this package. The braces are a Redis
// Cluster hash tag: the keys of one subscription share a slot.
const KeyPrefix = "hookline:ord:"

// DefaultTTL is how long the line of a key lives after its last use: a key
// unused for longer starts its numbers at 1 again.
const DefaultTTL = 7 * 24 * time.Hour

// FinishedHorizon is how long a finished task is remembered (a copy
// redelivered later is sent again, out of order, and reported Lost), and
// FinishedMax how many per key at most.
const (
	FinishedHorizon = 48 * time.Hour
	FinishedMax     = 10000
)

// Key names one line: a subscription and an ordering key.
type Key struct {
	Subscription string
	Value        string
}

// redisKeys are the sorted set and the hash of a line. The ordering key is
// a digest: any printable value, of a fixed length.
func (k Key) redisKeys() []string {
	sum := sha256.Sum256([]byte(k.Value))
	base := KeyPrefix + "{" + k.Subscription + "}:" + hex.EncodeToString(sum[:16])
	return []string{base, base + ":h", base + ":f"}
}

// Entry is one task in a line.
type Entry struct {
	Key     Key
	EventID string
	// Seq is the event's EVENTS sequence.
	Seq uint64
}

// member names a task in its line: the sequence tells apart two events
// that reused an id after the dedup window.
func (e Entry) member() string { return e.EventID + "@" + strconv.FormatUint(e.Seq, 10) }

// Verdict is what Check says of a task.
type Verdict int

const (
	// Done: the line moved past the task; it was delivered or
	// dead-lettered before.
	Done Verdict = iota
	// Head: the task is the earliest pending of its key: attempt it.
	Head
	// Wait: an earlier event of the key is pending.
	Wait
)

// State is a Check's answer.
type State struct {
	Verdict Verdict
	// Number is the head's place in its key's line (1, 2, …): the
	// Hookline-Ordering-Sequence the receiver gets.
	Number uint64
	// Ahead counts the pending tasks before a waiting one.
	Ahead int64
	// Next is when the head of a waiting task's key is attempted next
	// (zero when it is in flight or due).
	Next time.Time
	// Lost: Redis did not hold the task (it lost its data, or the task
	// was dispatched before ordering began): it was put back in line by
	// its sequence, and its order relative to earlier ones is not known.
	Lost bool
}

// The scripts' keys and arguments:
//
//	KEYS[1] line  KEYS[2] hash  KEYS[3] finished
//	ARGV[1] member  ARGV[2] seq  ARGV[3] ttl ms  ARGV[4] now (unix ms)
//
// Every script that writes refreshes the expiry of all three keys after
// writing (a key created by the write would otherwise never expire).

// register adds a task to its line unless it finished already (a fan-out
// redone after its task was delivered).
var register = redis.NewScript(`
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
`)

// unregister takes a task out of its line without finishing it (its event
// will never become a task).
var unregister = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)

// check answers {0} done, {1, number, lost} head, {2, ahead, next, lost}
// wait. A head keeps its number across retries and redeliveries.
var check = redis.NewScript(`
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return {0}
end
local lost = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  lost = 1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
local out
if first[1] ~= ARGV[1] then
  local ahead = redis.call('ZRANK', KEYS[1], ARGV[1])
  out = {2, ahead, tonumber(redis.call('HGET', KEYS[2], 'next') or '0'), lost}
else
  local n
  if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
    n = tonumber(redis.call('HGET', KEYS[2], 'hseq'))
  else
    n = redis.call('HINCRBY', KEYS[2], 'last', 1)
    redis.call('HSET', KEYS[2], 'head', ARGV[1], 'hseq', n)
  end
  redis.call('HDEL', KEYS[2], 'next')
  out = {1, n, lost}
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return out
`)

// finish takes a task out of its line and remembers it finished (for
// FinishedHorizon, at most FinishedMax per key).
//
//	ARGV[5] horizon ms  ARGV[6] most remembered
var finish = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[5]))
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
  redis.call('HDEL', KEYS[2], 'head', 'hseq', 'next')
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
`)

// hold records when the head comes back (a scheduled retry).
//
//	ARGV[5] unix ms of the head's next attempt
var hold = redis.NewScript(`
if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
  redis.call('HSET', KEYS[2], 'next', ARGV[5])
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
`)

// Store keeps the lines in Redis.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// New returns a Store; ttl 0 means DefaultTTL.
func New(rdb redis.UniversalClient, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Store{rdb: rdb, ttl: ttl}
}

func (s *Store) args(e Entry, more ...any) []any {
	return append([]any{e.member(), strconv.FormatUint(e.Seq, 10), s.ttl.Milliseconds(), time.Now().UnixMilli()}, more...)
}

// Register adds the tasks of one event to their lines, in one round trip.
// Dispatch calls it before publishing the tasks; a redone fan-out
// registers again harmlessly.
func (s *Store) Register(ctx context.Context, entries []Entry) error {
	return s.runAll(ctx, register, entries, "register ordered tasks")
}

// runAll runs script for every entry in one round trip.
func (s *Store) runAll(ctx context.Context, script *redis.Script, entries []Entry, what string) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
			script.Eval(ctx, p, e.Key.redisKeys(), s.args(e)...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Check says whether a task is the head of its key's line.
func (s *Store) Check(ctx context.Context, e Entry) (State, error) {
	st, err := s.CheckAll(ctx, []Entry{e})
	if err != nil {
		return State{}, err
	}
	return st[0], nil
}

// CheckAll checks several tasks in one round trip.
func (s *Store) CheckAll(ctx context.Context, entries []Entry) ([]State, error) {
	cmds := make([]*redis.Cmd, len(entries))
	var err error
	if len(entries) == 1 {
		cmds[0] = check.Run(ctx, s.rdb, entries[0].Key.redisKeys(), s.args(entries[0])...)
		err = cmds[0].Err()
	} else {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range entries {
				cmds[i] = check.Eval(ctx, p, e.Key.redisKeys(), s.args(e)...)
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("check ordered tasks: %w", err)
	}
	out := make([]State, len(entries))
	for i, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil || len(v) == 0 {
			return nil, fmt.Errorf("check ordered task: unexpected answer %v: %w", c.Val(), err)
		}
		switch {
		case v[0] == 0:
			out[i] = State{Verdict: Done}
		case v[0] == 1 && len(v) == 3:
			out[i] = State{Verdict: Head, Number: uint64(v[1]), Lost: v[2] == 1}
		case v[0] == 2 && len(v) == 4:
			out[i] = State{Verdict: Wait, Ahead: v[1], Lost: v[3] == 1}
			if v[2] > 0 {
				out[i].Next = time.UnixMilli(v[2])
			}
		default:
			return nil, fmt.Errorf("check ordered task: unexpected answer %v", v)
		}
	}
	return out, nil
}

// Unregister takes the tasks of an event that will never be published out
// of their lines (dispatch gave the event up), without finishing them.
func (s *Store) Unregister(ctx context.Context, entries []Entry) error {
	return s.runAll(ctx, unregister, entries, "unregister ordered tasks")
}

// Finish takes a task out of its line (delivered, dead-lettered, or
// dropped): the next task of its key may go. Call it before the task's
// message is acked: a task acked but still in line would hold its key
// forever, while one finished but not acked is redelivered and Check says
// Done.
func (s *Store) Finish(ctx context.Context, e Entry) error {
	if err := finish.Run(ctx, s.rdb, e.Key.redisKeys(), s.args(e, FinishedHorizon.Milliseconds(), FinishedMax)...).Err(); err != nil {
		return fmt.Errorf("finish ordered task: %w", err)
	}
	return nil
}

// Hold tells the key's followers that its head, e, comes back at at (a
// scheduled retry): they are deferred until then rather than kept waiting.
func (s *Store) Hold(ctx context.Context, e Entry, at time.Time) error {
	if err := hold.Run(ctx, s.rdb, e.Key.redisKeys(), s.args(e, at.UnixMilli())...).Err(); err != nil {
		return fmt.Errorf("hold ordered key: %w", err)
	}
	return nil
}

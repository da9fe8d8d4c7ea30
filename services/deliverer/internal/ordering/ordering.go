// Package ordering keeps the key lines of ordered subscriptions. For a
// subscription with ordered on, the events that carry one ordering key are
// attempted one at a time, in EVENTS sequence order (publish order), while
// different keys run in parallel.
//
// The line of a key is shared by every deliverer replica, in Redis:
//
//	hookline:ord:{<sub>}:<digest>    sorted set of the key's pending tasks:
//	                                 member the event id, score its EVENTS
//	                                 sequence
//	hookline:ord:{<sub>}:<digest>:h  hash: done (the highest sequence
//	                                 finished in order), last (the numbers
//	                                 handed out), head and hseq (the task
//	                                 being attempted and its number), next
//	                                 (unix ms of the head's next attempt)
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
	return []string{base, base + ":h"}
}

// Entry is one task in a line.
type Entry struct {
	Key     Key
	EventID string
	// Seq is the event's EVENTS sequence.
	Seq uint64
}

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

// register adds a task to its line unless the line already moved past it
// (a fan-out redone after its task was finished).
//
//	KEYS[1] line  KEYS[2] hash  ARGV[1] event id  ARGV[2] seq  ARGV[3] ttl ms
var register = redis.NewScript(`
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if tonumber(ARGV[2]) <= done then
  return 0
end
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`)

// check answers {0} done, {1, number, lost} head, {2, ahead, next, lost}
// wait. A head keeps its number across retries and redeliveries.
//
//	KEYS[1] line  KEYS[2] hash  ARGV[1] event id  ARGV[2] seq  ARGV[3] ttl ms
var check = redis.NewScript(`
local seq = tonumber(ARGV[2])
local done = tonumber(redis.call('HGET', KEYS[2], 'done') or '0')
if seq <= done then
  return {0}
end
local lost = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  lost = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if first[1] ~= ARGV[1] then
  local ahead = redis.call('ZRANK', KEYS[1], ARGV[1])
  return {2, ahead, tonumber(redis.call('HGET', KEYS[2], 'next') or '0'), lost}
end
local n
if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
  n = tonumber(redis.call('HGET', KEYS[2], 'hseq'))
else
  n = redis.call('HINCRBY', KEYS[2], 'last', 1)
  redis.call('HSET', KEYS[2], 'head', ARGV[1], 'hseq', n)
end
redis.call('HDEL', KEYS[2], 'next')
return {1, n, lost}
`)

// finish takes a task out of its line. done moves to its sequence only
// when no earlier task is pending: a follower taken out (its subscription
// deleted) must not make the head look finished.
//
//	KEYS[1] line  KEYS[2] hash  ARGV[1] event id  ARGV[2] seq  ARGV[3] ttl ms
var finish = redis.NewScript(`
local seq = tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[1] == nil or tonumber(first[2]) > seq then
  if seq > tonumber(redis.call('HGET', KEYS[2], 'done') or '0') then
    redis.call('HSET', KEYS[2], 'done', ARGV[2])
  end
end
if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
  redis.call('HDEL', KEYS[2], 'head', 'hseq', 'next')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`)

// hold records when the head comes back (a scheduled retry).
//
//	KEYS[2] hash  ARGV[1] event id  ARGV[2] unix ms
var hold = redis.NewScript(`
if redis.call('HGET', KEYS[2], 'head') == ARGV[1] then
  redis.call('HSET', KEYS[2], 'next', ARGV[2])
  return 1
end
return 0
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
	return append([]any{e.EventID, strconv.FormatUint(e.Seq, 10), s.ttl.Milliseconds()}, more...)
}

// Register adds the tasks of one event to their lines, in one round trip.
// Dispatch calls it before publishing the tasks; a redone fan-out
// registers again harmlessly.
func (s *Store) Register(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT.
			register.Eval(ctx, p, e.Key.redisKeys(), s.args(e)...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("register ordered tasks: %w", err)
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

// Finish takes a task out of its line (delivered, dead-lettered, or
// dropped): the next task of its key may go. Call it before the task's
// message is acked: a task acked but still in line would hold its key
// forever, while one finished but not acked is redelivered and Check says
// Done.
func (s *Store) Finish(ctx context.Context, e Entry) error {
	if err := finish.Run(ctx, s.rdb, e.Key.redisKeys(), s.args(e)...).Err(); err != nil {
		return fmt.Errorf("finish ordered task: %w", err)
	}
	return nil
}

// Hold tells the key's followers that its head, e, comes back at at (a
// scheduled retry): they are deferred until then rather than kept waiting.
func (s *Store) Hold(ctx context.Context, e Entry, at time.Time) error {
	if err := hold.Run(ctx, s.rdb, e.Key.redisKeys(), e.EventID, at.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("hold ordered key: %w", err)
	}
	return nil
}

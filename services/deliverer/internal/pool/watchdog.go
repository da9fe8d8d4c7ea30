package pool

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// StallAfter is how long a stage's workers may wait on their iterator
// without a message before the watchdog asks the consumer whether work is
// there: three pull expiries, by which time the iterator's own recovery
// (a missed heartbeat every 2×PullExpiry/2, then a new pull) has had two
// chances.
const StallAfter = 3 * PullExpiry

// Restart reasons (label values of hookline_pull_restarts_total's reason).
const (
	// RestartStalled: workers waited StallAfter without a message while
	// the consumer reported messages it could deliver.
	RestartStalled = "stalled"
	// RestartClosed: the iterator closed by itself (the consumer was
	// deleted, a bad request) while the connection was up and the consumer
	// was there again.
	RestartClosed = "closed"
)

// RestartReasons are the values of hookline_pull_restarts_total's reason
// label.
var RestartReasons = []string{RestartStalled, RestartClosed}

// Watch configures the watchdog of Messages.
type Watch struct {
	// Stage names the stage in logs and in the stage label of Restarts.
	Stage string
	// Restarts counts the iterators replaced, by stage and reason (nil:
	// not counted).
	Restarts *prometheus.CounterVec
	// Log (nil: none).
	Log *zap.Logger
	// Stall is StallAfter unless set (tests).
	Stall time.Duration
	// MaxBytes bounds the bytes one pull asks for (see Pull; 0: no bound).
	MaxBytes int
}

// Messages is cons.Messages(Pull(max, w.MaxBytes)...) with a watchdog: a message
// source for Run that replaces its iterator when the iterator has gone
// deaf or closed by itself while the consumer is alive.
//
// Deaf: after a coordinated crash of the R3 cluster, the stages' workers
// have waited over a minute on iterators that received nothing while the
// cluster was back and events kept coming (docs/guarantees.md, fault
// 10b). nats.go's iterator replaces a pull the server lost when its
// heartbeats stop (2×PullExpiry/2), after a reconnect or a leader change;
// a pull the server holds, heartbeating, without delivering is not
// noticed. So: when a worker has waited on the
// iterator for Stall (nothing buffered, nothing arriving) the watchdog
// reads the consumer's info, and when the consumer has messages it could
// deliver (num_pending > 0, num_ack_pending below max_ack_pending, not
// paused) it opens a new iterator (a new inbox, new pulls) and drains the
// old one: its waiting workers move to the new one, a message it still
// buffered is handed out first. A consumer info that fails (the cluster
// not answering) changes nothing: a new iterator would not get further.
//
// Closed: the iterator stops by itself on a terminal status (409 consumer
// deleted, 400 bad request), and Run then returned an error that stopped
// the stage. Now, when the consumer's info answers within Stall (it is
// there again, created anew with the same name), a new iterator is
// opened; at most once per Stall, otherwise the closure is returned as
// before (a consumer deleted for good still stops the stage).
func Messages(ctx context.Context, cons jetstream.Consumer, max int, w Watch) (jetstream.MessagesContext, error) {
	if w.Stall <= 0 {
		w.Stall = StallAfter
	}
	if w.Log == nil {
		w.Log = zap.NewNop()
	}
	it, err := cons.Messages(Pull(max, w.MaxBytes)...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &source{cons: cons, max: max, w: w, it: it, progress: time.Now(), ctx: wctx, cancel: cancel, done: make(chan struct{})}
	go s.watch()
	return s, nil
}

type source struct {
	cons jetstream.Consumer
	max  int
	w    Watch

	// ctx ends at the owner's Stop or Drain (cancel); done closes when
	// the watchdog has returned.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// swap serialises replacing the iterator.
	swap sync.Mutex

	mu sync.Mutex
	it jetstream.MessagesContext
	// ended: the owner called Stop or Drain.
	ended bool
	// waiting is the number of callers in Next; progress when a message
	// was last handed out, or when a caller began to wait with nobody
	// else waiting.
	waiting  int
	progress time.Time
	// reopened is when the iterator was last replaced after closing by
	// itself; gaveUp the closed iterator that was not replaced.
	reopened time.Time
	gaveUp   jetstream.MessagesContext
}

var _ jetstream.MessagesContext = (*source)(nil)

func (s *source) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	for {
		s.mu.Lock()
		it := s.it
		if s.waiting == 0 {
			s.progress = time.Now()
		}
		s.waiting++
		s.mu.Unlock()

		msg, err := it.Next(opts...)

		s.mu.Lock()
		s.waiting--
		if err == nil {
			s.progress = time.Now()
		}
		replaced, ended := s.it != it, s.ended
		s.mu.Unlock()
		if err == nil || !errors.Is(err, jetstream.ErrMsgIteratorClosed) || ended {
			return msg, err
		}
		if replaced || s.reopenClosed(it) {
			continue
		}
		return nil, err
	}
}

// Stop stops the iterator and the watchdog.
func (s *source) Stop() {
	it := s.end()
	it.Stop()
	<-s.done
}

// Drain drains the iterator (buffered messages are still handed out) and
// stops the watchdog.
func (s *source) Drain() {
	it := s.end()
	it.Drain()
	<-s.done
}

func (s *source) end() jetstream.MessagesContext {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	return s.it
}

// reopenClosed replaces it, which closed by itself, when the consumer is
// there and it was not replaced for the same reason within Stall.
func (s *source) reopenClosed(it jetstream.MessagesContext) bool {
	s.swap.Lock()
	defer s.swap.Unlock()
	s.mu.Lock()
	if s.it != it {
		s.mu.Unlock()
		return true // another caller replaced it
	}
	recent := !s.reopened.IsZero() && time.Since(s.reopened) < s.w.Stall
	gaveUp := s.gaveUp == it
	s.mu.Unlock()
	if recent || gaveUp {
		return false
	}
	// Every worker meets the closure: one asks, the others learn the
	// answer.
	defer func() {
		s.mu.Lock()
		if s.it == it {
			s.gaveUp = it
		}
		s.mu.Unlock()
	}()
	// The consumer may be on its way back (deleted and created again):
	// asked for up to Stall.
	var (
		info     *jetstream.ConsumerInfo
		err      error
		deadline = time.Now().Add(s.w.Stall)
	)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, infoTimeout)
		info, err = s.cons.Info(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			s.w.Log.Warn("message iterator closed and the consumer cannot be read", zap.String("stage", s.w.Stage), zap.Error(err))
			return false
		}
		select {
		case <-s.ctx.Done(): // stopping: the owner's Stop or Drain
		case <-time.After(min(s.w.Stall/10, time.Second)):
		}
	}
	if !s.replace(it, RestartClosed, info) {
		return false
	}
	s.mu.Lock()
	s.reopened = time.Now()
	s.mu.Unlock()
	return true
}

// infoTimeout bounds a consumer info request of the watchdog.
const infoTimeout = 5 * time.Second

// busyLogEvery: how often the watchdog says that a stage took no message
// for Stall because every worker was busy.
const busyLogEvery = time.Minute

// watch looks every Stall/3 for a worker that has waited Stall, and for
// a stage whose workers have all been busy that long.
func (s *source) watch() {
	ctx := s.ctx
	defer close(s.done)
	t := time.NewTicker(s.w.Stall / 3)
	defer t.Stop()
	var busyLogged, asked time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		it, waiting, idle := s.it, s.waiting, time.Since(s.progress)
		s.mu.Unlock()
		if idle < s.w.Stall || time.Since(asked) < s.w.Stall || (waiting == 0 && time.Since(busyLogged) < busyLogEvery) {
			continue
		}
		// An idle stage (no traffic) waits forever: its consumer is asked
		// once per Stall, not at every tick.
		asked = time.Now()
		ictx, cancel := context.WithTimeout(ctx, infoTimeout)
		info, err := s.cons.Info(ictx)
		cancel()
		if err != nil || !deliverable(info) {
			continue
		}
		if waiting == 0 {
			// Not the iterator: every worker is in a handler. Said once
			// a minute, so that a stall tells which of the two it is.
			busyLogged = time.Now()
			fields := []zap.Field{zap.String("stage", s.w.Stage), zap.Duration("since", idle.Round(time.Millisecond)),
				zap.Uint64("num_pending", info.NumPending), zap.Int("num_ack_pending", info.NumAckPending)}
			if held := Held(); len(held) > 0 {
				fields = append(fields, zap.String("oldest_unsettled", held[0].Subject),
					zap.Duration("oldest_held", time.Since(held[0].Since).Round(time.Millisecond)))
			}
			s.w.Log.Warn("no message taken while the consumer has some: every worker is busy", fields...)
			continue
		}
		s.swap.Lock()
		s.replace(it, RestartStalled, info)
		s.swap.Unlock()
	}
}

// deliverable: the consumer has messages it would hand to a waiting pull
// now.
func deliverable(info *jetstream.ConsumerInfo) bool {
	if info.NumPending == 0 || info.Paused {
		return false
	}
	return info.Config.MaxAckPending <= 0 || info.NumAckPending < info.Config.MaxAckPending
}

// replace opens a new iterator in place of old and drains old (swap
// held). It reports whether it did.
func (s *source) replace(old jetstream.MessagesContext, reason string, info *jetstream.ConsumerInfo) bool {
	s.mu.Lock()
	if s.it != old || s.ended {
		s.mu.Unlock()
		return false
	}
	waited := time.Since(s.progress)
	s.mu.Unlock()
	it, err := s.cons.Messages(Pull(s.max, s.w.MaxBytes)...)
	if err != nil {
		s.w.Log.Warn("message iterator could not be replaced", zap.String("stage", s.w.Stage), zap.String("reason", reason), zap.Error(err))
		return false
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		it.Stop()
		return false
	}
	s.it = it
	s.progress = time.Now()
	s.mu.Unlock()
	// Its waiting workers get what it buffered, then ErrMsgIteratorClosed,
	// and move to the new one.
	old.Drain()
	if s.w.Restarts != nil {
		s.w.Restarts.WithLabelValues(s.w.Stage, reason).Inc()
	}
	fields := []zap.Field{zap.String("stage", s.w.Stage), zap.String("reason", reason),
		zap.Duration("waited", waited.Round(time.Millisecond)), zap.Uint64("num_pending", info.NumPending),
		zap.Int("num_waiting", info.NumWaiting), zap.Int("num_ack_pending", info.NumAckPending),
		zap.Int("num_redelivered", info.NumRedelivered)}
	if info.Cluster != nil {
		// A second replacement with the same leader and nothing received
		// in between points at the consumer leader, not at the iterator.
		fields = append(fields, zap.String("consumer_leader", info.Cluster.Leader))
	}
	s.w.Log.Warn("message iterator replaced", fields...)
	return true
}

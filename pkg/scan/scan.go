// Package scan reads a range of a JetStream stream once, in sequence order,
// through a short-lived ephemeral consumer: the read-only access hookctl and
// the producer's API need for listing dead letters, attempts and events.
package scan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Options select what to read.
type Options struct {
	// Subjects filter the stream server-side; empty reads every subject.
	Subjects []string
	// StartTime, when set, skips messages stored before it (server-side).
	StartTime time.Time
	// StartSeq, when set, skips messages with a lower sequence.
	StartSeq uint64
	// EndSeq, when set, ends the scan before the first message with a
	// higher sequence (which is not visited), and keeps fetches from
	// reading far past it.
	EndSeq uint64
	// HeadersOnly leaves message bodies on the server.
	HeadersOnly bool
	// BatchSize of each fetch (default 256).
	BatchSize int
}

// ErrStop returned by the visit function ends the scan early without error.
var ErrStop = errors.New("stop scan")

// Scan calls visit for every message matching opts that is in the stream
// when Scan starts, oldest first. Messages deleted meanwhile are skipped.
// It returns the first error of visit (except ErrStop) or of the server.
func Scan(ctx context.Context, s jetstream.Stream, opts Options, visit func(jetstream.Msg) error) error {
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       opts.HeadersOnly,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
	switch len(opts.Subjects) {
	case 0:
	case 1:
		cfg.FilterSubject = opts.Subjects[0]
	default:
		cfg.FilterSubjects = opts.Subjects
	}
	switch {
	case opts.StartSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = opts.StartSeq
	case !opts.StartTime.IsZero():
		t := opts.StartTime
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	cons, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		// Best effort: the inactive threshold removes it anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.DeleteConsumer(dctx, name)
	}()
	pending := cons.CachedInfo().NumPending
	batch := opts.BatchSize
	if batch <= 0 {
		batch = 256
	}
	var last uint64
	if opts.StartSeq > 0 {
		last = opts.StartSeq - 1
	}
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := batch
		if pending < uint64(n) {
			n = int(pending)
		}
		if opts.EndSeq > 0 {
			// At most EndSeq-last messages are left before EndSeq.
			if opts.EndSeq <= last {
				return nil
			}
			n = int(min(uint64(n), opts.EndSeq-last))
		}
		msgs, err := cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
		}
		got := 0
		for msg := range msgs.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
			}
			pending = meta.NumPending
			last = meta.Sequence.Stream
			if opts.EndSeq > 0 && last > opts.EndSeq {
				return nil
			}
			if err := visit(msg); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if err := msgs.Error(); err != nil {
			return fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
		}
		if got == 0 {
			// What was pending was deleted or expired meanwhile.
			return nil
		}
	}
	return nil
}

// Package pool runs a bounded pool of workers over a JetStream pull
// iterator: consumer.Messages() with N goroutines calling Next(), which is
// how a consumer gets parallel handlers (Consume runs its callback serially).
package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one message and settles it (ack, nak, term). Its context
// is not cancelled at shutdown: an attempt in flight finishes, bounded by
// the handler's own timeouts.
type Handler func(ctx context.Context, msg jetstream.Msg)

// Run calls handle with workers goroutines until ctx ends, then drains the
// iterator (no more pulls; messages already buffered are still handled)
// and returns when every worker is done. It returns an error when the
// iterator closes by itself (consumer deleted, connection closed).
func Run(ctx context.Context, it jetstream.MessagesContext, workers int, handle Handler) error {
	hctx := context.WithoutCancel(ctx)
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	for range workers {
		wg.Go(func() {
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					if ctx.Err() == nil {
						errOnce.Do(func() { runErr = fmt.Errorf("message iterator closed: %w", err) })
					}
					return
				}
				if err != nil {
					// Not terminal (a missed heartbeat, a reconnect): the
					// iterator keeps pulling. A terminal error stops it, and
					// the next Next says so.
					continue
				}
				handle(hctx, msg)
			}
		})
	}
	wg.Wait()
	it.Stop()
	return runErr
}

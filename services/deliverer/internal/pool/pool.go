// Package pool runs a bounded pool of workers over a JetStream pull
// iterator: consumer.Messages() with N goroutines calling Next(), which is
// how a consumer gets parallel handlers (Consume runs its callback serially).
package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// PanicNakDelay is how long a message whose handler panicked waits before
// it is redelivered. Its redeliveries are bounded like any other's (the
// deliver stage dead-letters a task past HOOKLINE_MAX_REDELIVERIES).
const PanicNakDelay = 5 * time.Second

// Handler handles one message and settles it (ack, nak, term). Its context
// is not cancelled at shutdown: an attempt in flight finishes, bounded by
// the handler's own timeouts.
type Handler func(ctx context.Context, msg jetstream.Msg)

// Run calls handle with workers goroutines until ctx ends, then drains the
// iterator (no more pulls; messages already buffered are still handled)
// and returns when every worker is done. It returns an error when the
// iterator closes by itself (consumer deleted, connection closed).
//
// A handler that panics does not take the process down with the work of
// every other worker: the panic is logged with its stack and the message
// nak'ed for a later redelivery.
func Run(ctx context.Context, it jetstream.MessagesContext, workers int, handle Handler, log *zap.Logger) error {
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
				safely(hctx, msg, handle, log)
			}
		})
	}
	wg.Wait()
	it.Stop()
	return runErr
}

func safely(ctx context.Context, msg jetstream.Msg, handle Handler, log *zap.Logger) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("message handler panicked; message nak'ed", zap.String("subject", msg.Subject()),
				zap.Any("panic", r), zap.Stack("stack"))
			_ = msg.NakWithDelay(PanicNakDelay)
		}
	}()
	handle(ctx, msg)
}

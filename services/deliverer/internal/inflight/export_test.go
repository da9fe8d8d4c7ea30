package inflight

import "context"

// One-call forms of the queued commands, for this package's tests: each
// runs its command alone in a pipeline, as endpoint health runs them with
// others.

func (l *Limiter) Acquire(ctx context.Context, subscriptionID string, max uint32) (lease Lease, ok bool, err error) {
	pipe := l.rdb.Pipeline()
	p := l.AcquireCmd(ctx, pipe, subscriptionID, max)
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // each command carries its own error
	}
	return p.Result()
}

func (l *Limiter) Release(ctx context.Context, lease Lease) error {
	pipe := l.rdb.Pipeline()
	cmd := l.ReleaseCmd(ctx, pipe, lease)
	if cmd == nil {
		return nil // a zero or local lease
	}
	_, _ = pipe.Exec(ctx)
	return cmd.Err()
}

package breaker

import (
	"context"
	"time"
)

// One-call forms of the queued commands, for this package's tests: each
// runs its command alone in a pipeline, as endpoint health runs them with
// others.

func (b *Breaker) Allow(ctx context.Context, subscriptionID string) (Decision, error) {
	pipe := b.rdb.Pipeline()
	p := b.AllowCmd(ctx, pipe, subscriptionID)
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // each command carries its own error
	}
	return p.Result()
}

func (b *Breaker) ReleaseProbe(ctx context.Context, subscriptionID, token string) error {
	if token == "" {
		return nil
	}
	pipe := b.rdb.Pipeline()
	cmd := b.ReleaseProbeCmd(ctx, pipe, subscriptionID, token)
	_, _ = pipe.Exec(ctx)
	return cmd.Err()
}

func (b *Breaker) Success(ctx context.Context, subscriptionID string) (closed bool, err error) {
	pipe := b.rdb.Pipeline()
	cmd := b.SuccessCmd(ctx, pipe, subscriptionID)
	_, _ = pipe.Exec(ctx)
	return SuccessResult(cmd)
}

func (b *Breaker) Failure(ctx context.Context, subscriptionID string, pause time.Duration) (Streak, error) {
	pipe := b.rdb.Pipeline()
	p := b.FailureCmd(ctx, pipe, subscriptionID, pause)
	_, _ = pipe.Exec(ctx)
	return p.Result()
}

func (b *Breaker) FailureTell(ctx context.Context, subscriptionID string, o Opening) (Streak, error) {
	pipe := b.rdb.Pipeline()
	p := b.FailureTellCmd(ctx, pipe, subscriptionID, 0, o)
	_, _ = pipe.Exec(ctx)
	return p.Result()
}

func (b *Breaker) Tell(ctx context.Context, subscriptionID, who, what string) (Tell, error) {
	pipe := b.rdb.Pipeline()
	p := b.TellCmd(ctx, pipe, subscriptionID, who, what)
	_, _ = pipe.Exec(ctx)
	return p.Result()
}

func (b *Breaker) Untell(ctx context.Context, subscriptionID, who, what string) error {
	pipe := b.rdb.Pipeline()
	cmd := b.UntellCmd(ctx, pipe, subscriptionID, who, what)
	_, _ = pipe.Exec(ctx)
	return cmd.Err()
}

func (b *Breaker) Close(ctx context.Context, subscriptionID string) (bool, []Told, error) {
	pipe := b.rdb.Pipeline()
	p := b.CloseCmd(ctx, pipe, subscriptionID)
	_, _ = pipe.Exec(ctx)
	return p.Result()
}

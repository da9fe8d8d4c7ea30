package cli

import (
	"context"
	"errors"

	"github.com/hookline/hookline/cmd/hookctl/internal/producer"
	"github.com/hookline/hookline/pkg/deadletter"
)

// Exit codes. main is the only place that exits; it asks ExitCode.
const (
	// ExitOK: done (an empty selection is not an error).
	ExitOK = 0
	// ExitFailure: NATS or the producer API failed or is unreachable, or
	// an operation failed half-way (what was done is printed).
	ExitFailure = 1
	// ExitUsage: a bad flag, argument, time or configuration value.
	ExitUsage = 2
	// ExitNotFound: a requested SEQ or subscription does not exist.
	ExitNotFound = 3
	// ExitRefused: hookctl refused to act — a replay to a deleted or
	// disabled subscription without --force, a purge or delete without
	// confirmation, entries that cannot be replayed.
	ExitRefused = 4
	// ExitInterrupted: stopped by Ctrl-C (SIGINT) or SIGTERM after
	// finishing the entry in flight; run the printed command to resume.
	ExitInterrupted = 130
)

// codedError carries its exit code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

func usageErr(err error) error    { return withCode(ExitUsage, err) }
func refusedErr(err error) error  { return withCode(ExitRefused, err) }
func notFoundErr(err error) error { return withCode(ExitNotFound, err) }

// ExitCode maps an error returned by Execute to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	if errors.Is(err, deadletter.ErrInterrupted) || errors.Is(err, context.Canceled) {
		// Ctrl-C while listing: nothing was changed.
		return ExitInterrupted
	}
	if errors.Is(err, deadletter.ErrNotFound) {
		return ExitNotFound
	}
	var p *producer.Problem
	if errors.As(err, &p) && p.Status == 404 {
		return ExitNotFound
	}
	if errors.As(err, &p) && (p.Status == 400 || p.Status == 422) {
		return ExitUsage
	}
	return ExitFailure
}

// runError marks an error returned by a command's own code, as opposed to
// one of cobra's parsing errors (which are usage errors).
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

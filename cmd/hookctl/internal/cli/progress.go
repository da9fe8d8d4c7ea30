package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/stream"
)

// progress reports a replay or purge: a bar with count and ETA when stdout
// is a terminal, otherwise one plain line per entry (for logs and CI).
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer // lines, or the terminal under the bar
	total int
}

// newProgress writes to stdout, or to stderr when stdout carries a JSON
// document.
func (a *App) newProgress(total int, verb string, jsonOut bool) *progress {
	if a.io.OutTerminal && !jsonOut {
		return &progress{total: total, w: a.io.Out, bar: progressbar.NewOptions(total,
			progressbar.OptionSetWriter(a.io.Out),
			progressbar.OptionSetDescription(verb),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("entries"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.io.Out) }),
		)}
	}
	w := a.io.Out
	if jsonOut {
		w = a.io.Err
	}
	return &progress{w: w, total: total}
}

func (p *progress) step(done int, r deadletter.Result) {
	if p.bar != nil {
		_ = p.bar.Add(1)
		return
	}
	width := len(strconv.Itoa(p.total))
	fmt.Fprintf(p.w, "[%*d/%d] %s\n", width, done, p.total, describe(r))
}

// finish ends the bar (also when stopped early, so the prompt starts on a
// fresh line).
func (p *progress) finish() {
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit() // runs OnCompletion: a newline
	}
}

func describe(r deadletter.Result) string {
	switch r.Outcome {
	case deadletter.Replayed:
		s := fmt.Sprintf("replayed seq %d  event %s  subscription %s  → %s seq %d", r.Seq, r.EventID, r.SubscriptionID, stream.Deliveries, r.TaskSeq)
		if r.Duplicate {
			s += " (published by an earlier run already; not published again)"
		}
		return s
	case deadletter.Purged:
		return fmt.Sprintf("purged seq %d  event %s  subscription %s", r.Seq, r.EventID, r.SubscriptionID)
	default:
		return fmt.Sprintf("seq %d left %s meanwhile (replayed or purged by someone else); skipped", r.Seq, stream.DeadLetter)
	}
}

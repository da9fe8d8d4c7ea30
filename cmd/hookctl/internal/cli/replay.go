package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/stream"
)

func (a *App) dlqReplay() *cobra.Command {
	var (
		f                          selectionFlags
		all, dryRun, force, asJSON bool
		rate                       float64
	)
	c := &cobra.Command{
		Use:   "replay [SEQ...]",
		Short: "Replay dead letters as new delivery tasks, at a bounded rate",
		Long: `Replay asks a deliverer to republish each selected dead letter as a new
delivery task for its subscription and, once that publish is acknowledged,
deletes it from DEADLETTER. The deliverer reads the entry from DEADLETTER
itself: a replay re-sends exactly what DEADLETTER holds (hookctl cannot
publish tasks). Entries go oldest first (--limit N takes the N oldest).

The task keeps the event id (the receiver's webhook-id, so receivers dedupe),
starts again at attempt 0, carries Hookline-Replay: <seq>, and is delivered to
the subscription's current URL with its current secret.

Safe to interrupt: Ctrl-C finishes the entry in flight and prints the command
that resumes; each entry is replayed once however often you run it (the entry
leaves DEADLETTER only after its task is stored, and the task's dedup id
<event>:<subscription>:replay:<seq> stores it once).

A deleted or disabled subscription is refused unless --force.`,
		Example: `  hookctl dlq replay --subscription sub_01J… --since 6h --dry-run
  hookctl dlq replay --subscription sub_01J… --since 6h --rate 5
  hookctl dlq replay 42 43 44
  hookctl dlq replay --all --rate 50`,
		RunE: func(c *cobra.Command, args []string) error {
			sel, err := f.toChange(args, all, "replay")
			if err != nil {
				return err
			}
			if rate < 0 {
				return usageErr(fmt.Errorf("--rate %g: want entries per second, or 0 for no pacing", rate))
			}
			s, err := a.selectToChange(c.Context(), sel, dryRun, asJSON)
			if s == nil {
				return err
			}
			js, st, entries, missingErr := s.js, s.st, s.entries, s.missingErr
			if bad := deadletter.Unreplayable(entries); len(bad) > 0 {
				var seqs []string
				for _, e := range bad {
					seqs = append(seqs, strconv.FormatUint(e.Record.GetSeq(), 10))
				}
				return refusedErr(fmt.Errorf("cannot replay seq %s: a task needs the %s, %s and %s headers (or subject %s.<tenant>.<subscription>); inspect with hookctl dlq show, purge with hookctl dlq purge",
					strings.Join(seqs, ", "), stream.HeaderEventID, stream.HeaderTenant, stream.HeaderSubscriptionID, stream.DeadLetterPrefix))
			}
			if err := a.checkSubscriptions(c.Context(), js, entries, force); err != nil {
				return err
			}
			if _, err := js.Stream(c.Context(), stream.Deliveries); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("stream %s not found: the deliverer creates it at start-up; start it, then replay", stream.Deliveries)
				}
				return natsErr(err)
			}
			if dryRun {
				return a.replayDryRun(entries, rate, asJSON, missingErr)
			}
			return a.replay(c, js, st, entries, rate, asJSON, resumeCommand{cmd: c, f: &f, sel: sel, force: force, rate: rate}, missingErr)
		},
	}
	f.register(c, 0, "replay at most this many, the oldest (0: all)")
	fl := c.Flags()
	fl.BoolVar(&all, "all", false, "select every dead letter (needed when no SEQ or filter is given)")
	fl.BoolVar(&dryRun, "dry-run", false, "list exactly what would be replayed; change nothing")
	fl.Float64Var(&rate, "rate", 10, "most entries replayed per second (0: no pacing)")
	fl.BoolVar(&force, "force", false, "replay to deleted or disabled subscriptions too (the deliverer will dead-letter them again)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document {dry_run, results|dead_letters}; progress lines go to stderr")
	return c
}

// toChange is the selection of a command that changes dead letters (verb:
// replay, purge): SEQ arguments, filters, or --all, never the whole stream
// by accident.
func (f *selectionFlags) toChange(args []string, all bool, verb string) (deadletter.Selection, error) {
	sel, err := f.selection(args)
	if err != nil {
		return sel, err
	}
	if all && (len(sel.Seqs) > 0 || sel.HasFilters()) {
		return sel, usageErr(fmt.Errorf("--all selects every dead letter: give it without SEQ arguments or filters"))
	}
	if !all && len(sel.Seqs) == 0 && !sel.HasFilters() {
		return sel, usageErr(fmt.Errorf("%s what? give SEQ arguments, filters (--subscription, --since, …), or --all for every dead letter", verb))
	}
	return sel, nil
}

// selected is what replay or purge acts on.
type selected struct {
	js      jetstream.JetStream
	st      *deadletter.Store
	entries []deadletter.Entry // never empty
	// missingErr reports SEQ arguments not found: the command goes on with
	// the rest and returns it at the end.
	missingErr error
}

// selectToChange opens DEADLETTER and selects what replay or purge acts on.
// A nil result means there is nothing to act on and the command returns
// the error: it could not select, or the selection is empty and it has said
// why (with asJSON, printed an empty result).
func (a *App) selectToChange(ctx context.Context, sel deadletter.Selection, dryRun, asJSON bool) (*selected, error) {
	js, st, err := a.store(ctx)
	if err != nil {
		return nil, err
	}
	entries, missing, err := st.Select(ctx, sel)
	if err != nil {
		return nil, natsErr(err)
	}
	missingErr := a.reportMissing(missing)
	if len(entries) == 0 {
		if missingErr == nil {
			noneMatch(a.io.Err, sel)
		}
		if asJSON {
			if err := writeJSON(a.io.Out, map[string]any{"dry_run": dryRun, "results": []any{}}); err != nil {
				return nil, err
			}
		}
		return nil, missingErr
	}
	return &selected{js: js, st: st, entries: entries, missingErr: missingErr}, nil
}

func (a *App) reportMissing(missing []uint64) error {
	if len(missing) == 0 {
		return nil
	}
	var seqs []string
	for _, s := range missing {
		seqs = append(seqs, strconv.FormatUint(s, 10))
		fmt.Fprintf(a.io.Err, "seq %d is not in %s: it was replayed or purged already, it expired, or it never existed\n", s, stream.DeadLetter)
	}
	return notFoundErr(fmt.Errorf("not found in %s: seq %s (hookctl dlq ls lists what there is)", stream.DeadLetter, strings.Join(seqs, ", ")))
}

func (a *App) checkSubscriptions(ctx context.Context, js jetstream.JetStream, entries []deadletter.Entry, force bool) error {
	problems, err := deadletter.CheckSubscriptions(ctx, js, entries)
	if errors.Is(err, deadletter.ErrNoRegistry) {
		if force {
			fmt.Fprintf(a.io.Err, "warning: %v; replaying anyway (--force)\n", err)
			return nil
		}
		return refusedErr(fmt.Errorf("%w: cannot check that the subscriptions exist; is --nats-url Hookline's NATS? pass --force to replay without the check", err))
	}
	if err != nil {
		return natsErr(err)
	}
	if len(problems) == 0 {
		return nil
	}
	if force {
		for _, p := range problems {
			fmt.Fprintf(a.io.Err, "warning: %s; replaying anyway (--force)\n", p)
		}
		return nil
	}
	var b strings.Builder
	b.WriteString("refusing to replay to subscriptions that would not receive it:")
	for _, p := range problems {
		b.WriteString("\n  " + p.String())
	}
	b.WriteString("\nEnable a disabled subscription first (hookctl subs enable ID), leave these out (--subscription), or pass --force to replay anyway (the deliverer dead-letters them again).")
	return refusedErr(errors.New(b.String()))
}

func estimate(n int, rate float64) string {
	if rate <= 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%g/s, about %s", rate, (time.Duration(float64(n) / rate * float64(time.Second))).Round(time.Second))
}

func (a *App) replayDryRun(entries []deadletter.Entry, rate float64, asJSON bool, missingErr error) error {
	if asJSON {
		list := make([]any, len(entries))
		for i, e := range entries {
			list[i] = pj(e.Record)
		}
		if err := writeJSON(a.io.Out, map[string]any{"dry_run": true, "dead_letters": list}); err != nil {
			return err
		}
		return missingErr
	}
	w := a.io.Out
	fmt.Fprintf(w, "dry run: would replay %s, oldest first (%s):\n", plural(len(entries), "dead letter", "dead letters"), estimate(len(entries), rate))
	tw := table(w)
	row(tw, "SEQ", "DEAD-LETTERED", "TENANT", "SUBSCRIPTION", "EVENT-TYPE", "REASON", "STATUS", "EVENT-ID", "TO")
	for _, e := range entries {
		r := e.Record
		row(tw, r.GetSeq(), when(e.Time()), r.GetTenant(), r.GetSubscriptionId(), r.GetEventType(), r.GetReason(), status(r.GetLastStatus()), r.GetEventId(), stream.DeliverySubject(r.GetTenant(), r.GetSubscriptionId()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "nothing was changed; run the same command without --dry-run to replay")
	return missingErr
}

// resumeCommand prints the command that replays what an interrupted run
// left.
type resumeCommand struct {
	cmd   *cobra.Command
	f     *selectionFlags
	sel   deadletter.Selection
	force bool
	rate  float64
}

func (r resumeCommand) String(entries []deadletter.Entry, done int) string {
	args := []string{"hookctl", "dlq", "replay"}
	if len(r.sel.Seqs) > 0 {
		for _, e := range entries[done:] {
			args = append(args, strconv.FormatUint(e.Record.GetSeq(), 10))
		}
	} else {
		args = append(args, r.f.resumeArgs(entries[len(entries)-1].Record.GetSeq())...)
		if !r.sel.HasFilters() {
			args = append(args, "--all")
		}
	}
	if r.cmd.Flags().Changed("rate") {
		args = append(args, "--rate="+strconv.FormatFloat(r.rate, 'g', -1, 64))
	}
	if r.force {
		args = append(args, "--force")
	}
	return joinCmd(args, connectionArgs(r.cmd))
}

func (a *App) replay(c *cobra.Command, js jetstream.JetStream, st *deadletter.Store, entries []deadletter.Entry, rate float64, asJSON bool, resume resumeCommand, missingErr error) error {
	msgOut := a.io.Out
	if asJSON {
		msgOut = a.io.Err
	}
	start := time.Now()
	fmt.Fprintf(msgOut, "replaying %s (%s); Ctrl-C stops after the entry in flight\n", plural(len(entries), "dead letter", "dead letters"), estimate(len(entries), rate))
	prog := a.newProgress(len(entries), "replaying", asJSON)
	rp := &deadletter.Replayer{JS: js, Store: st, Rate: rate, OnResult: prog.step}
	results, err := rp.Run(c.Context(), entries)
	prog.finish()

	replayed, gone := 0, 0
	subs := map[string]bool{}
	for _, r := range results {
		if r.Outcome == deadletter.Replayed {
			replayed++
			subs[r.SubscriptionID] = true
		} else {
			gone++
		}
	}
	if asJSON {
		if jerr := writeJSON(a.io.Out, map[string]any{"dry_run": false, "replayed": replayed, "gone": gone, "remaining": len(entries) - len(results), "results": results}); jerr != nil && err == nil {
			err = jerr
		}
	}
	summary := fmt.Sprintf("replayed %d of %d in %s", replayed, len(entries), time.Since(start).Round(time.Millisecond))
	if gone > 0 {
		summary += fmt.Sprintf("; %d had left %s meanwhile", gone, stream.DeadLetter)
	}
	if err != nil {
		left := len(entries) - len(results)
		fmt.Fprintf(a.io.Err, "%s; %d still in %s.\nResume with:\n  %s\n", summary, left, stream.DeadLetter, resume.String(entries, len(results)))
		if errors.Is(err, deadletter.ErrInterrupted) {
			return err
		}
		return natsErr(err)
	}
	fmt.Fprintln(msgOut, summary)
	for sub := range subs {
		fmt.Fprintf(msgOut, "follow the deliveries: hookctl attempts --subscription %s --since %s\n", sub, start.UTC().Add(-time.Second).Format(time.RFC3339))
	}
	return missingErr
}

func (a *App) dlqPurge() *cobra.Command {
	var (
		f                        selectionFlags
		all, yes, dryRun, asJSON bool
	)
	c := &cobra.Command{
		Use:   "purge [SEQ...]",
		Short: "Delete dead letters for good (asks for confirmation)",
		Long: `Purge deletes the selected dead letters from DEADLETTER without replaying them.
It shows what it selected and asks for confirmation on the terminal; --yes
skips the question (required when stdin is not a terminal).`,
		Example: `  hookctl dlq purge --subscription sub_01J… --reason gone --dry-run
  hookctl dlq purge 42 43
  hookctl dlq purge --until 30d --yes`,
		RunE: func(c *cobra.Command, args []string) error {
			sel, err := f.toChange(args, all, "purge")
			if err != nil {
				return err
			}
			s, err := a.selectToChange(c.Context(), sel, dryRun, asJSON)
			if s == nil {
				return err
			}
			st, entries, missingErr := s.st, s.entries, s.missingErr
			msgOut := a.io.Out
			if asJSON {
				msgOut = a.io.Err
			}
			a.purgePreview(msgOut, entries)
			if dryRun {
				if asJSON {
					list := make([]any, len(entries))
					for i, e := range entries {
						list[i] = pj(e.Record)
					}
					if err := writeJSON(a.io.Out, map[string]any{"dry_run": true, "dead_letters": list}); err != nil {
						return err
					}
				}
				fmt.Fprintln(msgOut, "dry run: nothing was deleted")
				return missingErr
			}
			if err := a.confirm(fmt.Sprintf("Delete %s from %s for good?", plural(len(entries), "dead letter", "dead letters"), stream.DeadLetter), yes); err != nil {
				return err
			}
			prog := a.newProgress(len(entries), "purging", asJSON)
			results, err := st.Purge(c.Context(), entries, prog.step)
			prog.finish()
			purged := 0
			for _, r := range results {
				if r.Outcome == deadletter.Purged {
					purged++
				}
			}
			if asJSON {
				if jerr := writeJSON(a.io.Out, map[string]any{"dry_run": false, "purged": purged, "remaining": len(entries) - len(results), "results": results}); jerr != nil && err == nil {
					err = jerr
				}
			}
			if err != nil {
				fmt.Fprintf(a.io.Err, "purged %d of %d; the other %d are still in %s (run the same command again to finish)\n", purged, len(entries), len(entries)-len(results), stream.DeadLetter)
				return natsErr(err)
			}
			fmt.Fprintf(msgOut, "purged %d of %d\n", purged, len(entries))
			return missingErr
		},
	}
	f.register(c, 0, "purge at most this many, the oldest (0: all)")
	fl := c.Flags()
	fl.BoolVar(&all, "all", false, "select every dead letter (needed when no SEQ or filter is given)")
	fl.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	fl.BoolVar(&dryRun, "dry-run", false, "show what would be deleted; delete nothing")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document {dry_run, purged, results}; progress lines go to stderr")
	return c
}

// purgePreview shows what a purge selected: counts by subscription and
// reason, and the first entries.
func (a *App) purgePreview(w interface{ Write([]byte) (int, error) }, entries []deadletter.Entry) {
	const show = 20
	fmt.Fprintf(w, "selected %s:\n", plural(len(entries), "dead letter", "dead letters"))
	tw := table(w)
	row(tw, "SEQ", "DEAD-LETTERED", "TENANT", "SUBSCRIPTION", "EVENT-TYPE", "REASON", "EVENT-ID")
	for i, e := range entries {
		if i == show {
			break
		}
		r := e.Record
		row(tw, r.GetSeq(), when(e.Time()), r.GetTenant(), r.GetSubscriptionId(), r.GetEventType(), r.GetReason(), r.GetEventId())
	}
	_ = tw.Flush()
	if len(entries) > show {
		fmt.Fprintf(w, "… and %d more (hookctl dlq ls with the same filters lists them)\n", len(entries)-show)
	}
}

// confirm asks on the terminal. Without one (a pipe, CI), it refuses unless
// yes: a typed "y" must come from a person.
func (a *App) confirm(question string, yes bool) error {
	if yes {
		return nil
	}
	if !a.io.InTerminal {
		return refusedErr(errors.New("refusing without confirmation: stdin is not a terminal; pass --yes to confirm"))
	}
	fmt.Fprintf(a.io.Err, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.io.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return refusedErr(errors.New("not confirmed; nothing was changed"))
}

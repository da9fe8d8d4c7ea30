package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hookline/hookline/cmd/hookctl/internal/timeflag"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/wire"
)

// selectionFlags are the filters shared by dlq ls, stats, replay and purge.
type selectionFlags struct {
	tenant, subscription string
	types, reasons       []string
	status               string
	since, until         timeflag.Value
	maxSeq               uint64
	limit                int
}

func (f *selectionFlags) register(c *cobra.Command, limitDefault int, limitHelp string) {
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "only this tenant")
	fl.StringVar(&f.subscription, "subscription", "", "only this subscription id")
	fl.StringSliceVar(&f.types, "type", nil, "only these event types; NATS-token filters like order.created, order.*, invoice.> (repeat or comma-separate)")
	fl.StringSliceVar(&f.reasons, "reason", nil, "only these reasons: "+strings.Join(wire.DeadLetterReasons(), ", "))
	fl.StringVar(&f.status, "status", "", "only this last HTTP status: 503, a class like 5xx, a list like 429,503, or 0 for no answer")
	fl.Var(&f.since, "since", "only dead-lettered at or after this: a duration ago (6h, 7d) or RFC 3339")
	fl.Var(&f.until, "until", "only dead-lettered before this: a duration ago (1h) or RFC 3339")
	fl.Uint64Var(&f.maxSeq, "max-seq", 0, "only entries with a sequence up to this one (pins a selection when resuming)")
	fl.IntVar(&f.limit, "limit", limitDefault, limitHelp)
}

// selection builds and validates the selection from flags and SEQ args.
func (f *selectionFlags) selection(args []string) (deadletter.Selection, error) {
	sel := deadletter.Selection{
		Tenant:       f.tenant,
		Subscription: f.subscription,
		Types:        f.types,
		Reasons:      f.reasons,
		Since:        f.since.T,
		Until:        f.until.T,
		MaxSeq:       f.maxSeq,
		Limit:        f.limit,
	}
	for _, a := range args {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil || seq == 0 {
			return sel, usageErr(fmt.Errorf("SEQ %q is not a sequence number (the first column of hookctl dlq ls)", a))
		}
		sel.Seqs = append(sel.Seqs, seq)
	}
	if f.status != "" {
		st, err := deadletter.ParseStatuses(f.status)
		if err != nil {
			return sel, usageErr(err)
		}
		sel.Statuses = st
	}
	if err := sel.Validate(); err != nil {
		return sel, usageErr(err)
	}
	return sel, nil
}

// resumeArgs renders the selection as flags that select the same entries
// later: relative times become absolute, and --max-seq pins the upper end
// (the last entry selected), so that neither time passing nor dead letters
// arriving meanwhile change what a resumed run selects. --limit is not
// needed: entries are taken oldest first, so those up to --max-seq still in
// the stream are exactly the ones not yet done.
func (f *selectionFlags) resumeArgs(maxSeq uint64) []string {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, "--"+name+"="+shellQuote(v))
		}
	}
	add("tenant", f.tenant)
	add("subscription", f.subscription)
	if len(f.types) > 0 {
		add("type", strings.Join(f.types, ","))
	}
	if len(f.reasons) > 0 {
		add("reason", strings.Join(f.reasons, ","))
	}
	add("status", f.status)
	add("since", f.since.Absolute())
	add("until", f.until.Absolute())
	if maxSeq > 0 {
		add("max-seq", strconv.FormatUint(maxSeq, 10))
	}
	return out
}

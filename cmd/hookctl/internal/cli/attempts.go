package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hookline/hookline/cmd/hookctl/internal/timeflag"
	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/stream"
)

func (a *App) attemptsCommand() *cobra.Command {
	var (
		q            attempt.Query
		since, until timeflag.Value
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "attempts",
		Short: "Show the delivery attempts of a subscription (or of one event), in time order",
		Long: `Every HTTP attempt the deliverer makes is recorded in the NATS stream ATTEMPTS
(subject attempts.<tenant>.<subscription>): when it started, the attempt number,
the status, how long it took, the error class and the first bytes of the
response. This lists them oldest first. A message may hold several records
(one a line); a line that is not a record is reported on stderr and skipped.`,
		Example: `  hookctl attempts --subscription sub_01J…
  hookctl attempts --subscription sub_01J… --event evt_01J… --json
  hookctl attempts --subscription sub_01J… --since 1h --limit 50`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if q.Subscription == "" && q.EventID == "" {
				return usageErr(errors.New("give --subscription ID (and optionally --event ID), or --event ID"))
			}
			for _, tok := range []struct{ name, v string }{{"--tenant", q.Tenant}, {"--subscription", q.Subscription}} {
				if strings.ContainsAny(tok.v, ".*> \t") {
					return usageErr(fmt.Errorf("%s %q: must be a single NATS subject token (no '.', '*', '>' or spaces)", tok.name, tok.v))
				}
			}
			if q.Limit < 0 {
				return usageErr(fmt.Errorf("--limit %d: must be 0 (no limit) or more", q.Limit))
			}
			q.Since, q.Until = since.T, until.T
			js, err := a.jetStream(c.Context())
			if err != nil {
				return err
			}
			atts, skipped, err := attempt.List(c.Context(), js, q)
			if errors.Is(err, attempt.ErrNoStream) {
				return fmt.Errorf("%w on %s: the deliverer creates it at start-up; is --nats-url / HOOKLINE_NATS_URL Hookline's NATS?", err, redactURLs(a.natsConfig().URL))
			}
			if err != nil {
				return natsErr(err)
			}
			a.warnSkipped(skipped)
			if asJSON {
				list := make([]any, len(atts))
				for i, r := range atts {
					list[i] = pj(r.Attempt)
				}
				return writeJSON(a.io.Out, map[string]any{"attempts": list})
			}
			if len(atts) == 0 {
				fmt.Fprintln(a.io.Err, "no attempts match (the deliverer records each attempt in "+stream.Attempts+"; check the subscription id, --event and --since)")
				return nil
			}
			return a.attemptTable(a.io.Out, atts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&q.Subscription, "subscription", "", "the subscription id")
	fl.StringVar(&q.Tenant, "tenant", "", "only this tenant")
	fl.StringVar(&q.EventID, "event", "", "only the attempts of this event id")
	fl.Var(&since, "since", "only attempts started at or after this: a duration ago (6h, 7d) or RFC 3339")
	fl.Var(&until, "until", "only attempts started before this: a duration ago or RFC 3339")
	fl.IntVar(&q.Limit, "limit", 0, "show only the newest N, still oldest first (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document {attempts: [Attempt…]}")
	return c
}

// warnSkipped reports on stderr each ATTEMPTS record List could not decode.
func (a *App) warnSkipped(skipped []attempt.Skipped) {
	for _, s := range skipped {
		fmt.Fprintf(a.io.Err, "%s seq %d: not an attempt record, skipped (%v)\n", stream.Attempts, s.Seq, s.Err)
	}
}

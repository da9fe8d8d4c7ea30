package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/stream"
)

func (a *App) dlqCommand() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "dlq",
		Short: "Dead letters: list, count, show, replay, purge",
		Long: `Dead letters are deliveries that never succeeded, parked in the NATS stream
DEADLETTER (subject deadletter.<tenant>.<subscription>; body = the event's data;
the envelope and the reason in Hookline-* headers).

Selection (ls, stats, replay, purge): --tenant --subscription --type --reason
--status --since --until --max-seq --limit, or explicit SEQ arguments (replay,
purge). Times are a duration ago (6h, 7d) or RFC 3339.`,
	})
	c.AddCommand(a.dlqLs(), a.dlqStats(), a.dlqShow(), a.dlqReplay(), a.dlqPurge())
	return c
}

// store connects and opens DEADLETTER with an actionable error when it is
// missing.
func (a *App) store(ctx context.Context) (jetstream.JetStream, *deadletter.Store, error) {
	js, err := a.jetStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, err := deadletter.Open(ctx, js)
	if errors.Is(err, deadletter.ErrNoStream) {
		return nil, nil, fmt.Errorf("%w on %s: the deliverer creates it at start-up; is --nats-url / HOOKLINE_NATS_URL Hookline's NATS?", err, redactURLs(a.natsConfig().URL))
	}
	if err != nil {
		return nil, nil, natsErr(err)
	}
	return js, st, nil
}

func noneMatch(w io.Writer, sel deadletter.Selection) {
	if sel.HasFilters() {
		fmt.Fprintln(w, "no dead letters match the selection (widen the filters; hookctl dlq stats counts what there is)")
		return
	}
	fmt.Fprintln(w, "no dead letters: "+stream.DeadLetter+" is empty")
}

func (a *App) dlqLs() *cobra.Command {
	var (
		f              selectionFlags
		asJSON, viaAPI bool
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List dead letters, newest first",
		Example: `  hookctl dlq ls
  hookctl dlq ls --subscription sub_01J… --since 6h
  hookctl dlq ls --type 'order.*' --reason attempts_exhausted --status 5xx --limit 20
  hookctl dlq ls --since 2026-11-28T06:00:00Z --until 2026-11-28T12:00:00Z --json
  HOOKLINE_API_TOKEN=… hookctl dlq ls --api --subscription sub_01J… --since 6h`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			sel, err := f.selection(nil)
			if err != nil {
				return err
			}
			if viaAPI {
				return a.dlqLsAPI(c.Context(), &f, asJSON)
			}
			_, st, err := a.store(c.Context())
			if err != nil {
				return err
			}
			entries, matched, err := st.Latest(c.Context(), sel)
			if err != nil {
				return natsErr(err)
			}
			if asJSON {
				list := make([]any, len(entries))
				for i, e := range entries {
					list[i] = pj(e.Record)
				}
				return writeJSON(a.io.Out, map[string]any{"dead_letters": list, "matched": matched})
			}
			if len(entries) == 0 {
				noneMatch(a.io.Err, sel)
				return nil
			}
			tw := table(a.io.Out)
			row(tw, "SEQ", "DEAD-LETTERED", "TENANT", "SUBSCRIPTION", "EVENT-TYPE", "REASON", "STATUS", "ATTEMPTS", "EVENT-ID")
			for _, e := range entries {
				r := e.Record
				row(tw, r.GetSeq(), when(e.Time()), r.GetTenant(), r.GetSubscriptionId(), r.GetEventType(), r.GetReason(), status(r.GetLastStatus()), r.GetAttempts(), r.GetEventId())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if matched > len(entries) {
				fmt.Fprintf(a.io.Err, "showing the newest %d of %d; --limit 0 shows all\n", len(entries), matched)
			}
			return nil
		},
	}
	f.register(c, 100, "show at most this many, the newest (0: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document {dead_letters: [DeadLetter…], matched: N}")
	c.Flags().BoolVar(&viaAPI, "api", false, "read through the producer API (--api-url, HOOKLINE_API_TOKEN) instead of NATS: "+
		"no NATS credentials needed, a tenant-bound token sees its tenant only; --json prints {dead_letters: [the API's items]}")
	return c
}

// dlqLsAPI lists through GET /v1/dead-letters, newest first, following
// next_cursor until --limit entries (0: all).
func (a *App) dlqLsAPI(ctx context.Context, f *selectionFlags, asJSON bool) error {
	if f.maxSeq > 0 {
		return usageErr(errors.New("--max-seq is not a filter of the API: leave it out with --api"))
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"tenant": f.tenant, "subscription_id": f.subscription, "type": strings.Join(f.types, ","),
		"reason": strings.Join(f.reasons, ","), "status": f.status, "since": f.since.Absolute(), "until": f.until.Absolute()} {
		if v != "" {
			q.Set(k, v)
		}
	}
	type item struct {
		Seq            uint64     `json:"seq"`
		DeadLetteredAt *time.Time `json:"dead_lettered_at"`
		Tenant         string     `json:"tenant"`
		SubscriptionID string     `json:"subscription_id"`
		EventType      string     `json:"event_type"`
		Reason         string     `json:"reason"`
		LastStatus     int32      `json:"last_status"`
		Attempts       uint32     `json:"attempts"`
		EventID        string     `json:"event_id"`
	}
	raws, err := apiList(ctx, api, "/v1/dead-letters", q, "dead_letters", f.limit)
	if err != nil {
		return err
	}
	items, err := decodeItems[item](raws, "dead letter")
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(a.io.Out, map[string]any{"dead_letters": raws})
	}
	if len(items) == 0 {
		fmt.Fprintln(a.io.Err, "no dead letters match")
		return nil
	}
	tw := table(a.io.Out)
	row(tw, "SEQ", "DEAD-LETTERED", "TENANT", "SUBSCRIPTION", "EVENT-TYPE", "REASON", "STATUS", "ATTEMPTS", "EVENT-ID")
	for _, it := range items {
		var at time.Time
		if it.DeadLetteredAt != nil {
			at = *it.DeadLetteredAt
		}
		row(tw, it.Seq, when(at), it.Tenant, it.SubscriptionID, it.EventType, it.Reason, status(it.LastStatus), it.Attempts, it.EventID)
	}
	return tw.Flush()
}

type countRow struct {
	Tenant         string `json:"tenant,omitempty"`
	SubscriptionID string `json:"subscription_id,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Status         *int32 `json:"last_status,omitempty"`
	Count          int    `json:"count"`
	Oldest         string `json:"oldest,omitempty"`
	Newest         string `json:"newest,omitempty"`
}

func (a *App) dlqStats() *cobra.Command {
	var (
		f      selectionFlags
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "stats",
		Short: "Count dead letters by subscription, reason and last status",
		Example: `  hookctl dlq stats
  hookctl dlq stats --since 24h --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			sel, err := f.selection(nil)
			if err != nil {
				return err
			}
			_, st, err := a.store(c.Context())
			if err != nil {
				return err
			}
			entries, _, err := st.Select(c.Context(), sel)
			if err != nil {
				return natsErr(err)
			}
			bySub, byReason, byStatus := map[[2]string]*countRow{}, map[string]*countRow{}, map[int32]*countRow{}
			for _, e := range entries {
				r := e.Record
				k := [2]string{r.GetTenant(), r.GetSubscriptionId()}
				row := bySub[k]
				if row == nil {
					row = &countRow{Tenant: k[0], SubscriptionID: k[1], Oldest: when(e.Time())}
					bySub[k] = row
				}
				row.Count++
				row.Newest = when(e.Time())
				if byReason[r.GetReason()] == nil {
					byReason[r.GetReason()] = &countRow{Reason: r.GetReason()}
				}
				byReason[r.GetReason()].Count++
				if byStatus[r.GetLastStatus()] == nil {
					s := r.GetLastStatus()
					byStatus[s] = &countRow{Status: &s}
				}
				byStatus[r.GetLastStatus()].Count++
			}
			subs, reasons, statuses := sorted(bySub), sorted(byReason), sorted(byStatus)
			if asJSON {
				return writeJSON(a.io.Out, map[string]any{
					"total": len(entries), "by_subscription": subs, "by_reason": reasons, "by_status": statuses,
				})
			}
			if len(entries) == 0 {
				noneMatch(a.io.Err, sel)
				return nil
			}
			fmt.Fprintf(a.io.Out, "%s, oldest %s, newest %s\n\n", plural(len(entries), "dead letter", "dead letters"), when(entries[0].Time()), when(entries[len(entries)-1].Time()))
			tw := table(a.io.Out)
			row(tw, "TENANT", "SUBSCRIPTION", "COUNT", "OLDEST", "NEWEST")
			for _, r := range subs {
				row(tw, r.Tenant, r.SubscriptionID, r.Count, r.Oldest, r.Newest)
			}
			row(tw)
			row(tw, "REASON", "COUNT")
			for _, r := range reasons {
				row(tw, orDash(r.Reason), r.Count)
			}
			row(tw)
			row(tw, "LAST-STATUS", "COUNT")
			for _, r := range statuses {
				row(tw, status(*r.Status), r.Count)
			}
			return tw.Flush()
		},
	}
	f.register(c, 0, "count at most this many, the oldest (0: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document {total, by_subscription, by_reason, by_status}")
	return c
}

// sorted orders count rows by count (descending), then by key.
func sorted[K comparable](m map[K]*countRow) []*countRow {
	out := make([]*countRow, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return fmt.Sprint(out[i].Tenant, out[i].SubscriptionID, out[i].Reason, out[i].Status) <
			fmt.Sprint(out[j].Tenant, out[j].SubscriptionID, out[j].Reason, out[j].Status)
	})
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// headerOrder is the contract order of a dead letter's headers for show.
var headerOrder = []string{
	stream.HeaderEventID, stream.HeaderTenant, stream.HeaderEventType, stream.HeaderOccurredAt,
	stream.HeaderSubscriptionID, stream.HeaderReason, stream.HeaderAttempt, stream.HeaderFirstAttemptAt,
	stream.HeaderLastAttemptAt, stream.HeaderDeadLetteredAt, stream.HeaderLastStatus, stream.HeaderLastError,
	stream.HeaderOriginalSubject, stream.HeaderReplay, stream.HeaderTest, stream.HeaderMsgID,
}

func (a *App) dlqShow() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show SEQ",
		Short: "Show one dead letter: every header, the body, and its attempt history",
		Example: `  hookctl dlq show 42
  hookctl dlq show 42 --json | jq .body`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var f selectionFlags
			sel, err := f.selection(args)
			if err != nil {
				return err
			}
			seq := sel.Seqs[0]
			js, st, err := a.store(c.Context())
			if err != nil {
				return err
			}
			e, err := st.Get(c.Context(), seq)
			if errors.Is(err, deadletter.ErrNotFound) {
				return notFoundErr(fmt.Errorf("no dead letter with seq %d in %s: it was replayed or purged, it expired, or it never existed (hookctl dlq ls lists what there is)", seq, stream.DeadLetter))
			}
			if err != nil {
				return natsErr(err)
			}
			r := e.Record
			atts, skipped, attErr := attempt.List(c.Context(), js, attempt.Query{Tenant: r.GetTenant(), Subscription: r.GetSubscriptionId(), EventID: r.GetEventId()})
			if errors.Is(attErr, attempt.ErrNoStream) {
				atts, attErr = nil, nil
			}
			if attErr != nil {
				return natsErr(attErr)
			}
			a.warnSkipped(skipped)
			if asJSON {
				list := make([]any, len(atts))
				for i, at := range atts {
					list[i] = pj(at.Attempt)
				}
				return writeJSON(a.io.Out, map[string]any{
					"dead_letter": pj(r),
					"headers":     e.Header,
					"body":        bodyJSON(r.GetData()),
					"attempts":    list,
				})
			}
			w := a.io.Out
			fmt.Fprintf(w, "Dead letter %d in %s\n\nHeaders:\n", seq, stream.DeadLetter)
			tw := table(w)
			seen := map[string]bool{}
			for _, k := range headerOrder {
				seen[k] = true
				for _, v := range e.Header.Values(k) {
					row(tw, "  "+k+":", v)
				}
			}
			var rest []string
			for k := range e.Header {
				if !seen[k] {
					rest = append(rest, k)
				}
			}
			sort.Strings(rest)
			for _, k := range rest {
				for _, v := range e.Header.Values(k) {
					row(tw, "  "+k+":", v)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			kind, text := prettyBody(r.GetData())
			fmt.Fprintf(w, "\nBody (%s, %d bytes):\n%s\n", kind, len(r.GetData()), text)
			fmt.Fprintf(w, "\nAttempts (%d):\n", len(atts))
			if err := a.attemptTable(w, atts); err != nil {
				return err
			}
			fmt.Fprintf(w, "\nReplay it: hookctl dlq replay %d --dry-run, then without --dry-run\n", seq)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document {dead_letter, headers, body, attempts}")
	return c
}

func (a *App) attemptTable(w io.Writer, atts []attempt.Record) error {
	if len(atts) == 0 {
		fmt.Fprintln(w, "  none recorded")
		return nil
	}
	tw := table(w)
	row(tw, "STARTED", "EVENT-ID", "ATTEMPT", "STATUS", "OUTCOME", "DURATION", "ERROR-CLASS", "RESPONSE")
	for _, r := range atts {
		at := r.Attempt
		outcome := at.GetOutcome()
		if at.GetReplay() {
			outcome += " (replay)"
		}
		row(tw, when(r.Time), at.GetEventId(), at.GetAttempt(), status(at.GetStatus()), orDash(outcome),
			fmt.Sprintf("%.3fs", at.GetDurationSeconds()), orDash(at.GetErrorClass()), oneLine(firstNonEmpty(at.GetResponseExcerpt(), at.GetError()), 48))
	}
	return tw.Flush()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// connectionArgs are the connection flags given on the command line, for a
// command printed to be run again.
func connectionArgs(c *cobra.Command) []string {
	var out []string
	for _, f := range changedFlags(c) {
		switch f.Name {
		case "nats-url":
			// A password in the URL is not echoed; retype it (or use
			// HOOKLINE_NATS_URL, or --creds).
			out = append(out, "--"+f.Name+"="+shellQuote(redactURLs(f.Value.String())))
		case "creds", "tls-ca", "tls-cert", "tls-key", "connect-timeout":
			out = append(out, "--"+f.Name+"="+shellQuote(f.Value.String()))
		}
	}
	return out
}

func joinCmd(parts ...[]string) string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return strings.Join(all, " ")
}

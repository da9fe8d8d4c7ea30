package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookline/hookline/cmd/hookctl/internal/timeflag"
	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (a *App) attemptsCommand() *cobra.Command {
	var (
		q            attempt.Query
		since, until timeflag.Value
		asJSON       bool
		viaAPI       bool
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
  hookctl attempts --subscription sub_01J… --since 1h --limit 50
  HOOKLINE_API_TOKEN=… hookctl attempts --api --subscription sub_01J… --since 1h`,
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
			if viaAPI {
				return a.attemptsAPI(c.Context(), q, asJSON)
			}
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
	fl.BoolVar(&viaAPI, "api", false, "read through the producer API (--api-url, HOOKLINE_API_TOKEN) instead of NATS: "+
		"no NATS credentials needed, a tenant-bound token sees its tenant only; needs --subscription; --json prints {attempts: [the API's items]}")
	return c
}

// apiAttempt is an attempt as GET /v1/subscriptions/{id}/attempts writes it.
type apiAttempt struct {
	EventID         string     `json:"event_id"`
	Tenant          string     `json:"tenant"`
	EventType       string     `json:"event_type"`
	SubscriptionID  string     `json:"subscription_id"`
	Attempt         uint32     `json:"attempt"`
	StartedAt       *time.Time `json:"started_at"`
	DurationSeconds float64    `json:"duration_seconds"`
	Status          int32      `json:"status"`
	Outcome         string     `json:"outcome"`
	ErrorClass      string     `json:"error_class"`
	Error           string     `json:"error"`
	ResponseExcerpt string     `json:"response_excerpt"`
	Replay          bool       `json:"replay"`
}

func (v apiAttempt) record() attempt.Record {
	r := attempt.Record{Attempt: &hooklinev1.Attempt{
		EventId: v.EventID, Tenant: v.Tenant, EventType: v.EventType, SubscriptionId: v.SubscriptionID, Attempt: v.Attempt,
		DurationSeconds: v.DurationSeconds, Status: v.Status, Outcome: v.Outcome, ErrorClass: v.ErrorClass,
		Error: v.Error, ResponseExcerpt: v.ResponseExcerpt, Replay: v.Replay,
	}}
	if v.StartedAt != nil {
		r.Time = *v.StartedAt
		r.Attempt.StartedAt = timestamppb.New(*v.StartedAt)
	}
	return r
}

// attemptsAPI lists through GET /v1/subscriptions/{id}/attempts, in time
// order as the NATS path does: every page in ascending order, or, with
// --limit, the newest N read newest first; then sorted by start time.
func (a *App) attemptsAPI(ctx context.Context, q attempt.Query, asJSON bool) error {
	switch {
	case q.Subscription == "":
		return usageErr(errors.New("--api reads one subscription's attempts: give --subscription ID"))
	case q.Tenant != "":
		return usageErr(errors.New("--tenant is not a filter of the API (the subscription has one tenant; a tenant-bound token sees its own): leave it out with --api"))
	}
	api, err := a.api()
	if err != nil {
		return err
	}
	v := url.Values{}
	if q.EventID != "" {
		v.Set("event_id", q.EventID)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit == 0 {
		v.Set("order", "asc")
	}
	raws, err := apiList(ctx, api, "/v1/subscriptions/"+url.PathEscape(q.Subscription)+"/attempts", v, "attempts", q.Limit)
	if err != nil {
		return err
	}
	if q.Limit > 0 {
		slices.Reverse(raws)
	}
	items, err := decodeItems[apiAttempt](raws, "attempt")
	if err != nil {
		return err
	}
	// The API pages in stream order; records are stored when their
	// attempt ended (and batched), so time order is a sort.
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return items[i].record().Time.Compare(items[j].record().Time) })
	sortedRaws, sorted := make([]json.RawMessage, len(items)), make([]apiAttempt, len(items))
	for k, i := range order {
		sortedRaws[k], sorted[k] = raws[i], items[i]
	}
	raws, items = sortedRaws, sorted
	if asJSON {
		return writeJSON(a.io.Out, map[string]any{"attempts": raws})
	}
	if len(items) == 0 {
		fmt.Fprintln(a.io.Err, "no attempts match (check the subscription id, --event and --since)")
		return nil
	}
	atts := make([]attempt.Record, len(items))
	for i, it := range items {
		atts[i] = it.record()
	}
	return a.attemptTable(a.io.Out, atts)
}

// warnSkipped reports on stderr each ATTEMPTS record List could not decode.
func (a *App) warnSkipped(skipped []attempt.Skipped) {
	for _, s := range skipped {
		fmt.Fprintf(a.io.Err, "%s seq %d: not an attempt record, skipped (%v)\n", stream.Attempts, s.Seq, s.Err)
	}
}

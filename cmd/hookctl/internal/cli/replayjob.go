package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookline/hookline/cmd/hookctl/internal/producer"
	"github.com/hookline/hookline/cmd/hookctl/internal/timeflag"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/wire"
)

// replayCommand is `hookctl replay`: the producer API's server-side replay
// jobs (POST /v1/replays). A job runs in the producers, not in hookctl:
// it goes on after hookctl exits, survives a producer restart, and needs
// only an API token, no NATS credentials.
func (a *App) replayCommand() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "replay",
		Short: "Server-side replay jobs through the producer API (dead letters, or a back-fill from the event log)",
		Long: `A replay job runs in the producers (POST /v1/replays): it replays each
selected dead letter once (the path hookctl dlq replay takes), or back-fills
one subscription from the event log (what it missed, or everything), paced
by the subscription's own limits. It goes on after hookctl exits and survives
a producer restart. Needs the producer API (--api-url / HOOKLINE_API_URL) and
an admin token (HOOKLINE_API_TOKEN), no NATS credentials.`,
	})
	c.AddCommand(a.replayStart(), a.replayStatus(), a.replayCancel())
	return c
}

// job is the part of the API's ReplayJob hookctl shows.
type job struct {
	ID         string          `json:"id"`
	Source     string          `json:"source"`
	State      string          `json:"state"`
	Filter     json.RawMessage `json:"filter"`
	Mode       string          `json:"mode"`
	Total      int             `json:"total"`
	Done       int             `json:"done"`
	Failed     int             `json:"failed"`
	Gone       int             `json:"gone"`
	Skipped    int             `json:"skipped"`
	Remaining  int             `json:"remaining"`
	PerSecond  float64         `json:"per_second"`
	ETASeconds float64         `json:"eta_seconds"`
	LastError  string          `json:"last_error"`
}

func (a *App) replayStart() *cobra.Command {
	var (
		source, subscription, tenant, status, mode, key string
		types, reasons                                  []string
		since, until                                    timeflag.Value
		rate                                            float64
		all, dryRun, wait, asJSON                       bool
	)
	c := &cobra.Command{
		Use:   "start",
		Short: "Start a replay job (prints its id; --wait follows it to the end)",
		Long: `Start asks the producer API for a replay job.

--source dead-letters (default) replays the dead letters the filters select
(--subscription, --tenant, --type, --reason, --status, --since, --until: the
filters of hookctl dlq ls), or every one with --all.

--source events back-fills --subscription from the event log: the events of
its tenant and types stored between --since and --until, and with --mode
missing (default) only those its delivery state does not say were delivered.

The request carries an Idempotency-Key (--idempotency-key, or a fresh one):
hookctl retries it with the same key when the API does not answer, and
running the command again with the same key starts no second job.`,
		Example: `  hookctl replay start --subscription sub_01J… --since 6h --dry-run
  hookctl replay start --subscription sub_01J… --since 6h --status 5xx --rate 5 --wait
  hookctl replay start --source events --subscription sub_01J… --since 24h --mode missing
  hookctl replay status rpl_01J… --wait`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			body := map[string]any{}
			switch strings.ReplaceAll(source, "-", "_") {
			case "dead_letters":
				body["source"] = "dead_letters"
				if mode != "" {
					return usageErr(errors.New("--mode applies to --source events only"))
				}
				if status != "" {
					if _, err := deadletter.ParseStatuses(status); err != nil {
						return usageErr(err)
					}
				}
				for _, r := range reasons {
					if !slices.Contains(wire.DeadLetterReasons(), r) {
						return usageErr(fmt.Errorf("--reason %q: want one of %s", r, strings.Join(wire.DeadLetterReasons(), ", ")))
					}
				}
				filtered := subscription != "" || tenant != "" || len(types) > 0 || len(reasons) > 0 || status != "" || !since.T.IsZero() || !until.T.IsZero()
				if all && filtered {
					return usageErr(errors.New("--all selects every dead letter: give it without filters"))
				}
				if !all && !filtered {
					return usageErr(errors.New("replay what? give filters (--subscription, --since, …), or --all for every dead letter"))
				}
				set(body, "tenant", tenant)
				set(body, "type", strings.Join(types, ","))
				set(body, "reason", strings.Join(reasons, ","))
				set(body, "status", status)
			case "events":
				body["source"] = "events"
				if subscription == "" {
					return usageErr(errors.New("--source events needs --subscription (the subscription to back-fill)"))
				}
				for name, given := range map[string]bool{"--tenant": tenant != "", "--type": len(types) > 0, "--reason": len(reasons) > 0, "--status": status != "", "--all": all} {
					if given {
						return usageErr(fmt.Errorf("%s applies to --source dead-letters only (a back-fill takes the subscription's tenant and types)", name))
					}
				}
				switch mode {
				case "", "missing", "all":
				default:
					return usageErr(fmt.Errorf("--mode %q: want missing (default) or all", mode))
				}
				set(body, "mode", mode)
			default:
				return usageErr(fmt.Errorf("--source %q: want dead-letters or events", source))
			}
			if !since.T.IsZero() && !until.T.IsZero() && !since.T.Before(until.T) {
				return usageErr(errors.New("--since must be before --until"))
			}
			if rate < 0 || rate > 10000 {
				return usageErr(fmt.Errorf("--rate %g: want 0 (no pacing) to 10000 entries per second", rate))
			}
			if dryRun && wait {
				return usageErr(errors.New("--dry-run starts nothing to --wait for"))
			}
			set(body, "subscription_id", subscription)
			set(body, "since", since.Absolute())
			set(body, "until", until.Absolute())
			body["rate"] = rate
			if dryRun {
				body["dry_run"] = true
			}
			if key == "" {
				key = newIdempotencyKey()
			} else if len(key) > 255 {
				return usageErr(errors.New("--idempotency-key: at most 255 characters"))
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			b, _ := json.Marshal(body)
			data, hdr, err := postIdempotent(c.Context(), api, "/v1/replays", b, key)
			var p *producer.Problem
			switch {
			case errors.As(err, &p) && p.Type == problemKeyReused:
				return usageErr(fmt.Errorf("%w\n--idempotency-key %s was used for another selection (a relative --since or --until is another time on each run: give RFC 3339 times with a key)", err, key))
			case err != nil && p == nil:
				return fmt.Errorf("%w\nWhether a job started is unknown: run %s to get it without starting a second one", err,
					joinCmd(append([]string{"hookctl", "replay", "start"}, absoluteArgs(c, key)...)))
			case err != nil:
				return err
			}
			if dryRun {
				return a.printDryRun(data, asJSON)
			}
			var j job
			if err := json.Unmarshal(data, &j); err != nil {
				return fmt.Errorf("producer API: unexpected answer: %w", err)
			}
			if !wait {
				if asJSON {
					return writeJSON(a.io.Out, bodyJSON(data))
				}
				verb := "started"
				if hdr.Get("Idempotent-Replayed") == "true" {
					verb = "already started (same --idempotency-key)"
				}
				fmt.Fprintf(a.io.Out, "replay job %s %s: %s\n", j.ID, verb, progressLine(j))
				fmt.Fprintf(a.io.Out, "follow it: hookctl replay status %s --wait; cancel it: hookctl replay cancel %s\n", j.ID, j.ID)
				return nil
			}
			return a.follow(c.Context(), api, j, asJSON)
		},
	}
	fl := c.Flags()
	fl.StringVar(&source, "source", "dead-letters", "dead-letters, or events (a back-fill of --subscription from the event log)")
	fl.StringVar(&subscription, "subscription", "", "only this subscription (required with --source events)")
	fl.StringVar(&tenant, "tenant", "", "dead letters of this tenant only")
	fl.StringSliceVar(&types, "type", nil, "dead letters of these event types only: order.created, order.*, invoice.> (repeat or comma-separate)")
	fl.StringSliceVar(&reasons, "reason", nil, "dead letters with these reasons only: "+strings.Join(wire.DeadLetterReasons(), ", "))
	fl.StringVar(&status, "status", "", "dead letters with this last HTTP status only: 503, 5xx, 429,503, or 0")
	fl.Var(&since, "since", "from this time on: a duration ago (6h, 7d) or RFC 3339 (dead letters: when dead-lettered; events: when stored)")
	fl.Var(&until, "until", "before this time: a duration ago or RFC 3339")
	fl.StringVar(&mode, "mode", "", "--source events: missing (default: skip what the subscription got) or all")
	fl.Float64Var(&rate, "rate", 10, "most entries per second (0: as fast as the deliverers answer)")
	fl.BoolVar(&all, "all", false, "--source dead-letters: every dead letter (needed without filters)")
	fl.BoolVar(&dryRun, "dry-run", false, "show how many would be replayed, and the first ten; start nothing")
	fl.BoolVar(&wait, "wait", false, "follow the job until it ends (Ctrl-C stops following; the job goes on)")
	fl.StringVar(&key, "idempotency-key", "", "the request's Idempotency-Key (default: a fresh one); the same key again starts no second job")
	fl.BoolVar(&asJSON, "json", false, "print the API's JSON answer (with --wait: the job when it ends)")
	return c
}

func set(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "hookctl-" + hex.EncodeToString(b)
}

// problemKeyReused: the Idempotency-Key was used for another request.
const problemKeyReused = "urn:hookline:problem:idempotency-key-reused"

// absoluteArgs are the flags given, relative times made absolute, and the
// Idempotency-Key: the command that asks for the same job again.
func absoluteArgs(c *cobra.Command, key string) []string {
	var out []string
	c.Flags().Visit(func(f *pflag.Flag) {
		sv, isSlice := f.Value.(pflag.SliceValue)
		switch {
		case f.Name == "idempotency-key" || f.Name == "json" || f.Name == "wait":
		case f.Name == "api-url":
			out = append(out, "--api-url="+shellQuote(producer.Redact(f.Value.String())))
		case isSlice:
			out = append(out, "--"+f.Name+"="+shellQuote(strings.Join(sv.GetSlice(), ",")))
		case f.Value.Type() == "time":
			out = append(out, "--"+f.Name+"="+f.Value.(*timeflag.Value).Absolute())
		default:
			out = append(out, "--"+f.Name+"="+shellQuote(f.Value.String()))
		}
	})
	return append(out, "--idempotency-key="+shellQuote(key))
}

// problemInProgress: the first request with the same Idempotency-Key is
// still running.
const problemInProgress = "urn:hookline:problem:idempotency-in-progress"

// postIdempotent posts body with key, again with the same key when the API
// did not answer or answered 503 (at most three tries): the producer runs
// it once.
func postIdempotent(ctx context.Context, api *producer.Client, path string, body []byte, key string) ([]byte, http.Header, error) {
	hdr := http.Header{"Idempotency-Key": {key}}
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-time.After(time.Duration(try) * time.Second):
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		var data []byte
		var got http.Header
		data, got, err = api.DoHeader(ctx, http.MethodPost, path, nil, body, hdr)
		var p *producer.Problem
		if err == nil || (errors.As(err, &p) && p.Status != http.StatusServiceUnavailable && p.Type != problemInProgress) {
			return data, got, err
		}
	}
	return nil, nil, err
}

func (a *App) printDryRun(data []byte, asJSON bool) error {
	if asJSON {
		return writeJSON(a.io.Out, bodyJSON(data))
	}
	var d struct {
		Count  int `json:"count"`
		Sample []struct {
			Seq            uint64 `json:"seq"`
			ID             string `json:"id"`
			EventID        string `json:"event_id"`
			Tenant         string `json:"tenant"`
			SubscriptionID string `json:"subscription_id"`
			EventType      string `json:"event_type"`
			Type           string `json:"type"`
			Reason         string `json:"reason"`
		} `json:"sample"`
		Events []struct {
			Seq    uint64 `json:"seq"`
			ID     string `json:"id"`
			Tenant string `json:"tenant"`
			Type   string `json:"type"`
		} `json:"events"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("producer API: unexpected answer: %w", err)
	}
	fmt.Fprintf(a.io.Out, "dry run: a job would replay %s now; the first (oldest):\n", plural(d.Count, "entry", "entries"))
	tw := table(a.io.Out)
	if len(d.Events) > 0 {
		row(tw, "SEQ", "TENANT", "EVENT-TYPE", "EVENT-ID")
		for _, e := range d.Events {
			row(tw, e.Seq, e.Tenant, e.Type, e.ID)
		}
	} else {
		row(tw, "SEQ", "TENANT", "SUBSCRIPTION", "EVENT-TYPE", "REASON", "EVENT-ID")
		for _, e := range d.Sample {
			row(tw, e.Seq, e.Tenant, e.SubscriptionID, e.EventType, e.Reason, e.EventID)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.io.Out, "nothing was started; run the same command without --dry-run to start the job")
	return nil
}

func progressLine(j job) string {
	s := fmt.Sprintf("%s, %d of %d done", j.State, j.Done, j.Total)
	if j.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped (already delivered)", j.Skipped)
	}
	if j.Failed > 0 {
		s += fmt.Sprintf(", %d failed", j.Failed)
	}
	if j.Gone > 0 {
		s += fmt.Sprintf(", %d gone", j.Gone)
	}
	if j.State == "running" {
		s += fmt.Sprintf(", %d remaining", j.Remaining)
		if j.ETASeconds > 0 {
			s += fmt.Sprintf(" (%.1f/s, about %s left)", j.PerSecond, (time.Duration(j.ETASeconds * float64(time.Second))).Round(time.Second))
		}
	}
	if j.LastError != "" {
		s += "; last error: " + j.LastError
	}
	return s
}

// pollEvery is how often --wait reads a job's progress.
const pollEvery = time.Second

// follow reads the job until it ends, printing its progress when it
// changes. A job that failed, was cancelled or left entries failed is an
// error (exit 1); Ctrl-C stops following, not the job.
func (a *App) follow(ctx context.Context, api *producer.Client, j job, asJSON bool) error {
	msgOut := a.io.Out
	if asJSON {
		msgOut = a.io.Err
	}
	last := ""
	var data []byte
	for {
		if line := progressLine(j); line != last {
			fmt.Fprintf(msgOut, "%s: %s\n", j.ID, line)
			last = line
		}
		if j.State != "running" {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(a.io.Err, "stopped following; job %s goes on in the producers (hookctl replay status %s --wait; hookctl replay cancel %s)\n", j.ID, j.ID, j.ID)
			return ctx.Err()
		case <-time.After(pollEvery):
		}
		var err error
		data, err = api.Do(ctx, http.MethodGet, "/v1/replays/"+url.PathEscape(j.ID), nil, nil)
		if errors.Is(err, context.Canceled) {
			continue // reported at the top of the loop
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &j); err != nil {
			return fmt.Errorf("producer API: unexpected answer: %w", err)
		}
	}
	if asJSON {
		if data == nil {
			data, _ = json.Marshal(j)
		}
		if err := writeJSON(a.io.Out, bodyJSON(data)); err != nil {
			return err
		}
	}
	switch {
	case j.State == "failed":
		return fmt.Errorf("replay job %s failed: %s", j.ID, j.LastError)
	case j.State == "cancelled":
		return fmt.Errorf("replay job %s was cancelled after %d of %d", j.ID, j.Done, j.Total)
	case j.Failed > 0:
		return fmt.Errorf("replay job %s: %d entries were refused by the deliverers and are still dead letters (hookctl dlq ls)", j.ID, j.Failed)
	}
	return nil
}

func jobPath(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return "", usageErr(fmt.Errorf("%q is not a replay job id (rpl_…)", id))
	}
	return "/v1/replays/" + url.PathEscape(id), nil
}

// jobCall sends method to the replay job id (GET: its state, DELETE:
// cancel) and decodes the job the API answers, also returned as sent.
func (a *App) jobCall(ctx context.Context, method, id string) (*producer.Client, job, []byte, error) {
	path, err := jobPath(id)
	if err != nil {
		return nil, job{}, nil, err
	}
	api, err := a.api()
	if err != nil {
		return nil, job{}, nil, err
	}
	data, err := api.Do(ctx, method, path, nil, nil)
	if err != nil {
		return nil, job{}, nil, err
	}
	var j job
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, job{}, nil, fmt.Errorf("producer API: unexpected answer: %w", err)
	}
	return api, j, data, nil
}

func (a *App) replayStatus() *cobra.Command {
	var wait, asJSON bool
	c := &cobra.Command{
		Use:     "status ID",
		Short:   "Show a replay job's state and progress (--wait follows it)",
		Example: "  hookctl replay status rpl_01J…\n  hookctl replay status rpl_01J… --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			api, j, data, err := a.jobCall(c.Context(), http.MethodGet, args[0])
			if err != nil {
				return err
			}
			if wait {
				return a.follow(c.Context(), api, j, asJSON)
			}
			if asJSON {
				return writeJSON(a.io.Out, bodyJSON(data))
			}
			fmt.Fprintf(a.io.Out, "%s (%s): %s\n", j.ID, strings.ReplaceAll(j.Source, "_", " "), progressLine(j))
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "follow the job until it ends")
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) replayCancel() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "cancel ID",
		Short:   "Cancel a running replay job (it stops before its next entry)",
		Example: "  hookctl replay cancel rpl_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			_, j, data, err := a.jobCall(c.Context(), http.MethodDelete, args[0])
			var p *producer.Problem
			if errors.As(err, &p) && p.Status == http.StatusConflict {
				return refusedErr(err) // it has ended already
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.io.Out, bodyJSON(data))
			}
			fmt.Fprintf(a.io.Out, "cancelled %s: %s\n", j.ID, progressLine(j))
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

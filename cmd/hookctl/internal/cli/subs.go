package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func (a *App) subsCommand() *cobra.Command {
	c := group(&cobra.Command{
		Use:     "subs",
		Aliases: []string{"subscriptions"},
		Short:   "Subscriptions, through the producer API",
		Long: `Manage subscriptions through the producer API (--api-url / HOOKLINE_API_URL,
bearer token from HOOKLINE_API_TOKEN).`,
	})
	c.AddCommand(a.subsLs(), a.subsGet(), a.subsCreate(), a.subsUpdate(),
		a.subsSetDisabled("enable", false), a.subsSetDisabled("disable", true),
		a.subsDelete(), a.subsTest(), a.subsRotate(), a.subsStats(), a.subsPolicy())
	return c
}

var decodeJSON = protojson.UnmarshalOptions{DiscardUnknown: true}

// call sends a proto request (nil for none) and returns the raw answer.
func (a *App) call(c *cobra.Command, method, path string, query url.Values, in proto.Message) ([]byte, error) {
	api, err := a.api()
	if err != nil {
		return nil, err
	}
	var body []byte
	if in != nil {
		raw, err := protoJSON.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		// protojson varies its spacing on purpose; send it compact.
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = buf.Bytes()
		if u, ok := in.(*hooklinev1.UpdateSubscriptionRequest); ok {
			if body, err = updateBody(body, u); err != nil {
				return nil, fmt.Errorf("encode request: %w", err)
			}
		}
	}
	return api.Do(c.Context(), method, path, query, body)
}

// printRaw writes an API answer as indented JSON (the --json output of
// the subs and events commands: the API's own document).
func printRaw(w io.Writer, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		return fmt.Errorf("the producer API answered something that is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// subsStats prints GET /v1/subscriptions/{id}/stats.
func (a *App) subsStats() *cobra.Command {
	var (
		window string
		asJSON bool
	)
	c := &cobra.Command{
		Use:     "stats ID",
		Short:   "A subscription's attempts over a window: by outcome, success ratio, latency, last success and failure",
		Example: "  hookctl subs stats sub_01J…\n  hookctl subs stats sub_01J… --window 24h --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			switch window {
			case "15m", "1h", "6h", "24h":
			default:
				return usageErr(fmt.Errorf("--window %q: want 15m, 1h, 6h or 24h", window))
			}
			data, err := a.call(c, http.MethodGet, path+"/stats", url.Values{"window": {window}}, nil)
			if err != nil {
				return err
			}
			if asJSON {
				return printRaw(a.io.Out, data)
			}
			var st struct {
				Attempts          int            `json:"attempts"`
				Raw               map[string]int `json:"outcomes"`
				SuccessRatio      *float64       `json:"success_ratio"`
				P50               float64        `json:"latency_p50_seconds"`
				P99               float64        `json:"latency_p99_seconds"`
				LastSuccessAt     *time.Time     `json:"last_success_at"`
				LastFailureAt     *time.Time     `json:"last_failure_at"`
				LastFailureStatus *int32         `json:"last_failure_status"`
				LastFailureError  string         `json:"last_failure_error"`
				Complete          bool           `json:"complete"`
				CoveredSince      time.Time      `json:"covered_since"`
				Disabled          bool           `json:"disabled"`
				DisabledReason    string         `json:"disabled_reason"`
			}
			if err := json.Unmarshal(data, &st); err != nil {
				return fmt.Errorf("producer API: unexpected answer: %w", err)
			}
			w := a.io.Out
			fmt.Fprintf(w, "last %s: %d attempts (%d success, %d retry, %d dead_letter, %d deferred)\n", window, st.Attempts,
				st.Raw["success"], st.Raw["retry"], st.Raw["dead_letter"], st.Raw["deferred"])
			if st.SuccessRatio != nil {
				fmt.Fprintf(w, "success ratio %.1f%%, latency p50 %.3fs p99 %.3fs\n", *st.SuccessRatio*100, st.P50, st.P99)
			}
			if st.LastSuccessAt != nil {
				fmt.Fprintf(w, "last success %s\n", when(*st.LastSuccessAt))
			}
			if st.LastFailureAt != nil && st.LastFailureStatus != nil {
				fmt.Fprintf(w, "last failure %s: %s %s\n", when(*st.LastFailureAt), status(*st.LastFailureStatus), oneLine(st.LastFailureError, 120))
			}
			if st.Disabled {
				fmt.Fprintf(w, "disabled (%s)\n", st.DisabledReason)
			}
			if !st.Complete {
				fmt.Fprintf(a.io.Err, "the window holds more records than one answer reads: these figures cover %s onwards\n", when(st.CoveredSince))
			}
			return nil
		},
	}
	c.Flags().StringVar(&window, "window", "1h", "15m, 1h, 6h or 24h")
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func subPath(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/?# \t") {
		return "", usageErr(fmt.Errorf("subscription id %q: want an id like sub_01J… (hookctl subs ls lists them)", id))
	}
	return "/v1/subscriptions/" + url.PathEscape(id), nil
}

func (a *App) printSub(w io.Writer, data []byte) error {
	var s hooklinev1.Subscription
	if err := decodeJSON.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("the producer API answered something that is not a Subscription: %w", err)
	}
	tw := table(w)
	row(tw, "id:", s.GetId())
	row(tw, "tenant:", s.GetTenant())
	row(tw, "url:", redactURL(s.GetUrl()))
	row(tw, "event types:", strings.Join(s.GetEventTypes(), ", "))
	state := "enabled"
	if s.GetDisabled() {
		state = "disabled"
		if s.GetDisabledReason() != "" {
			state += " (" + s.GetDisabledReason() + ")"
		}
		if s.GetDisabledAt() != nil {
			state += " since " + when(s.GetDisabledAt().AsTime())
		}
	}
	row(tw, "state:", state)
	if s.GetDescription() != "" {
		row(tw, "description:", s.GetDescription())
	}
	if s.GetMaxInFlight() > 0 {
		row(tw, "max in flight:", s.GetMaxInFlight())
	}
	if s.GetRateLimitPerSecond() > 0 {
		row(tw, "rate limit:", fmt.Sprintf("%g/s, burst %d", s.GetRateLimitPerSecond(), s.GetRateLimitBurst()))
	}
	if s.GetOrdered() {
		row(tw, "ordered:", "yes")
	}
	if f := s.GetPayloadFormat(); f != "" {
		row(tw, "payload format:", f)
	} else {
		row(tw, "payload format:", "raw (not set: created before payload formats)")
	}
	if len(s.GetHeaders()) > 0 {
		row(tw, "headers:", headerNames(s.GetHeaders()))
	}
	if s.GetAuth().GetType() != "" {
		row(tw, "auth:", authSummary(s.GetAuth()))
	}
	if len(s.GetRetrySchedule()) > 0 {
		row(tw, "retry schedule:", strings.Join(s.GetRetrySchedule(), ", "))
	}
	if s.GetAttemptTimeout() != "" {
		row(tw, "attempt timeout:", s.GetAttemptTimeout())
	}
	if s.GetAutoDisableAfter() != "" {
		row(tw, "auto-disable after:", s.GetAutoDisableAfter())
	}
	if s.GetUid() != "" {
		row(tw, "uid:", s.GetUid())
	}
	if len(s.GetMetadata()) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(s.GetMetadata())) {
			kv = append(kv, k+"="+s.GetMetadata()[k])
		}
		row(tw, "metadata:", strings.Join(kv, ", "))
	}
	if s.GetSignatureScheme() != "" {
		row(tw, "signature scheme:", s.GetSignatureScheme())
	}
	if s.GetPublicKey() != "" {
		row(tw, "public key:", s.GetPublicKey())
	}
	if s.GetCreatedAt() != nil {
		row(tw, "created:", when(s.GetCreatedAt().AsTime()))
	}
	if s.GetUpdatedAt() != nil {
		row(tw, "updated:", when(s.GetUpdatedAt().AsTime()))
	}
	if s.GetSecret() != "" {
		// The one-time reveal (create, rotate-secret): the operator asked
		// for it and cannot get it again.
		row(tw, "secret:", s.GetSecret()+"  (shown once: store it now)")
	}
	return tw.Flush()
}

// callSub sends a request (nil for none) whose answer is one Subscription
// and prints it: the API's JSON with asJSON, else the printSub table.
func (a *App) callSub(c *cobra.Command, method, path string, in proto.Message, asJSON bool) error {
	data, err := a.call(c, method, path, nil, in)
	if err != nil {
		return err
	}
	data = maskSubJSON(data)
	if asJSON {
		return printRaw(a.io.Out, data)
	}
	return a.printSub(a.io.Out, data)
}

// redactURL hides the credentials of an endpoint URL (userinfo, api_key,
// token, … query values), whatever the API answered: the API masks them
// already, and an older producer may not.
func redactURL(raw string) string {
	masked, _ := subscription.MaskURL(raw)
	return masked
}

// listPageSize is the page asked of GET /v1/subscriptions (the API's
// maximum): hookctl follows next_cursor until the list ends.
const listPageSize = 500

// listSubs reads every page of the subscription list (at most limit
// subscriptions; 0: all) and returns their raw JSON objects.
func (a *App) listSubs(c *cobra.Command, tenant string, limit int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	cursor := ""
	for {
		q := url.Values{}
		if tenant != "" {
			q.Set("tenant", tenant)
		}
		size := listPageSize
		if limit > 0 && limit-len(out) < size {
			size = limit - len(out)
		}
		q.Set("limit", strconv.Itoa(size))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		data, err := a.call(c, http.MethodGet, "/v1/subscriptions", q, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Subscriptions []json.RawMessage `json:"subscriptions"`
			NextCursor    string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, fmt.Errorf("the producer API answered something that is not a subscription list: %w", err)
		}
		for _, sub := range page.Subscriptions {
			out = append(out, maskSubJSON(sub))
		}
		if page.NextCursor == "" || page.NextCursor == cursor || (limit > 0 && len(out) >= limit) {
			if limit > 0 && len(out) > limit {
				out = out[:limit]
			}
			return out, nil
		}
		cursor = page.NextCursor
	}
}

func (a *App) subsLs() *cobra.Command {
	var (
		tenant string
		limit  int
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List subscriptions",
		Long: `List subscriptions, in id order. Every page of the API's list is read
(--limit N stops after N).`,
		Example: "  hookctl subs ls --tenant acme\n  hookctl subs ls --tenant acme --limit 20 --json",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr(fmt.Errorf("--limit %d: want 0 (all) or more", limit))
			}
			subs, err := a.listSubs(c, tenant, limit)
			if err != nil {
				return err
			}
			if asJSON {
				doc, err := json.Marshal(map[string][]json.RawMessage{"subscriptions": append([]json.RawMessage{}, subs...)})
				if err != nil {
					return err
				}
				return printRaw(a.io.Out, doc)
			}
			if len(subs) == 0 {
				fmt.Fprintln(a.io.Err, "no subscriptions")
				return nil
			}
			tw := table(a.io.Out)
			row(tw, "ID", "TENANT", "STATE", "EVENT-TYPES", "URL", "DESCRIPTION")
			for _, raw := range subs {
				var s hooklinev1.Subscription
				if err := decodeJSON.Unmarshal(raw, &s); err != nil {
					return fmt.Errorf("the producer API answered something that is not a subscription list: %w", err)
				}
				state := "enabled"
				if s.GetDisabled() {
					state = "disabled"
				}
				row(tw, s.GetId(), s.GetTenant(), state, strings.Join(s.GetEventTypes(), ","), redactURL(s.GetUrl()), oneLine(s.GetDescription(), 40))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
	c.Flags().IntVar(&limit, "limit", 0, "list at most this many (0: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the subscriptions as one JSON document {\"subscriptions\": […]}")
	return c
}

func (a *App) subsGet() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "get ID",
		Short:   "Show one subscription",
		Example: "  hookctl subs get sub_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			return a.callSub(c, http.MethodGet, path, nil, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) subsCreate() *cobra.Command {
	var (
		req      hooklinev1.CreateSubscriptionRequest
		asJSON   bool
		headers  []string
		metadata []string
		authFile string
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a subscription (prints its signing secret once)",
		Example: `  hookctl subs create --tenant acme --url https://example.com/hooks --type 'order.*' --type invoice.paid
  hookctl subs create --tenant acme --url https://example.com/hooks --type '>' --rate-limit 20 --max-in-flight 4`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var missing []string
			if req.Tenant == "" {
				missing = append(missing, "--tenant")
			}
			if req.Url == "" {
				missing = append(missing, "--url")
			}
			if len(req.EventTypes) == 0 {
				missing = append(missing, "--type")
			}
			if len(missing) > 0 {
				return usageErr(fmt.Errorf("create needs %s", strings.Join(missing, ", ")))
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			req.Headers = h
			if req.Metadata, err = parseMetadata(metadata); err != nil {
				return err
			}
			if authFile != "" {
				if req.Auth, err = readAuth(authFile, c.InOrStdin()); err != nil {
					return err
				}
			}
			return a.callSub(c, http.MethodPost, "/v1/subscriptions", &req, asJSON)
		},
	}
	fl := c.Flags()
	fl.StringVar(&req.Tenant, "tenant", "", "the tenant whose events it receives (required)")
	fl.StringVar(&req.Url, "url", "", "the http(s) endpoint (required)")
	fl.StringSliceVar(&req.EventTypes, "type", nil, "event type filters: order.created, order.*, invoice.>, > (required; repeat or comma-separate)")
	fl.StringVar(&req.Description, "description", "", "a note for people")
	fl.Uint32Var(&req.MaxInFlight, "max-in-flight", 0, "most attempts in flight at once (0: the default)")
	fl.Float64Var(&req.RateLimitPerSecond, "rate-limit", 0, "most requests per second (0: unlimited)")
	fl.Uint32Var(&req.RateLimitBurst, "rate-limit-burst", 0, "burst of the rate limit")
	fl.StringVar(&req.SignatureScheme, "signature-scheme", "", "v1 (HMAC-SHA256, default) or v1a (ed25519)")
	fl.BoolVar(&req.Ordered, "ordered", false, "deliver one event at a time, in publish order")
	fl.StringVar(&req.PayloadFormat, "payload-format", "", "envelope (default: {id,type,timestamp,data}) or raw (the event's data alone)")
	fl.StringArrayVar(&headers, "header", nil, "a custom header \"Name: value\" sent on every attempt (repeat; write-only)")
	fl.StringSliceVar(&req.RetrySchedule, "retry-schedule", nil, "delay before each attempt, e.g. 0s,5s,5m (default: the tenant's, else the deliverer's)")
	fl.StringVar(&req.AttemptTimeout, "attempt-timeout", "", "one attempt's timeout, e.g. 10s (default: the tenant's, else the deliverer's)")
	fl.StringVar(&req.AutoDisableAfter, "auto-disable-after", "", "auto-disable after failing this long, 0s: never (default: the tenant's, else the deliverer's)")
	fl.StringVar(&req.Uid, "uid", "", "an external id, unique within the tenant")
	fl.StringArrayVar(&metadata, "metadata", nil, "a label key=value (repeat)")
	fl.StringVar(&authFile, "auth-file", "", "endpoint authentication: a file (- for stdin) holding the API's auth object, e.g. {\"type\":\"oauth2_client_credentials\",…} (write-only secrets)")
	fl.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) subsUpdate() *cobra.Command {
	var (
		urlV, description  string
		types              []string
		maxInFlight, burst uint32
		rateLimit          float64
		asJSON             bool
		payloadFormat      string
		headers            []string
		clearHeaders       bool
		schedule           []string
		timeout, disable   string
		uid                string
		metadata           []string
		authFile           string
		clearAuth          bool
	)
	c := &cobra.Command{
		Use:   "update ID",
		Short: "Change a subscription (only the flags given)",
		Example: `  hookctl subs update sub_01J… --url https://new.example.com/hooks
  hookctl subs update sub_01J… --type 'order.*' --rate-limit 5`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			req := &hooklinev1.UpdateSubscriptionRequest{}
			fl := c.Flags()
			if fl.Changed("url") {
				req.Url = &urlV
			}
			if fl.Changed("description") {
				req.Description = &description
			}
			if fl.Changed("type") {
				req.EventTypes = types
			}
			if fl.Changed("max-in-flight") {
				req.MaxInFlight = &maxInFlight
			}
			if fl.Changed("rate-limit") {
				req.RateLimitPerSecond = &rateLimit
			}
			if fl.Changed("rate-limit-burst") {
				req.RateLimitBurst = &burst
			}
			if fl.Changed("payload-format") {
				req.PayloadFormat = &payloadFormat
			}
			if fl.Changed("header") || clearHeaders {
				h, err := parseHeaders(headers)
				if err != nil {
					return err
				}
				req.Headers = &hooklinev1.Headers{Values: h}
			}
			if fl.Changed("retry-schedule") {
				req.RetrySchedule = &hooklinev1.Schedule{Delays: slices.DeleteFunc(schedule, func(s string) bool { return s == "" })}
			}
			if fl.Changed("attempt-timeout") {
				req.AttemptTimeout = &timeout
			}
			if fl.Changed("auto-disable-after") {
				req.AutoDisableAfter = &disable
			}
			if fl.Changed("uid") {
				req.Uid = &uid
			}
			if fl.Changed("metadata") {
				m, err := parseMetadata(metadata)
				if err != nil {
					return err
				}
				req.Metadata = &hooklinev1.Metadata{Values: m}
			}
			switch {
			case authFile != "" && clearAuth:
				return usageErr(errors.New("--auth-file and --clear-auth: give one"))
			case authFile != "":
				if req.Auth, err = readAuth(authFile, c.InOrStdin()); err != nil {
					return err
				}
			case clearAuth:
				req.Auth = &hooklinev1.EndpointAuth{}
			}
			if proto.Size(req) == 0 && !fl.Changed("description") && req.Headers == nil && req.RetrySchedule == nil && req.Metadata == nil &&
				req.AttemptTimeout == nil && req.AutoDisableAfter == nil && req.Uid == nil && req.Auth == nil {
				return usageErr(errors.New("nothing to update: give --url, --type, --description, --max-in-flight, --rate-limit, --rate-limit-burst, --payload-format, --header, --clear-headers, --retry-schedule, --attempt-timeout, --auto-disable-after, --uid, --metadata, --auth-file or --clear-auth"))
			}
			return a.callSub(c, http.MethodPatch, path, req, asJSON)
		},
	}
	fl := c.Flags()
	fl.StringVar(&urlV, "url", "", "new endpoint URL")
	fl.StringSliceVar(&types, "type", nil, "new event type filters (replace the old ones)")
	fl.StringVar(&description, "description", "", "new description")
	fl.Uint32Var(&maxInFlight, "max-in-flight", 0, "most attempts in flight at once")
	fl.Float64Var(&rateLimit, "rate-limit", 0, "most requests per second (0: unlimited)")
	fl.Uint32Var(&burst, "rate-limit-burst", 0, "burst of the rate limit")
	fl.StringVar(&payloadFormat, "payload-format", "", "envelope or raw")
	fl.StringArrayVar(&headers, "header", nil, "custom headers \"Name: value\" replacing every stored one (repeat; \"Name: REDACTED\" keeps a stored value)")
	fl.BoolVar(&clearHeaders, "clear-headers", false, "remove every custom header")
	fl.StringSliceVar(&schedule, "retry-schedule", nil, "delay before each attempt, e.g. 0s,5s,5m (\"\": back to the default)")
	fl.StringVar(&timeout, "attempt-timeout", "", "one attempt's timeout (\"\": back to the default)")
	fl.StringVar(&disable, "auto-disable-after", "", "auto-disable window, 0s: never (\"\": back to the default)")
	fl.StringVar(&uid, "uid", "", "external id, unique within the tenant (\"\": remove it)")
	fl.StringArrayVar(&metadata, "metadata", nil, "labels key=value replacing the stored ones (repeat)")
	fl.StringVar(&authFile, "auth-file", "", "endpoint authentication replacing the stored one: a file (- for stdin) holding the API's auth object (a secret of REDACTED keeps the stored one)")
	fl.BoolVar(&clearAuth, "clear-auth", false, "remove the endpoint authentication")
	fl.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) subsSetDisabled(verb string, disabled bool) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     verb + " ID",
		Short:   strings.ToUpper(verb[:1]) + verb[1:] + " a subscription",
		Example: "  hookctl subs " + verb + " sub_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			return a.callSub(c, http.MethodPatch, path, &hooklinev1.UpdateSubscriptionRequest{Disabled: proto.Bool(disabled)}, asJSON)
		},
	}
	if disabled {
		c.Long = "Disable a subscription: it matches no new events, and its pending retries are\ndead-lettered with reason subscription_disabled (replay them after enabling)."
	} else {
		c.Long = "Enable a subscription again. Dead letters parked while it was disabled stay in\nDEADLETTER: replay them with hookctl dlq replay --subscription ID."
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) subsDelete() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a subscription (asks for confirmation)",
		Example: "  hookctl subs delete sub_01J… --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("Delete subscription %s? Its pending deliveries will be dead-lettered.", args[0]), yes); err != nil {
				return err
			}
			if _, err := a.call(c, http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "deleted subscription %s\n", args[0])
			return nil
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return c
}

func (a *App) subsTest() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "test ID",
		Short:   "Send a test event to a subscription's endpoint",
		Example: "  hookctl subs test sub_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			data, err := a.call(c, http.MethodPost, path+"/test", nil, nil)
			if err != nil {
				return err
			}
			if asJSON {
				return printRaw(a.io.Out, data)
			}
			var r hooklinev1.TestSubscriptionResponse
			if err := decodeJSON.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("the producer API answered something that is not a test answer: %w", err)
			}
			fmt.Fprintf(a.io.Out, "test event %s queued for %s\nfollow it: hookctl attempts --subscription %s --event %s\n", r.GetEventId(), args[0], args[0], r.GetEventId())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

func (a *App) subsRotate() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "rotate-secret ID",
		Short: "Rotate a subscription's signing secret (prints the new one once)",
		Long: `Rotate the signing secret. The old secret keeps signing alongside the new one
for an overlap, so receivers can switch without dropping deliveries.`,
		Example: "  hookctl subs rotate-secret sub_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			return a.callSub(c, http.MethodPost, path+"/rotate-secret", nil, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

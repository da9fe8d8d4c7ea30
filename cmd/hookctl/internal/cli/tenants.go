package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func (a *App) tenantsCommand() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "tenants",
		Short: "Tenant records (delivery policy defaults, metadata), through the producer API",
		Long: `A tenant's record holds the delivery policy its subscriptions use unless
they set their own (retry schedule, attempt timeout, auto-disable window,
max in flight, rate limit, payload format at creation) and free-form
metadata. Through the producer API (--api-url / HOOKLINE_API_URL, bearer
token from HOOKLINE_API_TOKEN).`,
	})
	c.AddCommand(a.tenantsGet(), a.tenantsSet())
	return c
}

func tenantPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/?# \t.*>") {
		return "", usageErr(fmt.Errorf("tenant %q: want a tenant name like acme", name))
	}
	return "/v1/tenants/" + url.PathEscape(name), nil
}

func (a *App) tenantsGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get TENANT",
		Short:   "Show a tenant's record (as the API answers it: JSON)",
		Example: "  hookctl tenants get acme",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := tenantPath(args[0])
			if err != nil {
				return err
			}
			data, err := a.call(c, http.MethodGet, path, nil, nil)
			if err != nil {
				return err
			}
			return printRaw(a.io.Out, data)
		},
	}
}

func (a *App) tenantsSet() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "set TENANT --file FILE",
		Short: "Replace a tenant's record: {\"defaults\":{…},\"metadata\":{…}} from a file or - (stdin)",
		Example: `  hookctl tenants set acme --file acme.json
  echo '{"defaults":{"retry_schedule":["0s","10s","1m"],"attempt_timeout":"5s"}}' | hookctl tenants set acme --file -`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := tenantPath(args[0])
			if err != nil {
				return err
			}
			if file == "" {
				return usageErr(errors.New("--file: give the record's JSON file, or - for stdin"))
			}
			raw, err := readInput("--file", file, a.io.In)
			if err != nil {
				return err
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil {
				return usageErr(fmt.Errorf("--file: want a JSON object {\"defaults\":{…},\"metadata\":{…}}: %w", err))
			}
			var body bytes.Buffer
			if err := json.Compact(&body, raw); err != nil {
				return usageErr(fmt.Errorf("--file: %w", err))
			}
			api, err := a.api()
			if err != nil {
				return err
			}
			data, err := api.Do(c.Context(), http.MethodPut, path, nil, body.Bytes())
			if err != nil {
				return err
			}
			return printRaw(a.io.Out, data)
		},
	}
	c.Flags().StringVar(&file, "file", "", "the record's JSON: a file, or - for stdin")
	return c
}

// subsPolicy shows where each value of a subscription's delivery policy
// comes from.
func (a *App) subsPolicy() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "policy ID",
		Short:   "The delivery policy a subscription is delivered with, and where each value comes from (subscription, tenant, environment)",
		Example: "  hookctl subs policy sub_01J…",
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := subPath(args[0])
			if err != nil {
				return err
			}
			data, err := a.call(c, http.MethodGet, path+"/effective-policy", nil, nil)
			if err != nil {
				return err
			}
			if asJSON {
				return printRaw(a.io.Out, data)
			}
			type sourced struct {
				Value  json.RawMessage `json:"value"`
				Source string          `json:"source"`
			}
			var p struct {
				RetrySchedule struct {
					Value  []string `json:"value"`
					Source string   `json:"source"`
				} `json:"retry_schedule"`
				AttemptTimeout   sourced `json:"attempt_timeout"`
				AutoDisableAfter sourced `json:"auto_disable_after"`
				MaxInFlight      sourced `json:"max_in_flight"`
				RateLimit        struct {
					PerSecond float64 `json:"per_second"`
					Burst     uint32  `json:"burst"`
					Source    string  `json:"source"`
				} `json:"rate_limit"`
				PayloadFormat sourced `json:"payload_format"`
			}
			if err := json.Unmarshal(data, &p); err != nil {
				return fmt.Errorf("producer API: unexpected answer: %w", err)
			}
			text := func(r json.RawMessage) string {
				var s string
				if json.Unmarshal(r, &s) == nil {
					return s
				}
				return string(r)
			}
			inFlight := text(p.MaxInFlight.Value)
			if inFlight == "0" {
				inFlight = "adaptive"
			}
			rate := "unlimited"
			if p.RateLimit.PerSecond > 0 {
				rate = fmt.Sprintf("%g/s", p.RateLimit.PerSecond)
				if p.RateLimit.Burst > 0 {
					rate += fmt.Sprintf(", burst %d", p.RateLimit.Burst)
				}
			}
			w := a.io.Out
			row := func(name, value, source string) { fmt.Fprintf(w, "%-19s %-40s %s\n", name, value, source) }
			row("retry_schedule", strings.Join(p.RetrySchedule.Value, ","), p.RetrySchedule.Source)
			row("attempt_timeout", text(p.AttemptTimeout.Value), p.AttemptTimeout.Source)
			row("auto_disable_after", text(p.AutoDisableAfter.Value), p.AutoDisableAfter.Source)
			row("max_in_flight", inFlight, p.MaxInFlight.Source)
			row("rate_limit", rate, p.RateLimit.Source)
			row("payload_format", text(p.PayloadFormat.Value), p.PayloadFormat.Source)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return c
}

package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// parseHeaders reads --header values, "Name: value" each. The API judges
// names and values; this only splits them.
func parseHeaders(flags []string) (map[string]string, error) {
	out := make(map[string]string, len(flags))
	for _, f := range flags {
		name, value, ok := strings.Cut(f, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			// The value may be a credential: never echo it.
			return nil, usageErr(fmt.Errorf("--header: want \"Name: value\" (got %d characters without a name and a colon)", len(f)))
		}
		out[name] = value
	}
	return out, nil
}

// updateBody is the JSON of a PATCH: the API takes headers as a plain
// object, where the proto request wraps them (to tell absent from empty).
func updateBody(raw []byte, req *hooklinev1.UpdateSubscriptionRequest) ([]byte, error) {
	if req.GetHeaders() == nil && req.GetRetrySchedule() == nil && req.GetMetadata() == nil {
		return raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	// The API takes a plain object or list where the proto wraps one (to
	// tell "absent" from "empty").
	flat := func(name string, v any) error {
		b, err := json.Marshal(v)
		m[name] = b
		return err
	}
	if req.GetHeaders() != nil {
		if err := flat("headers", orEmpty(req.GetHeaders().GetValues())); err != nil {
			return nil, err
		}
	}
	if req.GetMetadata() != nil {
		if err := flat("metadata", orEmpty(req.GetMetadata().GetValues())); err != nil {
			return nil, err
		}
	}
	if req.GetRetrySchedule() != nil {
		d := req.GetRetrySchedule().GetDelays()
		if d == nil {
			d = []string{}
		}
		if err := flat("retry_schedule", d); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// parseMetadata reads --metadata key=value flags.
func parseMetadata(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr(fmt.Errorf("--metadata %q: want key=value", kv))
		}
		out[k] = v
	}
	return out, nil
}

// maskSubJSON hides custom header values and endpoint authentication
// secrets in a subscription object, whatever the API answered (it masks
// them; an older producer may not). An object with nothing in clear is
// returned as it was.
func maskSubJSON(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	changed := maskAuthJSON(m)
	var h map[string]string
	if json.Unmarshal(m["headers"], &h) == nil && len(h) > 0 {
		for _, v := range h {
			if v != subscription.Redacted {
				b, _ := json.Marshal(subscription.MaskHeaders(h))
				m["headers"], changed = b, true
				break
			}
		}
	}
	if !changed {
		return raw
	}
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

// headerNames lists the custom header names, sorted, values hidden.
func headerNames(h map[string]string) string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n+": "+subscription.Redacted)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hookline/hookline/cmd/hookctl/internal/producer"
)

// apiPage is the most one request of a list asks for (the API's maximum).
const apiPage = 500

// apiList reads a list of the producer API (GET path?q, its items under
// key) page by page, following next_cursor, until limit items (0: all),
// and returns the items as the API wrote them.
func apiList(ctx context.Context, api *producer.Client, path string, q url.Values, key string, limit int) ([]json.RawMessage, error) {
	q = cloneValues(q)
	items := []json.RawMessage{}
	for {
		page := apiPage
		if limit > 0 {
			page = min(page, limit-len(items))
		}
		q.Set("limit", strconv.Itoa(page))
		data, err := api.Do(ctx, http.MethodGet, path, q, nil)
		if err != nil {
			return nil, err
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("producer API: unexpected answer: %w", err)
		}
		var list []json.RawMessage
		if err := json.Unmarshal(p[key], &list); err != nil {
			return nil, fmt.Errorf("producer API: unexpected %s: %w", key, err)
		}
		items = append(items, list...)
		var next string
		if raw, ok := p["next_cursor"]; ok {
			if err := json.Unmarshal(raw, &next); err != nil {
				return nil, fmt.Errorf("producer API: unexpected next_cursor: %w", err)
			}
		}
		if next == "" || (limit > 0 && len(items) >= limit) {
			return items, nil
		}
		q.Set("cursor", next)
	}
}

// decodeItems decodes each raw item into a T, naming what on failure.
func decodeItems[T any](raws []json.RawMessage, what string) ([]T, error) {
	out := make([]T, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			return nil, fmt.Errorf("producer API: unexpected %s: %w", what, err)
		}
	}
	return out, nil
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

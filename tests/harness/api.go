package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"
)

// API is a client of the producer's /v1 API.
type API struct {
	Base   string
	Client *http.Client
}

// NewAPI returns a client of the producer at base (http://host:port).
func NewAPI(base string) *API {
	return &API{Base: base, Client: &http.Client{Timeout: 15 * time.Second}}
}

// Event is the body of POST /v1/events.
type Event struct {
	ID     string          `json:"id,omitempty"`
	Tenant string          `json:"tenant"`
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
	// OrderingKey is sent as ordering_key when set.
	OrderingKey string `json:"ordering_key,omitempty"`
}

// Published is one entry of a publish answer.
type Published struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// Subscription is the subset of the subscription record tests read.
type Subscription struct {
	ID          string   `json:"id"`
	Tenant      string   `json:"tenant"`
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	Disabled    bool     `json:"disabled"`
	Secret      string   `json:"secret"`
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// Do sends a JSON request and decodes a JSON answer into out (when not nil).
// A status outside 2xx is a *StatusError.
func (a *API) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Method: method, Path: path, Status: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}

// Publish posts one event and returns the id the producer acknowledged.
func (a *API) Publish(ctx context.Context, e Event) (Published, error) {
	var p Published
	err := a.Do(ctx, http.MethodPost, "/v1/events", e, &p)
	return p, err
}

// PublishBatch posts up to 500 events; the answer is in request order.
func (a *API) PublishBatch(ctx context.Context, events []Event) ([]Published, error) {
	var out struct {
		Events []Published `json:"events"`
	}
	if err := a.Do(ctx, http.MethodPost, "/v1/events/batch", map[string]any{"events": events}, &out); err != nil {
		return nil, err
	}
	if len(out.Events) != len(events) {
		return nil, fmt.Errorf("batch of %d answered with %d entries", len(events), len(out.Events))
	}
	return out.Events, nil
}

// CreateSubscription posts a subscription and returns it with its secret;
// extra fields (ordered, max_in_flight, …) are added to the body.
func (a *API) CreateSubscription(ctx context.Context, tenant, url string, eventTypes []string, extra ...map[string]any) (Subscription, error) {
	var s Subscription
	body := map[string]any{"tenant": tenant, "url": url, "event_types": eventTypes}
	for _, e := range extra {
		maps.Copy(body, e)
	}
	err := a.Do(ctx, http.MethodPost, "/v1/subscriptions", body, &s)
	return s, err
}

// UpdateSubscription patches a subscription with the given fields.
func (a *API) UpdateSubscription(ctx context.Context, id string, patch map[string]any) (Subscription, error) {
	var s Subscription
	err := a.Do(ctx, http.MethodPatch, "/v1/subscriptions/"+id, patch, &s)
	return s, err
}

// GetSubscription reads a subscription.
func (a *API) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	var s Subscription
	err := a.Do(ctx, http.MethodGet, "/v1/subscriptions/"+id, nil, &s)
	return s, err
}

// DeleteSubscription deletes a subscription.
func (a *API) DeleteSubscription(ctx context.Context, id string) error {
	return a.Do(ctx, http.MethodDelete, "/v1/subscriptions/"+id, nil, nil)
}

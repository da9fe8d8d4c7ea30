// Package producer is hookctl's client of the producer API: subscriptions
// and event publishing over REST/JSON (proto3 JSON, snake_case names), with
// errors as application/problem+json.
package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the producer API.
type Client struct {
	// BaseURL is e.g. http://localhost:8080.
	BaseURL *url.URL
	// Token, when set, is sent as "Authorization: Bearer <token>". It never
	// appears in an error.
	Token string
	HTTP  *http.Client
}

// New parses baseURL. The URL must be http or https with a host.
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("producer API URL %q: want http(s)://host[:port] (set --api-url or HOOKLINE_API_URL)", Redact(baseURL))
	}
	return &Client{BaseURL: u, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Problem is an RFC 9457 error answer (application/problem+json).
type Problem struct {
	Type   string          `json:"type"`
	Title  string          `json:"title"`
	Status int             `json:"status"`
	Detail string          `json:"detail"`
	Errors json.RawMessage `json:"errors,omitempty"`
	// IDs are the event ids of a publish that was not (fully) accepted:
	// publishing again with them stores nothing twice.
	IDs []string `json:"ids,omitempty"`
}

// Error is the detail, then the field errors, one per line.
func (p *Problem) Error() string {
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	if msg == "" {
		msg = http.StatusText(p.Status)
	}
	msg = fmt.Sprintf("producer API: %s (HTTP %d)", msg, p.Status)
	for _, fe := range fieldErrors(p.Errors) {
		if fe != p.Detail {
			msg += "\n  " + fe
		}
	}
	if len(p.IDs) > 0 {
		ids := p.IDs
		more := ""
		if len(ids) > 20 {
			ids, more = ids[:20], fmt.Sprintf(" … and %d more", len(p.IDs)-20)
		}
		msg += "\n  event ids (publish again with these ids and nothing is stored twice): " + strings.Join(ids, ", ") + more
	}
	return msg
}

// fieldErrors renders "errors" whatever its shape: a list of strings, of
// {field|pointer|name, message|detail|reason} objects, or a field → message
// map.
func fieldErrors(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		var out []string
		for _, item := range list {
			var s string
			if json.Unmarshal(item, &s) == nil {
				out = append(out, s)
				continue
			}
			var m map[string]any
			if json.Unmarshal(item, &m) == nil {
				field := firstString(m, "field", "pointer", "name", "path")
				text := firstString(m, "message", "detail", "reason", "description")
				if field != "" {
					out = append(out, field+": "+text)
				} else {
					out = append(out, text)
				}
				continue
			}
			out = append(out, string(item))
		}
		return out
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) == nil {
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s: %v", k, v))
		}
		return out
	}
	return []string{string(raw)}
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// ErrUnreachable wraps a transport error: the API did not answer.
var ErrUnreachable = errors.New("producer API unreachable")

// Do sends body (JSON, may be nil) to path with query and returns the answer
// body of a 2xx. A non-2xx answer is returned as *Problem (synthesised when
// the body is not problem+json); a transport error wraps ErrUnreachable.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte) ([]byte, error) {
	data, _, err := c.DoHeader(ctx, method, path, query, body, nil)
	return data, err
}

// DoHeader is Do with request headers added (e.g. Idempotency-Key), and
// the answer's headers returned with a 2xx body.
func (c *Client) DoHeader(ctx context.Context, method, path string, query url.Values, body []byte, hdr http.Header) ([]byte, http.Header, error) {
	u := c.BaseURL.JoinPath(path)
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "hookctl")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is printed once, redacted, below
		}
		return nil, nil, fmt.Errorf("%w at %s (check --api-url / HOOKLINE_API_URL and that the producer is running): %v", ErrUnreachable, Redact(c.BaseURL.String()), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return data, resp.Header, nil
	}
	p := &Problem{}
	if json.Unmarshal(data, p) != nil || (p.Detail == "" && p.Title == "") {
		p = &Problem{Status: resp.StatusCode, Detail: fmt.Sprintf("%s %s answered %s", method, path, resp.Status)}
		if excerpt := strings.TrimSpace(string(data)); excerpt != "" && len(excerpt) <= 200 {
			p.Detail += ": " + excerpt
		}
	}
	if p.Status == 0 {
		p.Status = resp.StatusCode
	}
	return nil, nil, p
}

// Redact hides the password of a URL's userinfo (and tolerates a string
// that is not a URL).
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}

package producer

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProblemErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		want   []string
	}{
		{"detail and field objects", 422, "application/problem+json",
			`{"title":"Invalid","status":422,"detail":"the subscription is invalid","errors":[{"field":"url","message":"must be https"},{"pointer":"/event_types","detail":"empty"}]}`,
			[]string{"producer API: the subscription is invalid (HTTP 422)", "\n  url: must be https", "\n  /event_types: empty"}},
		{"string errors", 400, "application/problem+json", `{"title":"Bad","status":400,"errors":["tenant is required"]}`,
			[]string{"producer API: Bad (HTTP 400)", "\n  tenant is required"}},
		{"one error, same as the detail", 422, "application/problem+json",
			`{"title":"Unprocessable Entity","status":422,"detail":"url: must be https","errors":[{"field":"url","message":"must be https"}],"ids":["evt_1","evt_2"]}`,
			[]string{"producer API: url: must be https (HTTP 422)\n  event ids (publish again with these ids and nothing is stored twice): evt_1, evt_2"}},
		{"map errors", 400, "application/problem+json", `{"detail":"bad","status":400,"errors":{"url":"required"}}`,
			[]string{"\n  url: required"}},
		{"not problem json", 502, "text/html", `<html>bad gateway</html>`,
			[]string{"producer API: GET /v1/x answered 502 Bad Gateway: <html>bad gateway</html> (HTTP 502)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := New(srv.URL, "tok_secret")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Do(context.Background(), http.MethodGet, "/v1/x", nil, nil)
			var p *Problem
			if !errors.As(err, &p) || p.Status != tc.status {
				t.Fatalf("err %v, want a Problem with status %d", err, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestTokenSentNeverInErrors(t *testing.T) {
	t.Parallel()
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusInternalServerError)
	}))
	c, err := New(srv.URL, "tok_secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(context.Background(), http.MethodGet, "/v1/x", nil, nil)
	if auth != "Bearer tok_secret" {
		t.Fatalf("Authorization %q", auth)
	}
	srv.Close()
	_, err2 := c.Do(context.Background(), http.MethodGet, "/v1/x", nil, nil)
	if !errors.Is(err2, ErrUnreachable) {
		t.Fatalf("closed server: %v, want ErrUnreachable", err2)
	}
	for _, e := range []error{err, err2} {
		if e == nil || strings.Contains(e.Error(), "tok_secret") {
			t.Fatalf("error %v: want an error without the token", e)
		}
	}
}

func TestNewRejectsBadURLAndRedacts(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := New(u, ""); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	_, err := New("ftp://user:hunter2@x", "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v must not show the password", err)
	}
}

package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestListPages: a tenant with more subscriptions than a page lists each
// of them exactly once across pages, in id order; bad limits and cursors
// are refused with a 400 that says what is wrong.
func TestListPages(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var want []string
	for i := range 12 {
		r := e.do("POST", "/v1/subscriptions", fmt.Sprintf(`{"tenant":"acme","url":"https://example.com/%d","event_types":["a"]}`, i))
		expect(t, r, http.StatusCreated)
		want = append(want, r.json(t)["id"].(string))
	}
	expect(t, e.do("POST", "/v1/subscriptions", `{"tenant":"beta","url":"https://example.com/b","event_types":["a"]}`), http.StatusCreated)
	slices.Sort(want)

	var got []string
	cursor, pages := "", 0
	for {
		path := "/v1/subscriptions?tenant=acme&limit=5"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do("GET", path, nil)
		expect(t, r, http.StatusOK)
		var page struct {
			Subscriptions []map[string]any `json:"subscriptions"`
			NextCursor    *string          `json:"next_cursor"`
		}
		if err := jsonUnmarshal(r.Body, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Subscriptions) > 5 {
			t.Fatalf("page %d holds %d subscriptions, limit 5", pages, len(page.Subscriptions))
		}
		for _, s := range page.Subscriptions {
			got = append(got, s["id"].(string))
		}
		if page.NextCursor == nil {
			break
		}
		if *page.NextCursor == "" || pages > 10 {
			t.Fatalf("next_cursor %q after %d pages", *page.NextCursor, pages)
		}
		cursor = *page.NextCursor
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages listed %v, want each of %v once, in order", pages, got, want)
	}

	// Without limit: the default page (100) holds all 12, no next_cursor.
	all := e.do("GET", "/v1/subscriptions?tenant=acme", nil)
	expect(t, all, http.StatusOK)
	if strings.Contains(string(all.Body), "next_cursor") || strings.Count(string(all.Body), `"id":`) != 12 {
		t.Fatalf("default page: %s", all.Body)
	}

	// A page that ends exactly at the last one is the last page.
	first := e.do("GET", "/v1/subscriptions?tenant=acme&limit=12", nil)
	expect(t, first, http.StatusOK)
	if strings.Contains(string(first.Body), "next_cursor") {
		t.Fatalf("a page holding everything has a next_cursor: %s", first.Body)
	}

	acmeCursor := base64.RawURLEncoding.EncodeToString([]byte("c1:acme:" + want[4]))
	for _, tt := range []struct{ query, detail string }{
		{"limit=0", "limit must be a whole number from 1 to 500"},
		{"limit=501", "limit must be a whole number from 1 to 500"},
		{"limit=ten", "limit must be a whole number from 1 to 500"},
		{"limit=-1", "limit must be a whole number from 1 to 500"},
		{"limit=", "limit must be a whole number from 1 to 500"},
		{"limit=5&limit=6", "limit must be a whole number from 1 to 500"},
		{"cursor=", "cursor must be given once"},
		{"cursor=%21%21", "cursor is not a cursor this API returned"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("c1:acme:not an id")), "cursor is not a cursor this API returned"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("c9:acme:"+want[0])), "cursor is not a cursor this API returned"},
	} {
		r := e.do("GET", "/v1/subscriptions?tenant=acme&"+tt.query, nil)
		expect(t, r, http.StatusBadRequest)
		if p := r.json(t); !strings.Contains(fmt.Sprint(p["detail"]), tt.detail) || p["type"] != "urn:hookline:problem:invalid-request" {
			t.Errorf("%s: problem %s, want detail containing %q", tt.query, r.Body, tt.detail)
		}
	}
	// Another tenant's cursor is refused, not silently applied.
	r := e.do("GET", "/v1/subscriptions?tenant=beta&cursor="+acmeCursor, nil)
	expect(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.Body), "another tenant") {
		t.Fatalf("foreign cursor: %s", r.Body)
	}
	// The cursor a client builds from the same rule resumes after that id.
	r = e.do("GET", "/v1/subscriptions?tenant=acme&limit=100&cursor="+acmeCursor, nil)
	expect(t, r, http.StatusOK)
	if strings.Count(string(r.Body), `"id":`) != 7 {
		t.Fatalf("resumed after the fifth: %s", r.Body)
	}
}

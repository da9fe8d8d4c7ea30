package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/subscription"
)

// Stream listings (dead letters, attempts, events) page by stream
// position. Their cursors are opaque to clients: base64url of
// "s1:<listing>:<order>:<seq>:<index>". A position stays valid while new
// data arrives (new messages get higher sequences), and a cursor is
// refused on another listing or order.
const streamCursorVersion = "s1"

// Listing names, in cursors.
const (
	listDeadLetters = "dl"
	listAttempts    = "at"
	listEvents      = "ev"
)

func encodeStreamCursor(listing string, desc bool, p scan.Pos) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%s:%s:%d:%d", streamCursorVersion, listing, order(desc), p.Seq, p.Idx))
}

func order(desc bool) string {
	if desc {
		return "desc"
	}
	return "asc"
}

const badCursor = "query parameter cursor is not a cursor this API returned (pass next_cursor unchanged)"

func decodeStreamCursor(listing string, desc bool, c string) (scan.Pos, *Problem) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return scan.Pos{}, invalid(badCursor)
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 5 || parts[0] != streamCursorVersion {
		return scan.Pos{}, invalid(badCursor)
	}
	seq, err1 := strconv.ParseUint(parts[3], 10, 64)
	idx, err2 := strconv.ParseInt(parts[4], 10, 32)
	if err1 != nil || err2 != nil || seq == 0 || idx < 0 {
		return scan.Pos{}, invalid(badCursor)
	}
	if parts[1] != listing {
		return scan.Pos{}, invalid("query parameter cursor belongs to another listing; start again without cursor")
	}
	if parts[2] != order(desc) {
		return scan.Pos{}, invalid("query parameter cursor was returned for order=" + parts[2] + "; pass the same order with it")
	}
	return scan.Pos{Seq: seq, Idx: int(idx)}, nil
}

// query reads a listing's query string: every parameter at most once (a
// list parameter comma-separated), none unknown.
type query struct {
	v    url.Values
	errs []string
}

func newQuery(r *http.Request, known ...string) *query {
	q := &query{v: r.URL.Query()}
	allowed := map[string]bool{"limit": true, "cursor": true, "order": true}
	for _, k := range known {
		allowed[k] = true
	}
	for k, vs := range q.v {
		switch {
		case !allowed[k]:
			q.fail(fmt.Sprintf("unknown query parameter %s (known: %s)", k, strings.Join(append(known, "limit", "cursor", "order"), ", ")))
		case len(vs) > 1:
			q.fail(fmt.Sprintf("query parameter %s is given %d times; give it once (lists are comma-separated)", k, len(vs)))
		}
	}
	return q
}

func (q *query) fail(msg string) { q.errs = append(q.errs, msg) }

func (q *query) str(k string) string { return q.v.Get(k) }

func (q *query) list(k string) []string {
	v := q.v.Get(k)
	if v == "" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (q *query) time(k string) time.Time {
	v := q.v.Get(k)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		q.fail(fmt.Sprintf("query parameter %s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, not %q", k, v))
	}
	return t
}

func (q *query) window(since, until time.Time) {
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		q.fail("query parameter since must be before until")
	}
}

func (q *query) typeFilters(k string) []string {
	types := q.list(k)
	for _, t := range types {
		if err := subscription.ValidateFilter(t); err != nil {
			q.fail(fmt.Sprintf("query parameter %s %q: %v (e.g. order.created, order.*, invoice.>)", k, t, err))
		}
	}
	return types
}

// page reads limit, order and cursor of listing.
func (q *query) page(listing string) (limit int, desc bool, cursor *scan.Pos) {
	limit, desc = DefaultListLimit, true
	if v, ok := q.v["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > MaxListLimit {
			q.fail(fmt.Sprintf("query parameter limit must be a whole number from 1 to %d (default %d)", MaxListLimit, DefaultListLimit))
		}
		limit = n
	}
	switch q.v.Get("order") {
	case "", "desc":
	case "asc":
		desc = false
	default:
		q.fail(`query parameter order must be "desc" (newest first, the default) or "asc"`)
	}
	if v, ok := q.v["cursor"]; ok {
		if v[0] == "" {
			q.fail("query parameter cursor must be the next_cursor of the previous page")
			return
		}
		p, prob := decodeStreamCursor(listing, desc, v[0])
		if prob != nil {
			q.fail(prob.Detail)
			return
		}
		cursor = &p
	}
	return limit, desc, cursor
}

func (q *query) problem() *Problem {
	if len(q.errs) == 0 {
		return nil
	}
	return invalid(strings.Join(q.errs, "; "))
}

// listTenant is the tenant a listing is narrowed to: the tenant asked for
// (checked against the token: 403 for another) or, for a token bound to a
// tenant, that tenant. "" lists every tenant (unbound tokens only).
func listTenant(w http.ResponseWriter, r *http.Request, q *query) (string, bool) {
	tenant := q.str("tenant")
	if tenant == "" {
		return auth.TenantOf(r.Context()), true
	}
	if err := subscription.ValidateTenant(tenant); err != nil {
		q.fail("query parameter tenant: " + err.Error())
		return "", true
	}
	if forbidTenant(w, r, tenant) {
		return "", false
	}
	return tenant, true
}

// pageJSON writes {"<key>":[items…],"next_cursor":…}.
func pageJSON[T any](w http.ResponseWriter, key string, items []T, listing string, desc bool, res scan.PageResult[T], render func(T) any) {
	out := make([]any, 0, len(items))
	for _, it := range items {
		out = append(out, render(it))
	}
	body := map[string]any{key: out}
	if res.More {
		body["next_cursor"] = encodeStreamCursor(listing, desc, res.Next)
	}
	writeJSON(w, http.StatusOK, body)
}

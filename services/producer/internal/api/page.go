package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hookline/hookline/pkg/subscription"
)

// Pages of GET /v1/subscriptions.
const (
	// DefaultListLimit is the page size without ?limit=.
	DefaultListLimit = 100
	// MaxListLimit is the largest ?limit= accepted.
	MaxListLimit = 500
)

// cursorVersion starts every cursor: a later format can tell its own.
const cursorVersion = "c1"

// encodeCursor is the opaque next_cursor of a page that ended at id. It
// names the tenant, so a cursor is refused on another tenant's listing.
func encodeCursor(tenant, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorVersion + ":" + tenant + ":" + id))
}

// decodeCursor returns the id a cursor resumes after.
func decodeCursor(tenant, cursor string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", fmt.Errorf("query parameter cursor is not a cursor this API returned (pass next_cursor unchanged)")
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != cursorVersion || subscription.ValidateID(parts[2]) != nil {
		return "", fmt.Errorf("query parameter cursor is not a cursor this API returned (pass next_cursor unchanged)")
	}
	if parts[1] != tenant {
		return "", fmt.Errorf("query parameter cursor belongs to another tenant's listing; start again without cursor")
	}
	return parts[2], nil
}

// pageParams reads ?limit= and ?cursor= of a listing of tenant; a bad
// value is a 400 that says what is wrong.
func pageParams(r *http.Request, tenant string) (limit int, after string, p *Problem) {
	q := r.URL.Query()
	limit = DefaultListLimit
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(vs[0])
		if len(vs) > 1 || err != nil || n < 1 || n > MaxListLimit {
			return 0, "", invalid(fmt.Sprintf("query parameter limit must be a whole number from 1 to %d (default %d)", MaxListLimit, DefaultListLimit))
		}
		limit = n
	}
	if vs, ok := q["cursor"]; ok {
		if len(vs) > 1 || vs[0] == "" {
			return 0, "", invalid("query parameter cursor must be given once, with the next_cursor of the previous page")
		}
		id, err := decodeCursor(tenant, vs[0])
		if err != nil {
			return 0, "", invalid(err.Error())
		}
		after = id
	}
	return limit, after, nil
}

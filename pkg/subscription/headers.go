package subscription

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/hookline/hookline/pkg/secretbox"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Payload formats (the payload_format field). A record without one is
// delivered raw: subscriptions created before the field existed keep the
// body their receivers parse.
const (
	PayloadEnvelope = "envelope"
	PayloadRaw      = "raw"
)

// ValidatePayloadFormat accepts "envelope" and "raw".
func ValidatePayloadFormat(f string) error {
	if f != PayloadEnvelope && f != PayloadRaw {
		return errors.New(`must be "envelope" ({"id","type","timestamp","data"}) or "raw" (the event's data alone)`)
	}
	return nil
}

// Limits of custom headers.
const (
	MaxHeaders         = 20
	MaxHeaderNameLen   = 128
	MaxHeaderValueLen  = 4096
	MaxHeadersTotalLen = 16 << 10
)

// reservedHeaders may not be set per subscription: hop-by-hop headers
// (RFC 9110 §7.6.1), those the transport owns, and those Hookline sends.
var reservedHeaders = map[string]string{
	"Connection":          "is a hop-by-hop header",
	"Keep-Alive":          "is a hop-by-hop header",
	"Proxy-Connection":    "is a hop-by-hop header",
	"Proxy-Authenticate":  "is a hop-by-hop header",
	"Proxy-Authorization": "is a hop-by-hop header",
	"Te":                  "is a hop-by-hop header",
	"Trailer":             "is a hop-by-hop header",
	"Transfer-Encoding":   "is a hop-by-hop header",
	"Upgrade":             "is a hop-by-hop header",
	"Host":                "is set from the subscription URL",
	"Content-Length":      "is set by Hookline",
	"Content-Type":        "is set by Hookline (application/json)",
	"Content-Encoding":    "is set by Hookline",
	"User-Agent":          "is set by Hookline",
	"Expect":              "is set by the transport",
	"Idempotency-Key":     "is set by Hookline",
}

// ValidateHeader judges one custom header; the error says why (never the
// value).
func ValidateHeader(name, value string) error {
	switch {
	case name == "":
		return errors.New("header name must not be empty")
	case len(name) > MaxHeaderNameLen:
		return fmt.Errorf("header name must be at most %d characters", MaxHeaderNameLen)
	case !isToken(name):
		return errors.New("header name must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
	}
	canon := http.CanonicalHeaderKey(name)
	if why, ok := reservedHeaders[canon]; ok {
		return fmt.Errorf("%s %s and cannot be set", canon, why)
	}
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, "webhook-"):
		return errors.New("webhook-* headers are the signature's (Standard Webhooks) and cannot be set")
	case strings.HasPrefix(lower, "hookline-"):
		return errors.New("headers named Hookline-* are Hookline's and cannot be set")
	}
	switch {
	case value == "":
		return errors.New("value must not be empty")
	case len(value) > MaxHeaderValueLen:
		return fmt.Errorf("value must be at most %d bytes", MaxHeaderValueLen)
	case strings.ContainsAny(value, "\r\n"):
		return errors.New("value must not contain CR or LF")
	case strings.HasPrefix(value, secretbox.Prefix):
		return fmt.Errorf("value must not start with %q (the mark of a sealed value)", secretbox.Prefix)
	case value != strings.TrimSpace(value):
		return errors.New("value must not start or end with whitespace")
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return errors.New("value must not contain control characters")
		}
	}
	return nil
}

// ValidateHeaders judges a set of custom headers: each one, their number,
// their total size and names that differ only in case. It returns the
// errors by header name (as given), nil when all are valid; whole-set
// errors are under "".
func ValidateHeaders(h map[string]string) map[string]error {
	errs := map[string]error{}
	if len(h) > MaxHeaders {
		errs[""] = fmt.Errorf("at most %d headers", MaxHeaders)
	}
	total := 0
	seen := map[string]string{}
	for _, name := range sortedNames(h) {
		value := h[name]
		total += len(name) + len(value)
		if err := ValidateHeader(name, value); err != nil {
			errs[name] = err
			continue
		}
		canon := http.CanonicalHeaderKey(name)
		if other, ok := seen[canon]; ok {
			errs[name] = fmt.Errorf("is the same header as %q (names are case-insensitive)", other)
		}
		seen[canon] = name
	}
	if total > MaxHeadersTotalLen {
		errs[""] = fmt.Errorf("names and values must total at most %d bytes", MaxHeadersTotalLen)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func sortedNames(h map[string]string) []string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// SealHeaders prepares validated custom headers for a record: names
// canonical, values sealed with box (in clear with a nil box, as signing
// secrets are). A value of Redacted keeps the value stored under that name
// in old (the API shows stored values so); ErrRedactedHeader when there is
// none.
func SealHeaders(box *secretbox.Box, h, old map[string]string) (map[string]string, error) {
	if len(h) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(h))
	for _, name := range sortedNames(h) {
		canon := http.CanonicalHeaderKey(name)
		value := h[name]
		if value == Redacted {
			prev, ok := old[canon]
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrRedactedHeader, canon)
			}
			out[canon] = prev
			continue
		}
		sealed, err := box.Seal(value)
		if err != nil {
			return nil, fmt.Errorf("seal header %s: %w", canon, err)
		}
		out[canon] = sealed
	}
	return out, nil
}

// ErrRedactedHeader: a header given as REDACTED has no stored value to
// keep.
var ErrRedactedHeader = errors.New("REDACTED keeps a stored value, and this header has none")

// MaskHeaders is h with every value Redacted (nil for none): custom
// headers are write-only.
func MaskHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for n := range h {
		out[n] = Redacted
	}
	return out
}

// ErrHeaderNoKey: custom headers are sealed and no key opens them.
var ErrHeaderNoKey = errors.New("custom headers are stored encrypted and no HOOKLINE_SECRET_KEY is configured")

// OpenHeaders opens a record's custom headers with box (values stored in
// clear pass through). Errors name the header, never its value.
func OpenHeaders(box *secretbox.Box, sub *hooklinev1.Subscription) (map[string]string, error) {
	h := sub.GetHeaders()
	if len(h) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(h))
	for name, sealed := range h {
		v, err := box.OpenFor(Binding(sub, HeaderField(name)), sealed)
		switch {
		case errors.Is(err, secretbox.ErrNoKey):
			return nil, fmt.Errorf("header %s: %w", name, ErrHeaderNoKey)
		case err != nil:
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

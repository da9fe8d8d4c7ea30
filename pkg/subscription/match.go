package subscription

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hookline/hookline/pkg/stream"
)

// Matches reports whether eventType matches filter with NATS token
// semantics: tokens are separated by '.', a filter token equals the event
// type's token, or is "*" (exactly one token), or is a final ">" (one or
// more tokens). Malformed input (an empty token, a ">" that is not last)
// matches nothing. Hookline's own types (hookline.…: operational events
// such as hookline.subscription.failing) match only a filter that names
// them in its first token (hookline.>, hookline.subscription.*): a
// catch-all such as ">" or "*.failing" never receives them. Matches does
// not allocate.
func Matches(filter, eventType string) bool {
	if filter == "" || eventType == "" {
		return false
	}
	if strings.HasPrefix(eventType, stream.ReservedTypePrefix) && !strings.HasPrefix(filter, stream.ReservedTypePrefix) {
		return false
	}
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		et, erest, emore := strings.Cut(eventType, ".")
		if ft == "" || et == "" {
			return false
		}
		if ft == ">" {
			return !fmore && validTokens(eventType)
		}
		if ft != "*" && ft != et {
			return false
		}
		if !fmore || !emore {
			return fmore == emore
		}
		filter, eventType = frest, erest
	}
}

// validTokens reports whether s has no empty token.
func validTokens(s string) bool {
	for {
		t, rest, more := strings.Cut(s, ".")
		if t == "" {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// MatchesAny reports whether any of filters matches eventType.
func MatchesAny(filters []string, eventType string) bool {
	for _, f := range filters {
		if Matches(f, eventType) {
			return true
		}
	}
	return false
}

// Limits of names.
const (
	MaxEventTypeLen = 255
	MaxTenantLen    = 64
)

// MinRateLimit is the smallest rate_limit_per_second a subscription may
// have: one request an hour. The API refuses less, and the deliverer takes
// a smaller stored value as this (a wait of 1e300 s overflowed a schedule).
const MinRateLimit = 1.0 / 3600

// ValidateTenant checks a tenant: ^[a-z0-9][a-z0-9_-]{0,63}$, one NATS token.
func ValidateTenant(tenant string) error {
	switch {
	case tenant == "":
		return errors.New("tenant is empty")
	case len(tenant) > MaxTenantLen:
		return fmt.Errorf("tenant is longer than %d characters", MaxTenantLen)
	case tenant[0] == '_' || tenant[0] == '-':
		return errors.New("tenant must start with a lowercase letter or digit")
	}
	for i := 0; i < len(tenant); i++ {
		c := tenant[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("tenant has invalid character %q at %d (allowed: a-z 0-9 _ -)", c, i)
		}
	}
	return nil
}

// ValidateEventType checks an event type: 1..255 characters, dot-separated
// tokens of [A-Za-z0-9_-]+, no wildcards.
func ValidateEventType(eventType string) error {
	return validateTokens("event type", eventType, false)
}

// ValidateFilter checks an event-type filter: like an event type, but a
// token may be "*" and the last token may be ">".
func ValidateFilter(filter string) error {
	return validateTokens("filter", filter, true)
}

func validateTokens(what, s string, wildcards bool) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > MaxEventTypeLen:
		return fmt.Errorf("%s is longer than %d characters", what, MaxEventTypeLen)
	}
	for n := 1; ; n++ {
		t, rest, more := strings.Cut(s, ".")
		switch {
		case t == "":
			return fmt.Errorf("%s has an empty token at position %d (leading, trailing or double dot)", what, n)
		case wildcards && t == "*":
		case wildcards && t == ">":
			if more {
				return fmt.Errorf("%s: \">\" must be the last token", what)
			}
		default:
			for i := 0; i < len(t); i++ {
				c := t[i]
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
					if !wildcards && (c == '*' || c == '>') {
						return fmt.Errorf("%s must not contain wildcards", what)
					}
					return fmt.Errorf("%s token %d has invalid character %q (allowed: A-Z a-z 0-9 _ -)", what, n, c)
				}
			}
		}
		if !more {
			return nil
		}
		s = rest
	}
}

// ValidateID checks a subscription id: one KV key token of [A-Za-z0-9_-],
// at most 128 bytes (also what may stand in a dead letter's subject).
func ValidateID(id string) error {
	if id == "" || len(id) > 128 {
		return errors.New("subscription id must be 1..128 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("subscription id has invalid character %q", c)
		}
	}
	return nil
}

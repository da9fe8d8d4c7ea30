package api

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
)

// Limits of request fields.
const (
	MaxURLLen         = 2048
	MaxDescriptionLen = 1024
	MaxEventTypes     = 64
	MaxIDLen          = stream.MaxEventIDLen
)

// validateURL decides whether a subscription may deliver to raw. It is the
// one place URLs are judged: a stricter policy (private addresses, ports)
// replaces this function.
func validateURL(raw string) error {
	switch {
	case raw == "":
		return errors.New("is required")
	case len(raw) > MaxURLLen:
		return fmt.Errorf("must be at most %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an absolute http:// or https:// URL")
	case u.Opaque != "":
		return errors.New("must be an absolute http:// or https:// URL")
	case u.User != nil:
		return errors.New("must not contain credentials (userinfo); authenticate receivers with the signature")
	case u.Hostname() == "":
		return errors.New("must have a host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return errors.New("has an invalid port")
		}
	}
	return nil
}

// fields collects the invalid fields of a request.
type fields struct {
	prefix string
	errs   []FieldError
}

func (f *fields) add(field string, err error) {
	if err != nil {
		f.errs = append(f.errs, FieldError{Field: f.prefix + field, Message: err.Error()})
	}
}

func (f *fields) problem() *Problem {
	if len(f.errs) == 0 {
		return nil
	}
	return validation(f.errs)
}

func required(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	return nil
}

func (f *fields) tenant(field, tenant string) {
	if tenant == "" {
		f.add(field, required(tenant))
		return
	}
	f.add(field, subscription.ValidateTenant(tenant))
}

func (f *fields) eventTypes(field string, filters []string) {
	switch {
	case len(filters) == 0:
		f.add(field, errors.New("must list at least one event type filter"))
	case len(filters) > MaxEventTypes:
		f.add(field, fmt.Errorf("must list at most %d filters", MaxEventTypes))
	default:
		for i, flt := range filters {
			f.add(fmt.Sprintf("%s[%d]", field, i), subscription.ValidateFilter(flt))
		}
	}
}

func (f *fields) description(field, d string) {
	if len(d) > MaxDescriptionLen {
		f.add(field, fmt.Errorf("must be at most %d characters", MaxDescriptionLen))
	}
}

// MaxRateBurst bounds rate_limit_burst.
const MaxRateBurst = 10000

// limits checks max_in_flight, rate_limit_per_second and rate_limit_burst
// (nil: not given) against the operator's maxima.
func (f *fields) limits(a *API, inFlight *uint32, rate *float64, burst *uint32) {
	if inFlight != nil && *inFlight > a.maxInFlight {
		f.add("max_in_flight", fmt.Errorf("must be 0 (the adaptive default) or at most %d (HOOKLINE_MAX_IN_FLIGHT_LIMIT)", a.maxInFlight))
	}
	if rate != nil {
		r := *rate
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 || (r > 0 && r < subscription.MinRateLimit) || r > a.maxRate {
			f.add("rate_limit_per_second", fmt.Errorf("must be 0 (unlimited) or between %g (one an hour) and %g (HOOKLINE_MAX_RATE_LIMIT)", subscription.MinRateLimit, a.maxRate))
		}
	}
	if burst != nil && *burst > MaxRateBurst {
		f.add("rate_limit_burst", fmt.Errorf("must be at most %d", MaxRateBurst))
	}
}

// headers checks custom headers (subscription.ValidateHeaders); each error
// is filed under headers.<name> and never quotes a value. A value of
// REDACTED (what answers show) must name a header stored in old.
func (f *fields) headers(h, old map[string]string) {
	errs := subscription.ValidateHeaders(h)
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if errs[name] != nil {
			continue
		}
		if h[name] == subscription.Redacted {
			if _, ok := old[http.CanonicalHeaderKey(name)]; !ok {
				errs = setErr(errs, name, subscription.ErrRedactedHeader)
			}
		}
	}
	if err := errs[""]; err != nil {
		f.add("headers", err)
	}
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		if name != "" {
			f.add("headers."+name, errs[name])
		}
	}
}

func setErr(m map[string]error, k string, err error) map[string]error {
	if m == nil {
		m = map[string]error{}
	}
	m[k] = err
	return m
}

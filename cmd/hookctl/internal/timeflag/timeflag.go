// Package timeflag holds the --since/--until flag value: a point in time
// given either as a duration ago ("24h", "90m", "7d") or as an RFC 3339
// time ("2026-11-28T12:00:00Z").
package timeflag

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Formats is what an operator may type, for error messages and help.
const Formats = `a duration ago like 90m, 6h, 7d (units s, m, h, d), an RFC 3339 time like 2026-11-28T12:00:00Z or 2026-11-28T12:00:00+01:00, or a date like 2026-11-28 (UTC midnight)`

// Parse turns s into a time relative to now. A duration means "that long
// before now".
func Parse(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time: want %s", Formats)
	}
	if d, ok := parseDuration(s); ok {
		if d < 0 {
			return time.Time{}, fmt.Errorf("time %q: a duration counts back from now and must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q not understood: want %s", s, Formats)
}

// parseDuration accepts Go durations plus a "d" (24h) unit: 7d, 1d12h.
func parseDuration(s string) (time.Duration, bool) {
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, false
		}
		d := time.Duration(n) * 24 * time.Hour
		if rest == "" {
			return d, true
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false
		}
		return d + r, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// Value is a pflag.Value. The zero Value is unset. Now is read when the flag
// is set, so every flag of one command sees the same "now" when Now is
// shared.
type Value struct {
	T   time.Time
	Raw string
	Now func() time.Time
}

// Set parses s.
func (v *Value) Set(s string) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t, err := Parse(s, now())
	if err != nil {
		return err
	}
	v.T, v.Raw = t, s
	return nil
}

// String is the time as typed.
func (v *Value) String() string { return v.Raw }

// Type names the value in help.
func (v *Value) Type() string { return "time" }

// Absolute is the time in RFC 3339 (UTC), for a resume command that must not
// drift when a relative "6h" is read again later. Empty when unset.
func (v *Value) Absolute() string {
	if v.T.IsZero() {
		return ""
	}
	return v.T.UTC().Format(time.RFC3339Nano)
}

package attempt

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// appendJSON appends the proto3 JSON of a to dst as protojson with
// UseProtoNames writes it (field-number order, zero values omitted), but
// compact and without going through reflection: protojson was ~6% of the
// deliverer's CPU. It reports false, with dst cut back to its original
// length, for what protojson refuses — a string that is not valid UTF-8,
// a started_at outside the range of google.protobuf.Timestamp — and the
// caller then falls back to protojson for its error.
//
// Keep this in step with the Attempt message in
// proto/hookline/v1/deadletter.proto; the tests compare it with protojson
// field by field.
func appendJSON(dst []byte, a *hooklinev1.Attempt) ([]byte, bool) {
	start := len(dst)
	b := append(dst, '{')
	ok := true
	b, ok = appendStringField(b, `"event_id":`, a.GetEventId(), ok)
	b, ok = appendStringField(b, `"tenant":`, a.GetTenant(), ok)
	b, ok = appendStringField(b, `"event_type":`, a.GetEventType(), ok)
	b, ok = appendStringField(b, `"subscription_id":`, a.GetSubscriptionId(), ok)
	if v := a.GetAttempt(); v != 0 {
		b = appendKey(b, `"attempt":`)
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	if ts := a.GetStartedAt(); ts != nil {
		b = appendKey(b, `"started_at":`)
		b, ok = appendTimestamp(b, ts.GetSeconds(), ts.GetNanos(), ok)
	}
	// proto3 treats -0 as set (its bits are not zero), so does protojson.
	if v := a.GetDurationSeconds(); v != 0 || math.Signbit(v) {
		b = appendKey(b, `"duration_seconds":`)
		b = appendFloat(b, v)
	}
	if v := a.GetStatus(); v != 0 {
		b = appendKey(b, `"status":`)
		b = strconv.AppendInt(b, int64(v), 10)
	}
	b, ok = appendStringField(b, `"outcome":`, a.GetOutcome(), ok)
	b, ok = appendStringField(b, `"error_class":`, a.GetErrorClass(), ok)
	b, ok = appendStringField(b, `"error":`, a.GetError(), ok)
	b, ok = appendStringField(b, `"response_excerpt":`, a.GetResponseExcerpt(), ok)
	if a.GetReplay() {
		b = appendKey(b, `"replay":`)
		b = append(b, "true"...)
	}
	if !ok {
		return b[:start], false
	}
	return append(b, '}'), true
}

// jsonLen is a capacity for the JSON of a that holds it without growing
// unless its strings need many escapes: the longest keys, punctuation and
// non-string values take under 256 bytes.
func jsonLen(a *hooklinev1.Attempt) int {
	n := len(a.GetEventId()) + len(a.GetTenant()) + len(a.GetEventType()) +
		len(a.GetSubscriptionId()) + len(a.GetOutcome()) + len(a.GetErrorClass()) +
		len(a.GetError()) + len(a.GetResponseExcerpt())
	// Response excerpts are often JSON, full of quotes to escape.
	return 256 + n + n/8
}

// appendKey appends key (quoted, with its colon), after a comma unless it
// is the first field of the object.
func appendKey(b []byte, key string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	return append(b, key...)
}

// appendStringField appends key and s unless s is empty (the proto3
// default, which protojson omits). Once ok is false nothing is appended:
// the caller throws the output away.
func appendStringField(b []byte, key, s string, ok bool) ([]byte, bool) {
	if s == "" || !ok {
		return b, ok
	}
	return appendString(appendKey(b, key), s)
}

// safeASCII marks the ASCII bytes that JSON strings carry as they are.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string, escaped as protojson escapes it:
// ", \ and control characters only, with \b \f \n \r \t where they exist
// and \u00xx (lower-case hex) otherwise; everything else, DEL, U+2028 and
// U+2029 included, is copied. It reports false if s is not valid UTF-8.
func appendString(b []byte, s string) ([]byte, bool) {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	from := 0 // s[from:i] is yet to be copied
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			b = append(b, s[from:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			from = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return b, false
		}
		i += n
	}
	b = append(b, s[from:]...)
	return append(b, '"'), true
}

// The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z, as protojson checks it.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// appendTimestamp appends seconds and nanos as protojson writes a
// google.protobuf.Timestamp: a quoted RFC 3339 time in UTC with 0, 3, 6 or
// 9 fractional digits. It reports false outside the range protojson
// accepts (and refuses), seconds from 0001 to 9999 and nanos below 1e9.
func appendTimestamp(b []byte, seconds int64, nanos int32, ok bool) ([]byte, bool) {
	if !ok || seconds < minTimestampSeconds || seconds > maxTimestampSeconds ||
		nanos < 0 || nanos >= 1e9 {
		return b, false
	}
	t := time.Unix(seconds, 0).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	switch {
	case nanos == 0:
	case nanos%1e6 == 0:
		b = append(b, '.')
		b = appendDigits(b, int(nanos/1e6), 3)
	case nanos%1e3 == 0:
		b = append(b, '.')
		b = appendDigits(b, int(nanos/1e3), 6)
	default:
		b = append(b, '.')
		b = appendDigits(b, int(nanos), 9)
	}
	return append(b, 'Z', '"'), true
}

// appendDigits appends the width lowest decimal digits of v (v >= 0),
// zero-padded.
func appendDigits(b []byte, v, width int) []byte {
	n := len(b)
	for range width {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// appendFloat appends v as protojson writes a double: NaN and infinities as
// the strings "NaN", "Infinity" and "-Infinity"; otherwise the shortest
// decimal that reads back as v, in exponent form below 1e-6 and from 1e21
// up, a negative exponent without its leading zero (1e-07 becomes 1e-7):
// encoding/json's rules, which protojson copies.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

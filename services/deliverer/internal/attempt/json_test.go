package attempt

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// checkMessage compares encode(a) with protojson's output for a and
// reports whether the hand encoder took a on (no fallback). When protojson
// refuses a, encode must refuse it too. Otherwise the body must be
// protojson's, byte for byte once protojson's random whitespace is
// compacted away, and the same keys and values decoded with encoding/json;
// and if the hand encoder wrote it, protojson must read it back as a.
func checkMessage(t testing.TB, a *hooklinev1.Attempt) bool {
	t.Helper()
	want, wantErr := marshal.Marshal(a)
	got, err := encode(a)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("encode(%v) = %q, want an error like protojson's %v", a, got, wantErr)
		}
		return false
	}
	if err != nil {
		t.Fatalf("encode(%v): %v; protojson wrote %q", a, err, want)
	}

	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatalf("compact protojson output %q: %v", want, err)
	}
	if !bytes.Equal(got, compact.Bytes()) {
		t.Fatalf("encode(%v)\n got %s\nwant %s", a, got, compact.Bytes())
	}

	var gotMap, wantMap map[string]any
	if err := json.Unmarshal(got, &gotMap); err != nil {
		t.Fatalf("encoding/json cannot read %q: %v", got, err)
	}
	if err := json.Unmarshal(want, &wantMap); err != nil {
		t.Fatalf("encoding/json cannot read protojson's %q: %v", want, err)
	}
	if !reflect.DeepEqual(gotMap, wantMap) {
		t.Fatalf("decoded body\n got %v\nwant %v", gotMap, wantMap)
	}

	_, fast := appendJSON(nil, a)
	if fast {
		back := &hooklinev1.Attempt{}
		if err := protojson.Unmarshal(got, back); err != nil {
			t.Fatalf("protojson cannot read %q: %v", got, err)
		}
		if a == nil {
			a = &hooklinev1.Attempt{} // a nil message reads back empty
		}
		if !proto.Equal(back, a) {
			t.Fatalf("protojson read %q back as %v, want %v", got, back, a)
		}
	}
	return fast
}

func TestMessageBody(t *testing.T) {
	t.Parallel()
	ts := func(s int64, n int32) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: s, Nanos: n} }
	cases := []struct {
		name string
		a    *hooklinev1.Attempt
		want string // "" when protojson refuses a
		fast bool
	}{
		{name: "nil", a: nil, want: `{}`, fast: true},
		{name: "zero", a: &hooklinev1.Attempt{}, want: `{}`, fast: true},
		{name: "every field", a: &hooklinev1.Attempt{
			EventId: "01J", Tenant: "acme", EventType: "order.paid", SubscriptionId: "sub_1",
			Attempt: 3, StartedAt: ts(1700000000, 123000000), DurationSeconds: 0.25, Status: 503,
			Outcome: "retry", ErrorClass: "http_status", Error: "HTTP 503", ResponseExcerpt: `{"ok":false}`,
			Replay: true,
		}, want: `{"event_id":"01J","tenant":"acme","event_type":"order.paid","subscription_id":"sub_1",` +
			`"attempt":3,"started_at":"2023-11-14T22:13:20.123Z","duration_seconds":0.25,"status":503,` +
			`"outcome":"retry","error_class":"http_status","error":"HTTP 503",` +
			`"response_excerpt":"{\"ok\":false}","replay":true}`, fast: true},
		{name: "escapes", a: &hooklinev1.Attempt{Error: "a\"b\\c\b\f\n\r\t\x00\x1f\x7f</>&\u2028é😀\uFFFD"},
			want: `{"error":"a\"b\\c\b\f\n\r\t\u0000\u001f` + "\x7f</>&\u2028é😀\uFFFD" + `"}`, fast: true},
		{name: "epoch", a: &hooklinev1.Attempt{StartedAt: ts(0, 0)}, want: `{"started_at":"1970-01-01T00:00:00Z"}`, fast: true},
		{name: "micros", a: &hooklinev1.Attempt{StartedAt: ts(0, 1000)}, want: `{"started_at":"1970-01-01T00:00:00.000001Z"}`, fast: true},
		{name: "nanos", a: &hooklinev1.Attempt{StartedAt: ts(-1, 999999999)}, want: `{"started_at":"1969-12-31T23:59:59.999999999Z"}`, fast: true},
		{name: "first second", a: &hooklinev1.Attempt{StartedAt: ts(minTimestampSeconds, 0)}, want: `{"started_at":"0001-01-01T00:00:00Z"}`, fast: true},
		{name: "last second", a: &hooklinev1.Attempt{StartedAt: ts(maxTimestampSeconds, 999000000)}, want: `{"started_at":"9999-12-31T23:59:59.999Z"}`, fast: true},
		{name: "before first second", a: &hooklinev1.Attempt{StartedAt: ts(minTimestampSeconds-1, 0)}},
		{name: "after last second", a: &hooklinev1.Attempt{StartedAt: ts(maxTimestampSeconds+1, 0)}},
		{name: "negative nanos", a: &hooklinev1.Attempt{StartedAt: ts(0, -1)}},
		{name: "nanos of a whole second", a: &hooklinev1.Attempt{StartedAt: ts(0, 1e9)}},
		{name: "negative zero", a: &hooklinev1.Attempt{DurationSeconds: math.Copysign(0, -1)}, want: `{"duration_seconds":-0}`, fast: true},
		{name: "small", a: &hooklinev1.Attempt{DurationSeconds: 1e-7}, want: `{"duration_seconds":1e-7}`, fast: true},
		{name: "smallest fixed", a: &hooklinev1.Attempt{DurationSeconds: 1e-6}, want: `{"duration_seconds":0.000001}`, fast: true},
		{name: "large", a: &hooklinev1.Attempt{DurationSeconds: 1e21}, want: `{"duration_seconds":1e+21}`, fast: true},
		{name: "largest fixed", a: &hooklinev1.Attempt{DurationSeconds: 1e20}, want: `{"duration_seconds":100000000000000000000}`, fast: true},
		{name: "tiny exponent", a: &hooklinev1.Attempt{DurationSeconds: -5e-324}, want: `{"duration_seconds":-5e-324}`, fast: true},
		{name: "NaN", a: &hooklinev1.Attempt{DurationSeconds: math.NaN()}, want: `{"duration_seconds":"NaN"}`, fast: true},
		{name: "Infinity", a: &hooklinev1.Attempt{DurationSeconds: math.Inf(1)}, want: `{"duration_seconds":"Infinity"}`, fast: true},
		{name: "-Infinity", a: &hooklinev1.Attempt{DurationSeconds: math.Inf(-1)}, want: `{"duration_seconds":"-Infinity"}`, fast: true},
		{name: "integer limits", a: &hooklinev1.Attempt{Attempt: math.MaxUint32, Status: math.MinInt32},
			want: `{"attempt":4294967295,"status":-2147483648}`, fast: true},
		{name: "invalid UTF-8 in error", a: &hooklinev1.Attempt{Tenant: "acme", Error: "bad \xff byte"}},
		{name: "cut character in excerpt", a: &hooklinev1.Attempt{ResponseExcerpt: "\xe4\xb8"}},
		{name: "encoded surrogate", a: &hooklinev1.Attempt{EventId: "\xed\xa0\x80"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if fast := checkMessage(t, tc.a); fast != tc.fast {
				t.Errorf("hand encoder took it: %v, want %v", fast, tc.fast)
			}
			body, err := encode(tc.a)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("encode = %q, want an error", body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tc.want {
				t.Errorf("body\n got %s\nwant %s", body, tc.want)
			}
		})
	}
}

// stringPieces are what generated strings are made of: plain text, every
// character protojson escapes, multi-byte characters and, apart from the
// last ones, valid UTF-8.
var stringPieces = []string{
	"a", "Z", "0", " ", "order.paid", "01JABCDEF", "HTTP 503", `{"ok":false}`, "<>&", "'", "/",
	`"`, `\`, "\x00", "\x01", "\b", "\t", "\n", "\v", "\f", "\r", "\x1b", "\x1f", "\x7f",
	"é", "ß", "中文", "😀", "\u2028", "\u2029", "\uFFFD", "\U0010FFFF", "\u0080", "\u07ff", "\ufeff",
}

// invalidPieces are not valid UTF-8: stray bytes, a cut character, an
// encoded surrogate, an overlong encoding.
var invalidPieces = []string{"\xff", "\x80", "\xe4\xb8", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"}

func genString(r *rand.Rand, invalid bool) string {
	if !invalid && r.IntN(4) == 0 {
		return ""
	}
	var sb strings.Builder
	for range r.IntN(24) {
		sb.WriteString(stringPieces[r.IntN(len(stringPieces))])
	}
	if invalid {
		s := sb.String()
		at := r.IntN(len(s) + 1)
		return s[:at] + invalidPieces[r.IntN(len(invalidPieces))] + s[at:]
	}
	return sb.String()
}

func genTimestamp(r *rand.Rand) *timestamppb.Timestamp {
	var secs int64
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		secs = []int64{0, -1, 1, minTimestampSeconds, maxTimestampSeconds, 951782400 /* 2000-02-29 */}[r.IntN(6)]
	case 2:
		secs = time.Now().Unix() + r.Int64N(1e6) - 5e5
	default:
		secs = minTimestampSeconds + r.Int64N(maxTimestampSeconds-minTimestampSeconds+1)
	}
	var nanos int32
	switch r.IntN(5) {
	case 0:
	case 1:
		nanos = r.Int32N(1000) * 1e6
	case 2:
		nanos = r.Int32N(1e6) * 1e3
	case 3:
		nanos = r.Int32N(1e9)
	default:
		nanos = []int32{1, 999999999, 100000000, 10, 1e6 + 1, 1e3}[r.IntN(6)]
	}
	return &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
}

func genDuration(r *rand.Rand) float64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return []float64{
			math.Copysign(0, -1), 1e-6, 1e-7, 9.99999e-7, 1e20, 1e21, 999999999999999999999.0,
			math.SmallestNonzeroFloat64, math.MaxFloat64, -1e-300, 0.1, 1.0 / 3,
			math.NaN(), math.Inf(1), math.Inf(-1),
		}[r.IntN(15)]
	case 2:
		return math.Float64frombits(r.Uint64()) // any double, NaN payloads too
	default:
		return r.Float64() * 30 // a duration
	}
}

func genAttempt(r *rand.Rand, invalid bool) *hooklinev1.Attempt {
	// At most one string is not valid UTF-8.
	bad := -1
	if invalid {
		bad = r.IntN(8)
	}
	s := func(i int) string { return genString(r, i == bad) }
	a := &hooklinev1.Attempt{
		EventId:         s(0),
		Tenant:          s(1),
		EventType:       s(2),
		SubscriptionId:  s(3),
		StartedAt:       genTimestamp(r),
		DurationSeconds: genDuration(r),
		Outcome:         s(4),
		ErrorClass:      s(5),
		Error:           s(6),
		ResponseExcerpt: s(7),
		Replay:          r.IntN(2) == 0,
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		a.Attempt = []uint32{1, math.MaxUint32}[r.IntN(2)]
	default:
		a.Attempt = r.Uint32()
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		a.Status = []int32{200, 503, -1, math.MinInt32, math.MaxInt32}[r.IntN(5)]
	default:
		a.Status = r.Int32() - r.Int32()
	}
	return a
}

// TestMessageMatchesProtojson compares Message with protojson on generated
// attempts: the valid ones must take the hand-written path and come out
// as protojson's; those with a string that is not valid UTF-8 must be left
// to protojson, and so refused as protojson refuses them.
func TestMessageMatchesProtojson(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(20240611, 7))
	for i := range 5000 {
		invalid := i%5 == 4
		a := genAttempt(r, invalid)
		fast := checkMessage(t, a)
		if fast == invalid {
			t.Fatalf("attempt %d (%v): hand encoder took it: %v, want %v", i, a, fast, !invalid)
		}
	}
}

// TestAppendJSONAllocs: with room enough, the hand encoder allocates
// nothing; Message's one buffer is all the body costs.
func TestAppendJSONAllocs(t *testing.T) {
	a := benchAttempt()
	buf := make([]byte, 0, jsonLen(a))
	allocs := testing.AllocsPerRun(100, func() {
		var ok bool
		if buf, ok = appendJSON(buf[:0], a); !ok {
			t.Fatal("hand encoder refused the bench attempt")
		}
	})
	if allocs != 0 {
		t.Errorf("appendJSON allocates %v times per call, want 0", allocs)
	}
	if out, _ := appendJSON(nil, a); len(out) > jsonLen(a) {
		t.Errorf("JSON of %d bytes outgrows jsonLen %d", len(out), jsonLen(a))
	}
}

func FuzzAttemptJSON(f *testing.F) {
	f.Add("01J9ZX", "acme", "order.paid", "sub_1", uint32(1), true, int64(1700000000), int32(123456789),
		0.183, int32(503), "retry", "http_status", "HTTP 503", `{"error":"busy"}`, false)
	f.Add("", "", "", "", uint32(0), false, int64(0), int32(0), 0.0, int32(0), "", "", "", "", false)
	f.Add("e\"\\\n\x00", "é中😀", "\u2028", "\x7f", uint32(math.MaxUint32), true, int64(maxTimestampSeconds),
		int32(999999999), 1e21, int32(math.MinInt32), "\t", "\x1f", "\uFFFD", "<>&", true)
	f.Add("ev", "t", "x", "s", uint32(2), true, int64(minTimestampSeconds), int32(0), 1e-7, int32(-1),
		"dead_letter", "timeout", "bad \xff byte", "\xe4\xb8", true)
	f.Add("ev", "t", "x", "s", uint32(2), true, int64(maxTimestampSeconds+1), int32(1e9), math.NaN(), int32(200),
		"", "", "", "", false)
	f.Add("ev", "t", "x", "s", uint32(2), true, int64(0), int32(-1), math.Inf(-1), int32(200),
		"", "", "", "", false)
	f.Fuzz(func(t *testing.T, eventID, tenant, eventType, subscriptionID string, attempt uint32,
		hasStart bool, seconds int64, nanos int32, duration float64, status int32,
		outcome, errorClass, errText, excerpt string, replay bool,
	) {
		a := &hooklinev1.Attempt{
			EventId:         eventID,
			Tenant:          tenant,
			EventType:       eventType,
			SubscriptionId:  subscriptionID,
			Attempt:         attempt,
			DurationSeconds: duration,
			Status:          status,
			Outcome:         outcome,
			ErrorClass:      errorClass,
			Error:           errText,
			ResponseExcerpt: excerpt,
			Replay:          replay,
		}
		if hasStart {
			a.StartedAt = &timestamppb.Timestamp{Seconds: seconds, Nanos: nanos}
		}
		fast := checkMessage(t, a)
		valid := true
		for _, s := range []string{eventID, tenant, eventType, subscriptionID, outcome, errorClass, errText, excerpt} {
			valid = valid && utf8.ValidString(s)
		}
		inRange := !hasStart || seconds >= minTimestampSeconds && seconds <= maxTimestampSeconds &&
			nanos >= 0 && nanos < 1e9
		if want := valid && inRange; fast != want {
			t.Fatalf("hand encoder took %v: %v, want %v", a, fast, want)
		}
	})
}

// benchAttempt is a typical failed attempt.
func benchAttempt() *hooklinev1.Attempt {
	return &hooklinev1.Attempt{
		EventId:         "01J9ZX4T6Q2W8E5R3Y7U1I0OPA",
		Tenant:          "acme",
		EventType:       "order.paid",
		SubscriptionId:  "sub_01J9ZX4T6Q2W8E5R3Y7U1I0OPB",
		Attempt:         3,
		StartedAt:       &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 123456789},
		DurationSeconds: 0.183274511,
		Status:          503,
		Outcome:         "retry",
		ErrorClass:      "http_status",
		Error:           "HTTP 503 Service Unavailable",
		ResponseExcerpt: `{"error":"upstream busy","retry_after":30,"request_id":"a1b2c3d4"}`,
	}
}

// BenchmarkMessage compares the record encoding with the protojson it
// replaced (hand_body_only: the hand encoder alone, without the fallback
// check):
//
//	go test -run '^$' -bench BenchmarkMessage -benchmem ./services/deliverer/internal/attempt/
func BenchmarkMessage(b *testing.B) {
	a := benchAttempt()
	for _, bc := range []struct {
		name string
		msg  func(*hooklinev1.Attempt) ([]byte, error)
	}{
		{"protojson", func(a *hooklinev1.Attempt) ([]byte, error) { return marshal.Marshal(a) }},
		{"hand", encode},
		{"hand_body_only", func(a *hooklinev1.Attempt) ([]byte, error) {
			b, ok := appendJSON(make([]byte, 0, jsonLen(a)), a)
			if !ok {
				return nil, errors.New("refused")
			}
			return b, nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.msg(a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

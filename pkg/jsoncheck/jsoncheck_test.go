package jsoncheck_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/jsoncheck"
)

// tricky is every hand-picked case: the input and what encoding/json.Valid
// answers for it. TestValidTable checks both functions against want, so a
// wrong belief about encoding/json fails as loudly as a wrong Valid.
var tricky = []struct {
	name string
	in   string
	want bool
}{
	// Whitespace and the top level.
	{"empty", "", false},
	{"only space", " ", false},
	{"only whitespace", " \t\r\n", false},
	{"surrounded by all four spaces", " \t\r\n[1,2] \t\r\n", true},
	{"form feed is not whitespace", "\f1", false},
	{"vertical tab is not whitespace", "1\v", false},
	{"nbsp is not whitespace", "\xc2\xa01", false},
	{"byte order mark", "\xef\xbb\xbf{}", false},
	{"two values", "1 2", false},
	{"two arrays", "[] []", false},
	{"trailing garbage after object", "{}x", false},
	{"trailing nul", "1\x00", false},
	{"trailing comma at top", "1,", false},
	{"comment", "/* c */ 1", false},
	{"line comment", "1 // c", false},

	// Numbers.
	{"zero", "0", true},
	{"minus zero", "-0", true},
	{"one", "1", true},
	{"negative", "-1", true},
	{"integer", "1234567890", true},
	{"fraction", "1.5", true},
	{"negative exponent fraction", "-1.5e10", true},
	{"upper E plus", "1E+2", true},
	{"exponent minus", "1e-2", true},
	{"zero exponent", "0e0", true},
	{"zero fraction", "0.0", true},
	{"fraction exponent zero", "1.0E-0", true},
	{"exponent leading zeros", "1e007", true},
	{"huge number", "1" + strings.Repeat("0", 400) + "e99999", true},
	{"number in array", "[-0.0e-0]", true},
	{"leading zero", "01", false},
	{"double zero", "00", false},
	{"negative leading zero", "-01", false},
	{"lone minus", "-", false},
	{"minus letter", "-a", false},
	{"double minus", "--1", false},
	{"plus sign", "+1", false},
	{"leading dot", ".5", false},
	{"trailing dot", "1.", false},
	{"dot exponent", "1.e5", false},
	{"bare exponent", "1e", false},
	{"exponent sign only", "1e+", false},
	{"double exponent", "1ee5", false},
	{"two dots", "1.5.5", false},
	{"hex", "0x10", false},
	{"underscore", "1_000", false},
	{"NaN", "NaN", false},
	{"Infinity", "Infinity", false},
	{"minus Infinity", "-Infinity", false},
	{"minus space digit", "- 1", false},
	{"trailing dot in array", "[1.]", false},
	{"number then letter", "[1x]", false},
	{"zero then digit in object", `{"a":01}`, false},

	// Literals.
	{"true", "true", true},
	{"false", "false", true},
	{"null", "null", true},
	{"literals in array", "[true,false,null]", true},
	{"truncated true", "tru", false},
	{"truncated false", "fals", false},
	{"truncated null", "nul", false},
	{"capital True", "True", false},
	{"capital in literal", "truE", false},
	{"null extra l", "nulll", false},
	{"falsey", "falsey", false},
	{"true then letter", "truex", false},
	{"two literals", "true false", false},
	{"undefined", "undefined", false},

	// Strings.
	{"empty string", `""`, true},
	{"plain string", `"abc"`, true},
	{"every short escape", `"\"\\\/\b\f\n\r\t"`, true},
	{"unicode escape lower", `"\u00e9"`, true},
	{"unicode escape upper", `"\uABCD"`, true},
	{"unicode escape mixed", `"\uAbCd"`, true},
	{"lone high surrogate escape", `"\uD800"`, true},
	{"lone low surrogate escape", `"\udc00"`, true},
	{"surrogate pair escape", `"\ud83d\ude00"`, true},
	{"invalid utf8 byte", "\"\xff\"", true},
	{"invalid utf8 sequence", "\"\xc3\x28\"", true},
	{"utf8 encoded surrogate", "\"\xed\xa0\x80\"", true},
	{"truncated utf8", "\"\xe2\x82\"", true},
	{"overlong utf8", "\"\xc0\xaf\"", true},
	{"del byte", "\"\x7f\"", true},
	{"valid utf8", `"Zoë — 日本 🎉"`, true},
	{"escaped quote at word end", `"1234567\""`, true},
	{"quote at every word offset", `["","a","ab","abc","abcd","abcde","abcdef","abcdefg","abcdefgh","abcdefghi"]`, true},
	{"escape across word boundary", `"abcdef\u0041bcdefgh\\"`, true},
	{"long string", `"` + strings.Repeat("abcdefgh", 100) + `"`, true},
	{"long string with high bytes", "\"" + strings.Repeat("\x80\xff\xa0 ", 50) + "\"", true},
	{"unterminated", `"`, false},
	{"unterminated text", `"abc`, false},
	{"unterminated long", `"` + strings.Repeat("x", 30), false},
	{"escaped closing quote", `"\"`, false},
	{"trailing backslash", `"\`, false},
	{"unknown escape", `"\x"`, false},
	{"single quote escape", `"\'"`, false},
	{"zero escape", `"\0"`, false},
	{"capital U escape", `"\U1234"`, false},
	{"short unicode escape", `"\u123"`, false},
	{"unicode escape non hex", `"\u12G4"`, false},
	{"unicode escape truncated", `"\u12`, false},
	{"unicode escape space", `"\u 123"`, false},
	{"raw nul", "\"\x00\"", false},
	{"raw tab", "\"\t\"", false},
	{"raw newline", "\"a\nb\"", false},
	{"raw 0x1f", "\"\x1f\"", false},
	{"raw control late in long string", "\"" + strings.Repeat("a", 21) + "\x01" + "\"", false},
	{"raw 0x1f late in long string", "\"" + strings.Repeat("a", 17) + "\x1f" + "\"", false},
	{"raw 0x20 late in long string", "\"" + strings.Repeat("a", 17) + " " + "\"", true},
	{"single quotes", `'a'`, false},

	// Containers.
	{"empty array", "[]", true},
	{"empty object", "{}", true},
	{"spaced empty array", "[ \n ]", true},
	{"spaced empty object", "{ \t }", true},
	{"object", `{"a":1}`, true},
	{"spaced object", ` { "a" : 1 , "b" : [ 2 , 3 ] } `, true},
	{"nested", `{"a":{"b":[1,{"c":null}]}}`, true},
	{"nested empties", `[[],[[]],{},[{}]]`, true},
	{"empty key", `{"":0}`, true},
	{"duplicate keys", `{"a":1,"a":2}`, true},
	{"lone open array", "[", false},
	{"lone close array", "]", false},
	{"lone open object", "{", false},
	{"lone close object", "}", false},
	{"trailing comma array", "[1,]", false},
	{"trailing comma and newline", "[1,\n]", false},
	{"leading comma array", "[,1]", false},
	{"double comma", "[1,,2]", false},
	{"missing comma", "[1 2]", false},
	{"key without value", `{"a"}`, false},
	{"colon without value", `{"a":}`, false},
	{"trailing comma object", `{"a":1,}`, false},
	{"leading comma object", `{,"a":1}`, false},
	{"number key", `{1:2}`, false},
	{"bare key", `{a:1}`, false},
	{"single quoted key", `{'a':1}`, false},
	{"missing colon", `{"a" 1}`, false},
	{"double colon", `{"a"::1}`, false},
	{"missing comma object", `{"a":1 "b":2}`, false},
	{"array closed by brace", "[}", false},
	{"object closed by bracket", "{]", false},
	{"object value closed by bracket", `{"a":1]`, false},
	{"array closed by brace after value", "[1}", false},
	{"extra close array", "[1]]", false},
	{"extra close object", `{"a":1}}`, false},
	{"unclosed inner", "[[1]", false},
	{"unclosed object after value", `{"a":1`, false},
	{"unclosed object after comma", `{"a":1,`, false},
	{"unclosed object after key", `{"a"`, false},
	{"unclosed array after comma", `[1,`, false},
	{"array as key", `{[]:1}`, false},
	{"colon in array", `[1:2]`, false},
}

func TestValidTable(t *testing.T) {
	t.Parallel()
	for _, tc := range tricky {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := []byte(tc.in)
			if got := json.Valid(in); got != tc.want {
				t.Errorf("encoding/json.Valid(%q) = %v, the table says %v", tc.in, got, tc.want)
			}
			if got := jsoncheck.Valid(in); got != tc.want {
				t.Errorf("jsoncheck.Valid(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// nest returns depth containers around a value: arrays "[[[0]]]", objects
// {"a":{"a":0}}, or alternating.
func nest(kind string, depth int) []byte {
	var b bytes.Buffer
	for d := range depth {
		if kind == "array" || kind == "mixed" && d%2 == 0 {
			b.WriteString("[")
		} else {
			b.WriteString(`{"a":`)
		}
	}
	b.WriteString("0")
	for d := depth - 1; d >= 0; d-- {
		if kind == "array" || kind == "mixed" && d%2 == 0 {
			b.WriteString("]")
		} else {
			b.WriteString("}")
		}
	}
	return b.Bytes()
}

func TestValidDepth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind  string
		depth int
		want  bool
	}{
		{"array", 1, true},
		{"array", 63, true},
		{"array", 64, true},
		{"array", 65, true},
		{"array", 256, true},
		{"array", 257, true},
		{"array", 10000, true},
		{"array", 10001, false},
		{"object", 10000, true},
		{"object", 10001, false},
		{"mixed", 129, true},
		{"mixed", 10000, true},
		{"mixed", 10001, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s_%d", tc.kind, tc.depth), func(t *testing.T) {
			t.Parallel()
			in := nest(tc.kind, tc.depth)
			if got := json.Valid(in); got != tc.want {
				t.Errorf("encoding/json.Valid = %v, the table says %v", got, tc.want)
			}
			if got := jsoncheck.Valid(in); got != tc.want {
				t.Errorf("jsoncheck.Valid = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestValidDepthMismatch closes deep stacks with the wrong bracket at every
// level that crosses a word of the kind stack, so a bit stored in the wrong
// word or position shows up.
func TestValidDepthMismatch(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{63, 64, 65, 127, 128, 129, 300} {
		in := nest("mixed", depth)
		for i := len(in) - depth; i < len(in); i++ {
			mutated := bytes.Clone(in)
			if mutated[i] == ']' {
				mutated[i] = '}'
			} else {
				mutated[i] = ']'
			}
			if jsoncheck.Valid(mutated) || json.Valid(mutated) {
				t.Errorf("depth %d, wrong closer at %d: jsoncheck %v, encoding/json %v, want both false",
					depth, i, jsoncheck.Valid(mutated), json.Valid(mutated))
			}
		}
	}
}

func readEvent(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/event.json")
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func TestValidAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process's allocations.
	inputs := map[string][]byte{
		"event":        readEvent(t),
		"array_64":     nest("array", 64),
		"object_64":    nest("object", 64),
		"mixed_256":    nest("mixed", 256),
		"invalid_tail": append(nest("array", 64), 'x'),
	}
	for name, in := range inputs {
		if allocs := testing.AllocsPerRun(100, func() { jsoncheck.Valid(in) }); allocs != 0 {
			t.Errorf("%s: %v allocations per Valid, want 0", name, allocs)
		}
	}
}

// documents are valid inputs to mutate: the event body compact and indented,
// and small documents that reach every kind of value.
func documents(tb testing.TB) [][]byte {
	tb.Helper()
	event := readEvent(tb)
	var indented bytes.Buffer
	if err := json.Indent(&indented, event, "", "\t"); err != nil {
		tb.Fatal(err)
	}
	docs := [][]byte{event, indented.Bytes()}
	for _, s := range []string{
		`{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"],"b":{},"c":[]}`,
		` [ 0 , -0.0 , 1E-9 , "\"\\\/" , { "k" : [ ] } ] `,
		`"just a string with \t escapes \ud83d\ude00"`,
		`-123.456e-7`,
	} {
		docs = append(docs, []byte(s))
	}
	return docs
}

// interesting bytes to put into documents: every byte the grammar names, a
// few it does not, a control byte and invalid UTF-8.
const interesting = "{}[]:,\"\\/ \t\r\n\f0123456789-+.eEtrufalsn\x00\x1f\x7f\x80\xffxu"

// mutations calls fn with every truncation of doc, doc with each byte
// deleted, and doc with each byte replaced by, or preceded by, each
// interesting byte.
func mutations(doc []byte, fn func([]byte)) {
	for i := range len(doc) + 1 {
		fn(doc[:i])
	}
	m := make([]byte, 0, len(doc)+1)
	for i := range doc {
		fn(append(append(m[:0], doc[:i]...), doc[i+1:]...))
		for j := range len(interesting) {
			c := interesting[j]
			m = append(m[:0], doc...)
			m[i] = c
			fn(m)
			m = append(append(append(m[:0], doc[:i]...), c), doc[i:]...)
			fn(m)
		}
	}
}

// TestValidMutations runs every single-byte mutation of the documents
// through both functions: most are invalid, and each invalid one fails at a
// different place in the grammar.
func TestValidMutations(t *testing.T) {
	t.Parallel()
	for _, doc := range documents(t) {
		if !jsoncheck.Valid(doc) || !json.Valid(doc) {
			t.Fatalf("document %q: jsoncheck %v, encoding/json %v, want both true", doc, jsoncheck.Valid(doc), json.Valid(doc))
		}
		failures, valid, total := 0, 0, 0
		mutations(doc, func(in []byte) {
			total++
			want := json.Valid(in)
			if want {
				valid++
			}
			if got := jsoncheck.Valid(in); got != want && failures < 10 {
				failures++
				t.Errorf("jsoncheck.Valid(%q) = %v, encoding/json says %v", in, got, want)
			}
		})
		// Both outcomes must be exercised for the comparison to mean much.
		if valid == 0 || valid == total {
			t.Errorf("document %.40q: %d of %d mutations valid, want some of each", doc, valid, total)
		}
	}
}

// tokens are the pieces TestValidRandom glues together: mostly grammatical,
// sometimes not.
var tokens = []string{
	"{", "}", "[", "]", ":", ",", " ", "\n", `"a"`, `""`, `"\u00e9"`, `"\"`, `"x`, `\`,
	"0", "1", "-", "12", ".5", "e3", "E-", "true", "false", "null", "tru", "n",
	"\t", "\x01", "\xff", `"é"`,
}

// TestValidRandom compares both functions on random token soups from a fixed
// seed, so a failure reproduces.
func TestValidRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	var b []byte
	valid, failures := 0, 0
	const rounds = 50000
	for range rounds {
		b = b[:0]
		for range 1 + r.IntN(24) {
			b = append(b, tokens[r.IntN(len(tokens))]...)
		}
		want := json.Valid(b)
		if want {
			valid++
		}
		if got := jsoncheck.Valid(b); got != want && failures < 10 {
			failures++
			t.Errorf("jsoncheck.Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	}
	if valid == 0 {
		t.Errorf("no valid input in %d random rounds: the comparison tested only rejections", rounds)
	}
}

func FuzzValid(f *testing.F) {
	for _, tc := range tricky {
		f.Add([]byte(tc.in))
	}
	// The 10000-deep inputs stay in TestValidDepth: 60 KB seeds would slow
	// every mutation the fuzzer derives from them.
	for _, depth := range []int{64, 65, 257} {
		f.Add(nest("mixed", depth))
	}
	for _, doc := range documents(f) {
		f.Add(doc)
		// A sample of the mutations TestValidMutations runs in full:
		// every 251st keeps the seed corpus small (about a thousand).
		n := 0
		mutations(doc, func(in []byte) {
			if n%251 == 0 {
				f.Add(bytes.Clone(in))
			}
			n++
		})
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := jsoncheck.Valid(in), json.Valid(in); got != want {
			t.Errorf("jsoncheck.Valid(%q) = %v, encoding/json says %v", in, got, want)
		}
	})
}

// batch returns an array of copies of the event, each with its own id, of
// at least size bytes.
func batch(event []byte, size int) []byte {
	b := []byte("[")
	for i := 0; len(b) < size; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, bytes.Replace(event, []byte("evt_01JHK3Q8Z5N7R2W4X6Y8B0C2D4"), fmt.Appendf(nil, "evt_%026d", i), 1)...)
	}
	return append(b, ']')
}

func BenchmarkValid(b *testing.B) {
	event := readEvent(b)
	bodies := []struct {
		name string
		data []byte
	}{
		{"event_1KiB", event},
		{"batch_64KiB", batch(event, 64<<10)},
	}
	impls := []struct {
		name  string
		valid func([]byte) bool
	}{
		{"encoding_json", json.Valid},
		{"jsoncheck", jsoncheck.Valid},
	}
	for _, body := range bodies {
		if !json.Valid(body.data) || !jsoncheck.Valid(body.data) {
			b.Fatalf("%s is not valid JSON", body.name)
		}
		for _, impl := range impls {
			b.Run(body.name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(body.data)))
				b.ReportAllocs()
				ok := true
				for b.Loop() {
					ok = impl.valid(body.data) && ok
				}
				if !ok {
					b.Fatal("Valid returned false")
				}
			})
		}
	}
}

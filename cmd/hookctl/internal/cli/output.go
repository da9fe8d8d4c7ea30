package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// table writes aligned columns.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func row(tw io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c)
	}
	fmt.Fprintln(tw)
}

// when formats a time for tables: UTC, second precision, "-" when unknown.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func status(code int32) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(int(code))
}

// oneLine shortens s to n runes on one line, for table cells.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// pj is a proto message as JSON (snake_case names), for embedding in a
// document written by writeJSON.
func pj(m proto.Message) json.RawMessage {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field fails; say so in the output
		// rather than dropping the record.
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}

// writeJSON writes one indented JSON document (stable formatting: protojson
// output is re-indented here).
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// prettyBody is a message body for people: indented JSON, or the text, or
// a quoted string when it is not UTF-8.
func prettyBody(data []byte) (kind, text string) {
	if len(bytes.TrimSpace(data)) == 0 {
		return "empty", ""
	}
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") == nil {
		return "JSON", buf.String()
	}
	if utf8.Valid(data) {
		return "not JSON", string(data)
	}
	return "binary", strconv.Quote(string(data))
}

// bodyJSON is a body inside a JSON document: itself when it is JSON, else a
// string.
func bodyJSON(data []byte) any {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	return string(data)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printable writes what it is given with control characters shown as
// escapes (\x1b, \x07, …): descriptions, event types, ids and error texts
// come from tenants and publishers, and an escape sequence printed raw
// would drive the operator's terminal (retitle it, rewrite lines, hide
// text). Tab and newline pass; so does valid UTF-8 text.
// A rune split across two writes is held back until its end arrives.
type printable struct {
	w    io.Writer
	tail []byte
}

func (p *printable) Write(b []byte) (int, error) {
	buf := append(p.tail, b...)
	cut := len(buf)
	// Hold back an incomplete UTF-8 sequence at the end (at most 3 bytes).
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-3; i-- {
		if utf8.RuneStart(buf[i]) {
			if !utf8.FullRune(buf[i:]) {
				cut = i
			}
			break
		}
	}
	p.tail = append([]byte(nil), buf[cut:]...)
	if _, err := io.WriteString(p.w, Printable(string(buf[:cut]))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Printable returns s with every control character but tab and newline
// (C0, DEL, C1) written as a \xNN escape, and invalid UTF-8 as \xNN too.
func Printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t' || r == '\n':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

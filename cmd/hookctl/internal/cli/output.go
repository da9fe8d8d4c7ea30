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

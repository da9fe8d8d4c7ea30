package cli

import (
	"strings"
	"testing"
)

// Text from tenants and publishers cannot drive the operator's terminal:
// escape sequences and other controls are shown, not sent; text, tabs and
// newlines, and runes split across writes, pass as they are.
func TestPrintableOutput(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	w := &printable{w: &out}
	for _, s := range []string{"desc \x1b]0;pwned\x07 \x1b[2J\r", "\ttab\n", "caf\xc3", "\xa9 \xc2\x9b31m end\n", "bad \xff\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	want := "desc \\x1b]0;pwned\\x07 \\x1b[2J\\x0d\ttab\ncafé \\u009b31m end\nbad \\xff\n"
	if got := out.String(); got != want {
		t.Fatalf("wrote %q\nwant   %q", got, want)
	}
}

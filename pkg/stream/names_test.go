package stream_test

import (
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
)

func TestAttemptRecords(t *testing.T) {
	for _, tt := range []struct {
		body string
		want []string
	}{
		{"", nil},
		{`{"a":1}`, []string{`{"a":1}`}},
		{"{\"a\":1}\n", []string{`{"a":1}`}},
		{"{\"a\":1}\n{\"a\":2}\n", []string{`{"a":1}`, `{"a":2}`}},
		{"{\"a\":1}\n\n  \n{\"a\":2}", []string{`{"a":1}`, `{"a":2}`}},
	} {
		got := stream.AttemptRecords([]byte(tt.body))
		if len(got) != len(tt.want) {
			t.Fatalf("AttemptRecords(%q) = %q, want %q", tt.body, got, tt.want)
		}
		for i := range got {
			if string(got[i]) != tt.want[i] {
				t.Fatalf("AttemptRecords(%q)[%d] = %q, want %q", tt.body, i, got[i], tt.want[i])
			}
		}
	}
}

func TestEventIDFromMsgID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tenant, msgID, want string
		scoped              bool
	}{
		{"acme", "acme:ord_1", "ord_1", true},
		{"acme", stream.EventMsgID("acme", "a:b"), "a:b", true},
		{"acme", "globex:ord_1", "globex:ord_1", false},
		{"acme", "ord_1", "ord_1", false},
		{"acme", "acme:", "acme:", false},
		{"acme", "", "", false},
		{"", ":x", ":x", false},
	}
	for _, tt := range tests {
		id, scoped := stream.EventIDFromMsgID(tt.tenant, tt.msgID)
		if id != tt.want || scoped != tt.scoped {
			t.Errorf("EventIDFromMsgID(%q, %q) = %q, %v; want %q, %v", tt.tenant, tt.msgID, id, scoped, tt.want, tt.scoped)
		}
	}
}

func TestValidateOrderingKey(t *testing.T) {
	for _, ok := range []string{"a", "order 42", "cus_123/acct:9", strings.Repeat("k", stream.MaxOrderingKeyLen)} {
		if err := stream.ValidateOrderingKey(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " lead", "trail ", "tab\there", "new\nline", "é", strings.Repeat("k", stream.MaxOrderingKeyLen+1)} {
		if err := stream.ValidateOrderingKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

package stream_test

import (
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

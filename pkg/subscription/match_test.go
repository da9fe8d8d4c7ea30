package subscription_test

import (
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/subscription"
)

func TestMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, filter, eventType string
		want                    bool
	}{
		{name: "exact", filter: "order.created", eventType: "order.created", want: true},
		{name: "exact differs", filter: "order.created", eventType: "order.updated"},
		{name: "one token", filter: "ping", eventType: "ping", want: true},
		{name: "star one token", filter: "order.*", eventType: "order.created", want: true},
		{name: "star not two tokens", filter: "order.*", eventType: "order.created.v2"},
		{name: "star not zero tokens", filter: "order.*", eventType: "order"},
		{name: "star middle", filter: "order.*.v2", eventType: "order.created.v2", want: true},
		{name: "star first", filter: "*.created", eventType: "order.created", want: true},
		{name: "star alone", filter: "*", eventType: "ping", want: true},
		{name: "star alone not two", filter: "*", eventType: "a.b"},
		{name: "gt one token", filter: "invoice.>", eventType: "invoice.paid", want: true},
		{name: "gt many tokens", filter: "invoice.>", eventType: "invoice.paid.late.v2", want: true},
		{name: "gt needs one token", filter: "invoice.>", eventType: "invoice"},
		{name: "gt alone", filter: ">", eventType: "a.b.c", want: true},
		{name: "gt other prefix", filter: "invoice.>", eventType: "order.paid"},
		{name: "gt not last", filter: "a.>.b", eventType: "a.x.b"},
		{name: "filter longer", filter: "a.b.c", eventType: "a.b"},
		{name: "type longer", filter: "a.b", eventType: "a.b.c"},
		{name: "prefix is not a token", filter: "order", eventType: "orders"},
		{name: "empty filter", filter: "", eventType: "a"},
		{name: "empty type", filter: "*", eventType: ""},
		{name: "empty token in type", filter: "a.*.c", eventType: "a..c"},
		{name: "trailing dot in type", filter: "a.>", eventType: "a.b."},
		{name: "empty token in filter", filter: "a..c", eventType: "a..c"},
		{name: "case sensitive", filter: "Order.created", eventType: "order.created"},
		{name: "catch-all skips operational events", filter: ">", eventType: "hookline.subscription.failing"},
		{name: "star skips operational events", filter: "*.subscription.failing", eventType: "hookline.subscription.failing"},
		{name: "named operational events", filter: "hookline.>", eventType: "hookline.delivery.dead_lettered", want: true},
		{name: "one operational type", filter: "hookline.subscription.disabled", eventType: "hookline.subscription.disabled", want: true},
		{name: "partial wildcard is literal", filter: "order*", eventType: "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := subscription.Matches(tt.filter, tt.eventType); got != tt.want {
				t.Fatalf("Matches(%q, %q) = %v, want %v", tt.filter, tt.eventType, got, tt.want)
			}
		})
	}
}

func TestMatchesAny(t *testing.T) {
	t.Parallel()
	filters := []string{"order.created", "invoice.>"}
	if !subscription.MatchesAny(filters, "invoice.paid") {
		t.Error("invoice.paid should match invoice.>")
	}
	if subscription.MatchesAny(filters, "order.updated") {
		t.Error("order.updated should match nothing")
	}
	if subscription.MatchesAny(nil, "order.created") {
		t.Error("no filters should match nothing")
	}
}

func TestMatchesDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		subscription.Matches("order.*.v2", "order.created.v2")
		subscription.Matches("invoice.>", "invoice.paid.late")
	})
	if allocs != 0 {
		t.Fatalf("Matches allocates %v times per run", allocs)
	}
}

// referenceMatches is the obvious implementation Matches must agree with.
func referenceMatches(filter, eventType string) bool {
	fs, es := strings.Split(filter, "."), strings.Split(eventType, ".")
	for i, f := range fs {
		if f == "" || (f == ">" && i != len(fs)-1) {
			return false
		}
	}
	for _, e := range es {
		if e == "" {
			return false
		}
	}
	for i, f := range fs {
		if f == ">" {
			return len(es) > i
		}
		if i >= len(es) || (f != "*" && f != es[i]) {
			return false
		}
	}
	return len(fs) == len(es)
}

func FuzzMatches(f *testing.F) {
	for _, s := range [][2]string{
		{"order.created", "order.created"}, {"order.*", "order.created"}, {"invoice.>", "invoice.paid.late"},
		{">", "a"}, {"*", ""}, {"a.>.b", "a.x.b"}, {"a..b", "a..b"}, {"*.*", "a.b."}, {".", "."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, eventType string) {
		if got, want := subscription.Matches(filter, eventType), referenceMatches(filter, eventType); got != want {
			t.Fatalf("Matches(%q, %q) = %v, reference says %v", filter, eventType, got, want)
		}
		// A valid event type and a valid filter built from it always match.
		if subscription.ValidateEventType(eventType) == nil {
			if !subscription.Matches(eventType, eventType) {
				t.Fatalf("%q does not match itself", eventType)
			}
			if !subscription.Matches(">", eventType) {
				t.Fatalf("> does not match %q", eventType)
			}
		}
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a.", 127) + "ab" // 256 characters
	tests := []struct {
		name    string
		fn      func(string) error
		in      string
		wantErr string // "" = valid
	}{
		{name: "tenant ok", fn: subscription.ValidateTenant, in: "acme-01_x"},
		{name: "tenant empty", fn: subscription.ValidateTenant, in: "", wantErr: "tenant is empty"},
		{name: "tenant upper", fn: subscription.ValidateTenant, in: "Acme", wantErr: "invalid character"},
		{name: "tenant dot", fn: subscription.ValidateTenant, in: "a.b", wantErr: "invalid character"},
		{name: "tenant leading dash", fn: subscription.ValidateTenant, in: "-a", wantErr: "must start"},
		{name: "tenant 64", fn: subscription.ValidateTenant, in: strings.Repeat("a", 64)},
		{name: "tenant 65", fn: subscription.ValidateTenant, in: strings.Repeat("a", 65), wantErr: "longer than 64"},
		{name: "tenant wildcard", fn: subscription.ValidateTenant, in: "*", wantErr: "invalid character"},
		{name: "type ok", fn: subscription.ValidateEventType, in: "Order.created_v2-x"},
		{name: "type empty", fn: subscription.ValidateEventType, in: "", wantErr: "event type is empty"},
		{name: "type double dot", fn: subscription.ValidateEventType, in: "a..b", wantErr: "empty token"},
		{name: "type trailing dot", fn: subscription.ValidateEventType, in: "a.", wantErr: "empty token"},
		{name: "type star", fn: subscription.ValidateEventType, in: "a.*", wantErr: "wildcards"},
		{name: "type gt", fn: subscription.ValidateEventType, in: ">", wantErr: "wildcards"},
		{name: "type space", fn: subscription.ValidateEventType, in: "a b", wantErr: "invalid character"},
		{name: "type too long", fn: subscription.ValidateEventType, in: long, wantErr: "longer than 255"},
		{name: "type 255", fn: subscription.ValidateEventType, in: long[2:] + "c"},
		{name: "filter star", fn: subscription.ValidateFilter, in: "order.*"},
		{name: "filter gt", fn: subscription.ValidateFilter, in: "invoice.>"},
		{name: "filter gt alone", fn: subscription.ValidateFilter, in: ">"},
		{name: "filter gt middle", fn: subscription.ValidateFilter, in: "a.>.b", wantErr: "last token"},
		{name: "filter partial wildcard", fn: subscription.ValidateFilter, in: "order*", wantErr: "invalid character"},
		{name: "filter empty", fn: subscription.ValidateFilter, in: "", wantErr: "filter is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.fn(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%q: unexpected error %v", tt.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("%q: error %v, want one containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

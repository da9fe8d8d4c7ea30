package deadletter

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestTypeMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, filter, typ string
		want              bool
	}{
		{"exact", "order.created", "order.created", true},
		{"exact other", "order.created", "order.paid", false},
		{"star one token", "order.*", "order.created", true},
		{"star not two tokens", "order.*", "order.created.eu", false},
		{"star not zero tokens", "order.*", "order", false},
		{"gt rest", "order.>", "order.created.eu", true},
		{"gt needs one", "order.>", "order", false},
		{"gt all", ">", "anything.at.all", true},
		{"star middle", "order.*.eu", "order.created.eu", true},
		{"longer filter", "order.created.eu", "order.created", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := TypeMatches(tc.filter, tc.typ); got != tc.want {
				t.Fatalf("TypeMatches(%q, %q) = %v, want %v", tc.filter, tc.typ, got, tc.want)
			}
		})
	}
}

func TestParseStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		match   []int32
		nomatch []int32
		wantErr bool
	}{
		{name: "code", in: "500", match: []int32{500}, nomatch: []int32{502, 0}},
		{name: "class", in: "5xx", match: []int32{500, 503, 599}, nomatch: []int32{429, 0}},
		{name: "upper class", in: "4XX", match: []int32{404, 410}, nomatch: []int32{500}},
		{name: "list", in: "429, 503", match: []int32{429, 503}, nomatch: []int32{500}},
		{name: "no answer", in: "0", match: []int32{0}, nomatch: []int32{500}},
		{name: "word", in: "bad", wantErr: true},
		{name: "out of range", in: "700", wantErr: true},
		{name: "class 6", in: "6xx", wantErr: true},
		{name: "empty item", in: "500,", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ms, err := ParseStatuses(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseStatuses(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			sel := Selection{Statuses: ms}
			for _, s := range tc.match {
				if !sel.Match(entry(&hooklinev1.DeadLetter{LastStatus: s})) {
					t.Errorf("%q does not match status %d", tc.in, s)
				}
			}
			for _, s := range tc.nomatch {
				if sel.Match(entry(&hooklinev1.DeadLetter{LastStatus: s})) {
					t.Errorf("%q matches status %d", tc.in, s)
				}
			}
		})
	}
}

func entry(r *hooklinev1.DeadLetter) Entry { return Entry{Record: r, Header: nats.Header{}} }

func TestSelectionValidate(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name    string
		sel     Selection
		wantErr bool
	}{
		{name: "empty", sel: Selection{}},
		{name: "filters", sel: Selection{Tenant: "acme", Subscription: "sub_1", Types: []string{"order.*"}, Reasons: []string{"gone"}}},
		{name: "seqs", sel: Selection{Seqs: []uint64{1, 2}}},
		{name: "seqs and filters", sel: Selection{Seqs: []uint64{1}, Tenant: "acme"}, wantErr: true},
		{name: "tenant with dot", sel: Selection{Tenant: "a.b"}, wantErr: true},
		{name: "subscription wildcard", sel: Selection{Subscription: "*"}, wantErr: true},
		{name: "gt not last", sel: Selection{Types: []string{"order.>.x"}}, wantErr: true},
		{name: "empty token", sel: Selection{Types: []string{"order..x"}}, wantErr: true},
		{name: "partial wildcard", sel: Selection{Types: []string{"order.cre*"}}, wantErr: true},
		{name: "unknown reason", sel: Selection{Reasons: []string{"attempt_exhausted"}}, wantErr: true},
		{name: "since after until", sel: Selection{Since: now, Until: now.Add(-time.Hour)}, wantErr: true},
		{name: "negative limit", sel: Selection{Limit: -1}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.sel.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestSelectionSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sel  Selection
		want string
	}{
		{"all", Selection{}, "deadletter.>"},
		{"tenant", Selection{Tenant: "acme"}, "deadletter.acme.*"},
		{"subscription", Selection{Subscription: "sub_1"}, "deadletter.*.sub_1"},
		{"both", Selection{Tenant: "acme", Subscription: "sub_1"}, "deadletter.acme.sub_1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.sel.Subject(); got != tc.want {
				t.Fatalf("Subject() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectionMatch(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	rec := &hooklinev1.DeadLetter{
		Seq: 7, Tenant: "acme", SubscriptionId: "sub_1", EventType: "order.created",
		Reason: "attempts_exhausted", LastStatus: 503, DeadLetteredAt: timestamppb.New(at),
	}
	tests := []struct {
		name string
		sel  Selection
		want bool
	}{
		{"all", Selection{}, true},
		{"tenant", Selection{Tenant: "acme"}, true},
		{"other tenant", Selection{Tenant: "globex"}, false},
		{"other subscription", Selection{Subscription: "sub_2"}, false},
		{"type filter", Selection{Types: []string{"invoice.*", "order.*"}}, true},
		{"other type", Selection{Types: []string{"invoice.*"}}, false},
		{"reason", Selection{Reasons: []string{"gone", "attempts_exhausted"}}, true},
		{"other reason", Selection{Reasons: []string{"gone"}}, false},
		{"since equal", Selection{Since: at}, true},
		{"since after", Selection{Since: at.Add(time.Second)}, false},
		{"until equal excludes", Selection{Until: at}, false},
		{"until after", Selection{Until: at.Add(time.Second)}, true},
		{"max seq equal", Selection{MaxSeq: 7}, true},
		{"max seq below", Selection{MaxSeq: 6}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.sel.Match(entry(rec)); got != tc.want {
				t.Fatalf("Match() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	ts := func(s string) *timestamppb.Timestamp {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return timestamppb.New(tm)
	}
	rec := &hooklinev1.DeadLetter{
		Seq: 12, EventId: "evt_1", Tenant: "acme", EventType: "order.created", SubscriptionId: "sub_1",
		Reason: "permanent_failure", LastStatus: 400, LastError: "HTTP 400", Attempts: 3,
		FirstAttemptAt: ts("2026-11-28T10:00:00Z"), LastAttemptAt: ts("2026-11-28T10:05:00Z"),
		OccurredAt: ts("2026-11-28T09:59:59Z"), DeadLetteredAt: ts("2026-11-28T10:05:01Z"),
		OriginalSubject: "deliveries.acme.sub_1", Data: []byte(`{"id":1}`),
	}
	m := Encode(rec)
	if m.Subject != "deadletter.acme.sub_1" {
		t.Fatalf("subject %q", m.Subject)
	}
	if got := m.Header.Get(stream.HeaderMsgID); got != "evt_1:sub_1:dlq" {
		t.Fatalf("Nats-Msg-Id %q", got)
	}
	got := Decode(m.Subject, 12, time.Time{}, m.Header, m.Data).Record
	if !proto.Equal(got, rec) {
		t.Fatalf("round trip:\n got %v\nwant %v", got, rec)
	}
}

func TestDecodeLenient(t *testing.T) {
	t.Parallel()
	stored := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	h := nats.Header{}
	h.Set(stream.HeaderEventID, "evt_1")
	h.Set(stream.HeaderAttempt, "not a number")
	h.Set(stream.HeaderDeadLetteredAt, "yesterday")
	e := Decode("deadletter.acme.sub_9", 3, stored, h, nil)
	r := e.Record
	if r.GetTenant() != "acme" || r.GetSubscriptionId() != "sub_9" {
		t.Fatalf("tenant/subscription from subject: %q %q", r.GetTenant(), r.GetSubscriptionId())
	}
	if r.GetAttempts() != 0 {
		t.Fatalf("attempts %d from a bad header", r.GetAttempts())
	}
	if !e.Time().Equal(stored) {
		t.Fatalf("time %v, want the stream time %v", e.Time(), stored)
	}
}

package wire_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
)

// protoFieldList is the list a proto field's comment gives after "): ",
// one word per comma-separated item: "Why (…): a, b (note), c." → a, b, c.
func protoFieldList(t *testing.T, file, field string) []string {
	t.Helper()
	b, err := os.ReadFile("../../proto/hookline/v1/" + file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), field) })
	if at < 0 {
		t.Fatalf("%s has no field %q", file, field)
	}
	var comment []string
	for i := at - 1; i >= 0 && strings.HasPrefix(strings.TrimSpace(lines[i]), "//"); i-- {
		comment = append([]string{strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "//"))}, comment...)
	}
	_, list, ok := strings.Cut(strings.Join(comment, " "), "): ")
	if !ok {
		t.Fatalf("%s: the comment of %q has no list after \"): \": %q", file, field, comment)
	}
	var out []string
	for item := range strings.SplitSeq(strings.TrimSuffix(list, "."), ",") {
		out = append(out, strings.Fields(item)[0])
	}
	return out
}

// docsTable is the first column of the table under heading in
// docs/wire-format.md, without backticks.
func docsTable(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/wire-format.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/wire-format.md has no heading %q", heading)
	}
	cell := regexp.MustCompile("^\\| `([a-z_]+)` \\|")
	var out []string
	inTable := false
	for line := range strings.SplitSeq(after, "\n") {
		if strings.HasPrefix(line, "|") {
			inTable = true
			if m := cell.FindStringSubmatch(line); m != nil {
				out = append(out, m[1])
			}
			continue
		}
		if inTable {
			break
		}
	}
	return out
}

func TestProtoAndDocsListTheDeadLetterReasons(t *testing.T) {
	t.Parallel()
	want := wire.DeadLetterReasons()
	if got := protoFieldList(t, "deadletter.proto", "string reason ="); !slices.Equal(got, want) {
		t.Errorf("deadletter.proto's reason comment lists %v, pkg/wire %v", got, want)
	}
	if got := docsTable(t, "### Dead-letter reasons"); !slices.Equal(got, want) {
		t.Errorf("docs/wire-format.md's dead-letter reasons are %v, pkg/wire's %v", got, want)
	}
}

func TestProtoAndDocsListTheDisabledReasons(t *testing.T) {
	t.Parallel()
	want := wire.DisabledReasons()
	if got := protoFieldList(t, "subscription.proto", "string disabled_reason ="); !slices.Equal(got, want) {
		t.Errorf("subscription.proto's disabled_reason comment lists %v, pkg/wire %v", got, want)
	}
	if got := docsTable(t, "### Disabled reasons"); !slices.Equal(got, want) {
		t.Errorf("docs/wire-format.md's disabled reasons are %v, pkg/wire's %v", got, want)
	}
	for _, r := range wire.AutomaticDisabledReasons() {
		if !slices.Contains(want, r) {
			t.Errorf("automatic reason %q is not a disabled reason", r)
		}
	}
}

func TestReasonListsAreCopies(t *testing.T) {
	t.Parallel()
	l := wire.DeadLetterReasons()
	l[0] = "changed"
	if wire.DeadLetterReasons()[0] == "changed" || wire.IsDeadLetterReason("changed") {
		t.Fatal("a caller changed the dead-letter reasons")
	}
	if !wire.IsDeadLetterReason(wire.DeadLetterGone) || wire.IsDeadLetterReason(wire.DisabledFailing) {
		t.Fatal("IsDeadLetterReason")
	}
}

// TestDeadLetterMsg: the task's headers ride along, the record's replace
// them, an outcome field the record lacks does not survive from the task,
// and pkg/deadletter reads back what was written.
func TestDeadLetterMsg(t *testing.T) {
	t.Parallel()
	first := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	task := nats.Header{
		stream.HeaderEventID:        {"evt_from_task"},
		stream.HeaderLastError:      {"an error of an earlier attempt"},
		stream.HeaderLastAttemptAt:  {"2026-01-01T00:00:00Z"},
		stream.HeaderOrderingKey:    {"k1"},
		stream.HeaderSubscriptionID: {"sub_1"},
	}
	m := wire.DeadLetter{
		EventID:         "evt_1",
		Tenant:          "acme",
		EventType:       "order.created",
		OccurredAt:      "2026-01-02T00:00:00+02:00",
		SubscriptionID:  "sub_1",
		Replay:          "42",
		Reason:          wire.DeadLetterPermanentFailure,
		FirstAttemptAt:  first,
		DeadLetteredAt:  first.Add(time.Minute),
		OriginalSubject: "deliveries.acme.sub_1",
	}.Msg(task, []byte(`{"a":1}`))
	if m.Subject != "deadletter.acme.sub_1" || string(m.Data) != `{"a":1}` {
		t.Fatalf("subject %q data %q", m.Subject, m.Data)
	}
	checks := map[string]string{
		stream.HeaderEventID:         "evt_1",
		stream.HeaderOrderingKey:     "k1",
		stream.HeaderOccurredAt:      "2026-01-02T00:00:00+02:00",
		stream.HeaderReason:          "permanent_failure",
		stream.HeaderAttempt:         "0",
		stream.HeaderLastStatus:      "0",
		stream.HeaderLastError:       "",
		stream.HeaderFirstAttemptAt:  "2026-01-02T03:04:05.000000006Z",
		stream.HeaderLastAttemptAt:   "",
		stream.HeaderDeadLetteredAt:  "2026-01-02T03:05:05.000000006Z",
		stream.HeaderReplay:          "42",
		stream.HeaderOriginalSubject: "deliveries.acme.sub_1",
		stream.HeaderMsgID:           "evt_1:sub_1:dlq:42",
	}
	for k, want := range checks {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	rec := deadletter.Decode(m.Subject, 7, time.Time{}, m.Header, m.Data).Record
	if rec.GetReason() != wire.DeadLetterPermanentFailure || rec.GetEventId() != "evt_1" ||
		!rec.GetFirstAttemptAt().AsTime().Equal(first) || rec.GetLastAttemptAt() != nil {
		t.Errorf("read back %v", rec)
	}
	// A record without a dead-letter time leaves it to the stream's.
	if h := (wire.DeadLetter{EventID: "e", Tenant: "t", SubscriptionID: "s"}).Msg(nil, nil).Header; h.Get(stream.HeaderDeadLetteredAt) != "" {
		t.Errorf("dead-lettered-at %q for a zero time", h.Get(stream.HeaderDeadLetteredAt))
	}
}

package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	ctx   context.Context
	js    jetstream.JetStream
	store *deadletter.Store
}

func setup(t *testing.T) env {
	t.Helper()
	ctx, js := fixture.Start(t)
	st, err := deadletter.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return env{ctx: ctx, js: js, store: st}
}

// seed dead-letters n events of one subscription and returns their seqs.
func (e env) seed(t *testing.T, n int, tenant, sub string) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		seq, err := fixture.DeadLetter(e.ctx, e.js, &hooklinev1.DeadLetter{
			EventId: fmt.Sprintf("evt_%s_%d", sub, i), Tenant: tenant, SubscriptionId: sub, EventType: "order.created",
			LastStatus: 503,
		})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for _, id := range uniq(sub) {
		if err := fixture.Subscription(e.ctx, e.js, &hooklinev1.Subscription{Id: id, Tenant: tenant, Url: "https://example.com/hook"}); err != nil {
			t.Fatal(err)
		}
	}
	return seqs
}

func uniq(s ...string) []string { return slices.Compact(slices.Sorted(slices.Values(s))) }

// replaySeqs are the Hookline-Replay headers of every task in DELIVERIES,
// sorted: each replayed entry must appear exactly once.
func (e env) replaySeqs(t *testing.T) []uint64 {
	t.Helper()
	tasks, err := fixture.Tasks(e.ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, task := range tasks {
		n, err := strconv.ParseUint(task.Header.Get(stream.HeaderReplay), 10, 64)
		if err != nil {
			t.Fatalf("task %d has Hookline-Replay %q", task.Seq, task.Header.Get(stream.HeaderReplay))
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (e env) deadLetters(t *testing.T) uint64 {
	t.Helper()
	n, err := fixture.Count(e.ctx, e.js, stream.DeadLetter, "deadletter.>")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e env) selectAll(t *testing.T) []deadletter.Entry {
	t.Helper()
	entries, _, err := e.store.Select(e.ctx, deadletter.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestReplayTwicePublishesOneTaskPerEntry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	seqs := e.seed(t, 5, "acme", "sub_1")
	r := &deadletter.Replayer{JS: e.js, Store: e.store}

	entries := e.selectAll(t)
	results, err := r.Run(e.ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		if res.Outcome != deadletter.Replayed || res.Duplicate {
			t.Fatalf("first run: %+v", res)
		}
	}
	// Run again: the same selection is now empty, and even the stale list
	// publishes nothing.
	if again := e.selectAll(t); len(again) != 0 {
		t.Fatalf("second selection has %d entries, want 0", len(again))
	}
	results, err = r.Run(e.ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		if res.Outcome != deadletter.Gone {
			t.Fatalf("second run: %+v, want gone", res)
		}
	}
	if got := e.replaySeqs(t); !slices.Equal(got, seqs) {
		t.Fatalf("tasks replay %v, want each of %v once", got, seqs)
	}
	if n := e.deadLetters(t); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}
}

func TestReplayInterruptedThenResumedReplaysEachOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	seqs := e.seed(t, 10, "acme", "sub_1")
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	r := &deadletter.Replayer{JS: e.js, Store: e.store, Rate: 1000, OnResult: func(done int, _ deadletter.Result) {
		if done == 4 {
			cancel() // Ctrl-C while entry 4 is done and before entry 5
		}
	}}
	results, err := r.Run(ctx, e.selectAll(t))
	if !errors.Is(err, deadletter.ErrInterrupted) {
		t.Fatalf("Run = %v, want ErrInterrupted", err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results before the interrupt, want 4", len(results))
	}
	if got := e.replaySeqs(t); !slices.Equal(got, seqs[:4]) {
		t.Fatalf("after the interrupt tasks replay %v, want %v", got, seqs[:4])
	}
	if n := e.deadLetters(t); n != 6 {
		t.Fatalf("%d dead letters left, want 6", n)
	}

	resume := &deadletter.Replayer{JS: e.js, Store: e.store}
	rest := e.selectAll(t)
	if len(rest) != 6 || rest[0].Record.GetSeq() != seqs[4] {
		t.Fatalf("resumed selection %d entries from seq %d, want 6 from %d", len(rest), rest[0].Record.GetSeq(), seqs[4])
	}
	if _, err := resume.Run(e.ctx, rest); err != nil {
		t.Fatal(err)
	}
	if got := e.replaySeqs(t); !slices.Equal(got, seqs) {
		t.Fatalf("tasks replay %v, want each of %v once", got, seqs)
	}
}

func TestReplayAfterCrashBetweenPublishAndDeleteDoesNotDouble(t *testing.T) {
	t.Parallel()
	e := setup(t)
	seqs := e.seed(t, 3, "acme", "sub_1")
	// A run that published the first entry's task and died before deleting
	// the entry.
	first, err := e.store.Get(e.ctx, seqs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replay.Ask(e.ctx, e.js.Conn(), first.Record.GetSeq()); err != nil {
		t.Fatal(err)
	}
	results, err := (&deadletter.Replayer{JS: e.js, Store: e.store}).Run(e.ctx, e.selectAll(t))
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Duplicate || results[1].Duplicate || results[2].Duplicate {
		t.Fatalf("duplicates %v %v %v, want only the first", results[0].Duplicate, results[1].Duplicate, results[2].Duplicate)
	}
	if got := e.replaySeqs(t); !slices.Equal(got, seqs) {
		t.Fatalf("tasks replay %v, want each of %v once", got, seqs)
	}
	if n := e.deadLetters(t); n != 0 {
		t.Fatalf("%d dead letters left", n)
	}
}

func TestReplayedTaskKeepsEventAndBody(t *testing.T) {
	t.Parallel()
	e := setup(t)
	body := []byte(`{"order_id":"o_1","total":12345678901234567890}`)
	seq, err := fixture.DeadLetter(e.ctx, e.js, &hooklinev1.DeadLetter{
		EventId: "evt_keep", Tenant: "acme", SubscriptionId: "sub_1", EventType: "order.created", Data: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.seed(t, 0, "acme", "sub_1")
	if _, err := (&deadletter.Replayer{JS: e.js, Store: e.store}).Run(e.ctx, e.selectAll(t)); err != nil {
		t.Fatal(err)
	}
	tasks, err := fixture.Tasks(e.ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 {
		t.Fatalf("%d tasks", len(tasks))
	}
	task := tasks[0]
	if task.Subject != "deliveries.acme.sub_1" || string(task.Data) != string(body) ||
		task.Header.Get(stream.HeaderEventID) != "evt_keep" || task.Header.Get(stream.HeaderReplay) != strconv.FormatUint(seq, 10) ||
		task.Header.Get(stream.HeaderAttempt) != "" {
		t.Fatalf("task %s %q headers %v", task.Subject, task.Data, task.Header)
	}
}

func TestSelectFiltersAndOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	now := time.Now().UTC()
	add := func(id, tenant, sub, typ, reason string, status int32, ago time.Duration) uint64 {
		seq, err := fixture.DeadLetter(e.ctx, e.js, &hooklinev1.DeadLetter{
			EventId: id, Tenant: tenant, SubscriptionId: sub, EventType: typ, Reason: reason,
			LastStatus: status, DeadLetteredAt: timestamppb.New(now.Add(-ago)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	s1 := add("e1", "acme", "sub_1", "order.created", "attempts_exhausted", 503, 10*time.Hour)
	s2 := add("e2", "acme", "sub_1", "order.paid", "permanent_failure", 400, 3*time.Hour)
	s3 := add("e3", "acme", "sub_2", "invoice.sent", "gone", 410, 2*time.Hour)
	s4 := add("e4", "globex", "sub_3", "order.created", "attempts_exhausted", 0, time.Hour)
	s5 := add("e5", "acme", "sub_1", "order.created", "attempts_exhausted", 500, 30*time.Minute)

	tests := []struct {
		name string
		sel  deadletter.Selection
		want []uint64
	}{
		{"all", deadletter.Selection{}, []uint64{s1, s2, s3, s4, s5}},
		{"subscription", deadletter.Selection{Subscription: "sub_1"}, []uint64{s1, s2, s5}},
		{"tenant", deadletter.Selection{Tenant: "globex"}, []uint64{s4}},
		{"type", deadletter.Selection{Types: []string{"order.*"}}, []uint64{s1, s2, s4, s5}},
		{"reason", deadletter.Selection{Reasons: []string{"gone", "permanent_failure"}}, []uint64{s2, s3}},
		{"status class", deadletter.Selection{Statuses: []deadletter.StatusMatch{{Class: 5}}}, []uint64{s1, s5}},
		{"no answer", deadletter.Selection{Statuses: []deadletter.StatusMatch{{Code: 0}}}, []uint64{s4}},
		{"since", deadletter.Selection{Since: now.Add(-150 * time.Minute)}, []uint64{s3, s4, s5}},
		{"window", deadletter.Selection{Since: now.Add(-4 * time.Hour), Until: now.Add(-time.Hour)}, []uint64{s2, s3}},
		{"max seq", deadletter.Selection{MaxSeq: s3}, []uint64{s1, s2, s3}},
		{"limit takes the oldest", deadletter.Selection{Subscription: "sub_1", Limit: 2}, []uint64{s1, s2}},
		{"seqs", deadletter.Selection{Seqs: []uint64{s4, s2, s4}}, []uint64{s4, s2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, _, err := e.store.Select(e.ctx, tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqsOf(entries); !slices.Equal(got, tc.want) {
				t.Fatalf("Select = %v, want %v", got, tc.want)
			}
		})
	}

	latest, matched, err := e.store.Latest(e.ctx, deadletter.Selection{Subscription: "sub_1", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(latest); matched != 3 || !slices.Equal(got, []uint64{s5, s2}) {
		t.Fatalf("Latest = %v of %d, want [%d %d] of 3 (newest first)", got, matched, s5, s2)
	}

	_, missing, err := e.store.Select(e.ctx, deadletter.Selection{Seqs: []uint64{s1, 999}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []uint64{999}) {
		t.Fatalf("missing = %v, want [999]", missing)
	}
}

func seqsOf(entries []deadletter.Entry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Record.GetSeq()
	}
	return out
}

func TestCheckSubscriptions(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.seed(t, 1, "acme", "sub_ok")
	e.seed(t, 2, "acme", "sub_off")
	e.seed(t, 1, "acme", "sub_gone")
	if err := fixture.Subscription(e.ctx, e.js, &hooklinev1.Subscription{Id: "sub_off", Tenant: "acme", Disabled: true, DisabledReason: "manual"}); err != nil {
		t.Fatal(err)
	}
	if err := fixture.DeleteSubscription(e.ctx, e.js, "acme", "sub_gone"); err != nil {
		t.Fatal(err)
	}
	problems, err := deadletter.CheckSubscriptions(e.ctx, e.js, e.selectAll(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []deadletter.Problem{
		{Tenant: "acme", SubscriptionID: "sub_gone", State: "deleted", Entries: 1},
		{Tenant: "acme", SubscriptionID: "sub_off", State: "disabled", DisabledReason: "manual", Entries: 2},
	}
	if !slices.Equal(problems, want) {
		t.Fatalf("problems %+v, want %+v", problems, want)
	}

	if err := e.js.DeleteKeyValue(e.ctx, stream.SubscriptionsBucket); err != nil {
		t.Fatal(err)
	}
	if _, err := deadletter.CheckSubscriptions(e.ctx, e.js, e.selectAll(t)); !errors.Is(err, deadletter.ErrNoRegistry) {
		t.Fatalf("without the bucket: %v, want ErrNoRegistry", err)
	}
}

func TestPurgeRemovesExactlyTheSelection(t *testing.T) {
	t.Parallel()
	e := setup(t)
	keep := e.seed(t, 2, "acme", "sub_keep")
	e.seed(t, 3, "acme", "sub_drop")
	entries, _, err := e.store.Select(e.ctx, deadletter.Selection{Subscription: "sub_drop"})
	if err != nil {
		t.Fatal(err)
	}
	results, err := e.store.Purge(e.ctx, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Outcome != deadletter.Purged {
			t.Fatalf("%+v", r)
		}
	}
	if got := seqsOf(e.selectAll(t)); !slices.Equal(got, keep) {
		t.Fatalf("left %v, want %v", got, keep)
	}
	again, err := e.store.Purge(e.ctx, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Outcome != deadletter.Gone {
		t.Fatalf("purging again: %+v, want gone", again[0])
	}
}

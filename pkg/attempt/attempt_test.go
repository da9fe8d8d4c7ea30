package attempt_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	ctx context.Context
	js  jetstream.JetStream
	// t0 is an hour ago: records start after it, messages are stored now,
	// so --since keeps working with its server-side start time.
	t0 time.Time
}

func setup(t *testing.T) env {
	t.Helper()
	ctx, js := fixture.Start(t)
	return env{ctx: ctx, js: js, t0: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

// rec is an attempt of tenant acme started at t0+at.
func (e env) rec(sub, event string, n uint32, at time.Duration) *hooklinev1.Attempt {
	return &hooklinev1.Attempt{
		EventId: event, Tenant: "acme", SubscriptionId: sub, EventType: "order.created",
		Attempt: n, Status: 503, Outcome: "retry", StartedAt: timestamppb.New(e.t0.Add(at)),
	}
}

func (e env) line(t *testing.T, a *hooklinev1.Attempt) []byte {
	t.Helper()
	l, err := fixture.AttemptLine(a)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// published fails t on a publish error and returns the sequence.
func published(t *testing.T) func(uint64, error) uint64 {
	return func(seq uint64, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
}

// show renders records as event/attempt@seq, in the order List returns.
func show(rs []attempt.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%d@%d", r.Attempt.GetEventId(), r.Attempt.GetAttempt(), r.Seq)
	}
	return out
}

func showSkipped(ss []attempt.Skipped) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%d#%d", s.Seq, s.Record)
	}
	return out
}

// TestListMixedMessages reads single-record messages (the old shape, with
// the event id header) and multi-record ones (no header), a bad line and an
// empty message among them, with every filter and the limit.
func TestListMixedMessages(t *testing.T) {
	e := setup(t)
	check := published(t)
	s := time.Second

	// 1: the old shape: one record, header, no trailing newline.
	body := e.line(t, e.rec("sub_1", "evt_1", 1, 0))
	ack, err := e.js.PublishMsg(e.ctx, &nats.Msg{
		Subject: stream.AttemptSubject("acme", "sub_1"),
		Header:  nats.Header{stream.HeaderEventID: []string{"evt_1"}},
		Data:    body,
	})
	if err != nil {
		t.Fatal(err)
	}
	seq1 := ack.Sequence
	// 2: six lines, the third not a record; evt_3/1 and evt_1/2 start at
	// the same time (attempt number breaks the tie), evt_4 and evt_5 tie
	// fully (their order in the message stands).
	seq2 := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "",
		e.line(t, e.rec("sub_1", "evt_2", 1, 2*s)),
		e.line(t, e.rec("sub_1", "evt_1", 2, 5*s)),
		[]byte(`{"event_id": "evt_1", "attempt": "not a number"`),
		e.line(t, e.rec("sub_1", "evt_3", 1, 5*s)),
		e.line(t, e.rec("sub_1", "evt_4", 1, 7*s)),
		e.line(t, e.rec("sub_1", "evt_5", 1, 7*s)),
	))
	// 3: another subscription's batch.
	seq3 := check(fixture.Attempts(e.ctx, e.js, e.rec("sub_2", "evt_1", 1, 3*s), e.rec("sub_2", "evt_8", 1, 4*s)))
	// 4: one record through the fixture (header set).
	seq4 := check(fixture.Attempt(e.ctx, e.js, e.rec("sub_1", "evt_1", 3, 65*s)))
	// 5: a message with no record at all.
	seq5 := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "", []byte("  ")))
	// 6: two records under a header naming only the first: the header is
	// trusted only on a one-record message.
	seq6 := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "evt_6",
		e.line(t, e.rec("sub_1", "evt_6", 1, 8*s)),
		e.line(t, e.rec("sub_1", "evt_1", 4, 70*s)),
	))
	// 7: one record without the header.
	seq7 := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "", e.line(t, e.rec("sub_1", "evt_7", 1, 9*s))))

	r := func(event string, n int, seq uint64) string { return fmt.Sprintf("%s/%d@%d", event, n, seq) }
	allSub1 := []string{
		r("evt_1", 1, seq1), r("evt_2", 1, seq2), r("evt_3", 1, seq2), r("evt_1", 2, seq2),
		r("evt_4", 1, seq2), r("evt_5", 1, seq2), r("evt_6", 1, seq6), r("evt_7", 1, seq7),
		r("evt_1", 3, seq4), r("evt_1", 4, seq6),
	}
	badSub1 := []string{fmt.Sprintf("%d#3", seq2), fmt.Sprintf("%d#0", seq5)}
	cases := []struct {
		name        string
		q           attempt.Query
		want        []string
		wantSkipped []string
	}{
		{"a subscription", attempt.Query{Subscription: "sub_1"}, allSub1, badSub1},
		{"tenant and subscription", attempt.Query{Tenant: "acme", Subscription: "sub_2"},
			[]string{r("evt_1", 1, seq3), r("evt_8", 1, seq3)}, []string{}},
		{"an event of a subscription", attempt.Query{Subscription: "sub_1", EventID: "evt_1"},
			[]string{r("evt_1", 1, seq1), r("evt_1", 2, seq2), r("evt_1", 3, seq4), r("evt_1", 4, seq6)}, badSub1},
		{"an event everywhere", attempt.Query{EventID: "evt_1"},
			[]string{r("evt_1", 1, seq1), r("evt_1", 1, seq3), r("evt_1", 2, seq2), r("evt_1", 3, seq4), r("evt_1", 4, seq6)}, badSub1},
		{"an event only in a batch", attempt.Query{Subscription: "sub_1", EventID: "evt_5"}, []string{r("evt_5", 1, seq2)}, badSub1},
		{"an event in a headerless single record", attempt.Query{Subscription: "sub_1", EventID: "evt_7"}, []string{r("evt_7", 1, seq7)}, badSub1},
		{"no such event", attempt.Query{Subscription: "sub_1", EventID: "evt_none"}, []string{}, badSub1},
		{"limit counts records", attempt.Query{Subscription: "sub_1", Limit: 2}, allSub1[8:], badSub1},
		{"limit keeps records sharing a seq", attempt.Query{Subscription: "sub_1", Limit: 6}, allSub1[4:], badSub1},
		{"limit with an event", attempt.Query{Subscription: "sub_1", EventID: "evt_1", Limit: 3},
			[]string{r("evt_1", 2, seq2), r("evt_1", 3, seq4), r("evt_1", 4, seq6)}, badSub1},
		{"limit above the count", attempt.Query{Subscription: "sub_1", Limit: 100}, allSub1, badSub1},
		{"since and until per record", attempt.Query{Subscription: "sub_1", Since: e.t0.Add(5 * s), Until: e.t0.Add(9 * s)},
			[]string{r("evt_3", 1, seq2), r("evt_1", 2, seq2), r("evt_4", 1, seq2), r("evt_5", 1, seq2), r("evt_6", 1, seq6)}, badSub1},
		{"since, event and limit", attempt.Query{Subscription: "sub_1", EventID: "evt_1", Since: e.t0.Add(3 * s), Limit: 2},
			[]string{r("evt_1", 3, seq4), r("evt_1", 4, seq6)}, badSub1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := attempt.List(e.ctx, e.js, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(show(got), tc.want) {
				t.Errorf("records\n got %v\nwant %v", show(got), tc.want)
			}
			if !slices.Equal(showSkipped(skipped), tc.wantSkipped) {
				t.Errorf("skipped\n got %v\nwant %v", showSkipped(skipped), tc.wantSkipped)
			}
		})
	}
}

// TestListSkippedSaysWhichRecord: the error of a bad line names its
// position among the message's records, and a message without records says
// so.
func TestListSkippedSaysWhichRecord(t *testing.T) {
	e := setup(t)
	check := published(t)
	seq := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "",
		e.line(t, e.rec("sub_1", "evt_1", 1, 0)),
		[]byte(""), // blank: not a record, not counted
		e.line(t, e.rec("sub_1", "evt_2", 1, time.Second)),
		[]byte("not json"),
	))
	empty := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", ""))
	got, skipped, err := attempt.List(e.ctx, e.js, attempt.Query{Subscription: "sub_1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("got %v, want the two good records", show(got))
	}
	if len(skipped) != 2 {
		t.Fatalf("skipped %v, want the bad line and the empty message", showSkipped(skipped))
	}
	if s := skipped[0]; s.Seq != seq || s.Record != 3 || !strings.HasPrefix(s.Err.Error(), "record 3: ") {
		t.Errorf("bad line: seq %d record %d err %q; want seq %d, record 3, \"record 3: …\"", s.Seq, s.Record, s.Err, seq)
	}
	if s := skipped[1]; s.Seq != empty || s.Record != 0 || !strings.Contains(s.Err.Error(), "holds no record") {
		t.Errorf("empty message: seq %d record %d err %q; want seq %d, record 0, \"holds no record\"", s.Seq, s.Record, s.Err, empty)
	}
}

// TestListHeaderPrefilter: on a one-record message the event id header
// decides without decoding the body — a body that would not decode is not
// even reported when the header names another event.
func TestListHeaderPrefilter(t *testing.T) {
	e := setup(t)
	check := published(t)
	seq := check(fixture.AttemptLines(e.ctx, e.js, "acme", "sub_1", "evt_1", []byte("not json")))
	check(fixture.Attempt(e.ctx, e.js, e.rec("sub_1", "evt_2", 1, 0)))

	got, skipped, err := attempt.List(e.ctx, e.js, attempt.Query{Subscription: "sub_1", EventID: "evt_2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(skipped) != 0 {
		t.Errorf("evt_2: got %v skipped %v; want its record and nothing skipped (header evt_1 not decoded)", show(got), showSkipped(skipped))
	}
	got, skipped, err = attempt.List(e.ctx, e.js, attempt.Query{Subscription: "sub_1", EventID: "evt_1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || !slices.Equal(showSkipped(skipped), []string{fmt.Sprintf("%d#1", seq)}) {
		t.Errorf("evt_1: got %v skipped %v; want nothing and record 1 of seq %d skipped", show(got), showSkipped(skipped), seq)
	}
}

func TestListNoStream(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := attempt.List(ctx, js, attempt.Query{Subscription: "sub_1"})
	if !errors.Is(err, attempt.ErrNoStream) {
		t.Fatalf("err %v, want ErrNoStream", err)
	}
}

func TestFixtureAttemptsHoldsOneSubscription(t *testing.T) {
	e := setup(t)
	if _, err := fixture.Attempts(e.ctx, e.js, e.rec("sub_1", "evt_1", 1, 0), e.rec("sub_2", "evt_1", 1, 0)); err == nil {
		t.Fatal("a message of two subscriptions' records was published")
	}
	if _, err := fixture.Attempts(e.ctx, e.js); err == nil {
		t.Fatal("a message of no records was published")
	}
	if n, err := fixture.Count(e.ctx, e.js, stream.Attempts, stream.AttemptsPrefix+".>"); err != nil || n != 0 {
		t.Fatalf("ATTEMPTS holds %d messages (%v), want none", n, err)
	}
}

package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// A kill -9 and a restart keep every acknowledged message: the store and the
// ports survive, and the server fsyncs every write.
func TestNATSKillRestartKeepsStore(t *testing.T) {
	t.Parallel()
	s := StartNATS(t)
	if !jetStreamSyncAlways(t, s) {
		t.Fatal("nats-server does not run with sync_interval: always")
	}
	_, js := ConnectNATS(t, s.URL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if _, err := js.Publish(ctx, "t.x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	pid := s.Pid()
	s.Kill()
	if s.Running() {
		t.Fatal("still running after Kill")
	}
	s.Restart()
	if s.Pid() == pid {
		t.Fatal("same pid after restart")
	}
	// The client reconnects by itself to the same address.
	var info *jetstream.StreamInfo
	Eventually(t, 20*time.Second, func() error {
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err := js.Stream(ictx, "T")
		if err != nil {
			return err
		}
		info, err = st.Info(ictx)
		return err
	})
	if info.State.Msgs != n {
		t.Fatalf("after kill -9 and restart: %d messages; want %d", info.State.Msgs, n)
	}
	if !strings.Contains(s.Log(), "harness: start #2") {
		t.Fatal("the log does not show the second start")
	}
}

func jetStreamSyncAlways(t *testing.T, s *NATS) bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", s.MonitorPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		JetStream struct {
			Config struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.JetStream.Config.SyncAlways
}

func TestProcessStopSendsSIGTERM(t *testing.T) {
	t.Parallel()
	s := StartNATS(t)
	took, err := s.Stop(10 * time.Second)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if s.Running() {
		t.Fatal("still running")
	}
	// nats-server logs its shutdown on SIGTERM (a kill -9 leaves no trace).
	if !strings.Contains(s.Log(), "Server Exiting") {
		t.Fatalf("no orderly shutdown in the log (took %s):\n%s", took, Tail(s.LogPath, 20, 4096))
	}
}

func TestChecker(t *testing.T) {
	t.Parallel()
	s := StartNATS(t)
	_, js := ConnectNATS(t, s.URL())
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	r := NewReceiver(t)
	a, b := r.Endpoint("a"), r.Endpoint("b")
	secret := newSecret(t)
	for _, bind := range []struct {
		ep  *Endpoint
		sub string
	}{{a, "sub_a"}, {b, "sub_b"}} {
		if err := bind.ep.Bind(bind.sub, secret); err != nil {
			t.Fatal(err)
		}
	}
	c := NewChecker(js)
	c.AddSubscription("sub_a", "acme", []string{"order.*"}, a)
	c.AddSubscription("sub_b", "acme", []string{"invoice.>"}, b)
	c.Accept("evt_1", "acme", "order.created")
	c.Accept("evt_2", "acme", "invoice.paid.late")
	c.Accept("evt_3", "acme", "order.created")
	c.Attempt("evt_4", "acme", "order.created")  // maybe stored
	c.Accept("evt_5", "acme", "order.updated")   // never arrives: lost
	c.Accept("evt_6", "globex", "order.created") // other tenant: no pair

	hc := &http.Client{Timeout: 5 * time.Second}
	send := func(ep *Endpoint, id string) {
		resp, err := post(t, hc, ep.URL, id, secret, "{}")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send(a, "evt_1")
	send(a, "evt_1") // duplicate
	send(b, "evt_2")
	send(a, "evt_4") // attempted: allowed
	send(a, "evt_9") // never published: unexpected
	send(a, "evt_2") // does not match sub_a: unexpected
	deadLetter := func(event, sub, reason string) {
		m := nats.NewMsg(stream.DeadLetterSubject("acme", sub))
		m.Header.Set(stream.HeaderEventID, event)
		m.Header.Set(stream.HeaderSubscriptionID, sub)
		m.Header.Set(stream.HeaderReason, reason)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter("evt_3", "sub_a", "attempts_exhausted")

	r1, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := counts{Accepted: 5, Attempted: 1, Expected: 4, Delivered: 5, DeadLettered: 1, Lost: 1, Duplicates: 1, DuplicatePairs: 1, Unexpected: 2, Requests: 6}
	if got := trim(r1); got != want {
		t.Fatalf("report\n got %+v\nwant %+v", got, want)
	}
	if len(r1.LostSample) != 1 || r1.LostSample[0] != "evt_5×sub_a" {
		t.Fatalf("lost sample %v", r1.LostSample)
	}
	if r1.DeadLetterReasons["attempts_exhausted"] != 1 {
		t.Fatalf("reasons %v", r1.DeadLetterReasons)
	}

	// Dead letters are read incrementally; a second one of a pair counts.
	deadLetter("evt_5", "sub_a", "permanent_failure")
	deadLetter("evt_3", "sub_a", "attempts_exhausted")
	// A subscription declared later owes only the events published after
	// it, and may receive earlier ones.
	late := r.Endpoint("late")
	if err := late.Bind("sub_late", secret); err != nil {
		t.Fatal(err)
	}
	c.AddSubscription("sub_late", "acme", []string{"order.*"}, late)
	c.Accept("evt_7", "acme", "order.created")
	send(a, "evt_7")
	send(late, "evt_7")
	send(late, "evt_1")
	r2, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Lost != 0 || r2.Expected != 6 || r2.Unexpected != 2 || r2.DeadLettered != 2 || r2.DeadLetterDuplicates != 1 {
		t.Fatalf("after more dead letters and a late subscription: %s", r2)
	}
	if c.DeadLetterCount("evt_3", "sub_a") != 2 {
		t.Fatalf("dead letter count %d", c.DeadLetterCount("evt_3", "sub_a"))
	}
}

// counts are the comparable counters of a report.
type counts struct {
	Accepted, Attempted, Expected, Delivered, DeadLettered, Both, Lost     int
	Duplicates, DuplicatePairs, DeadLetterDuplicates, Unexpected, Requests int
}

func trim(r Report) counts {
	return counts{
		Accepted: r.Accepted, Attempted: r.Attempted, Expected: r.Expected,
		Delivered: r.Delivered, DeadLettered: r.DeadLettered, Both: r.Both,
		Lost: r.Lost, Duplicates: r.Duplicates, DuplicatePairs: r.DuplicatePairs,
		DeadLetterDuplicates: r.DeadLetterDuplicates, Unexpected: r.Unexpected,
		Requests: r.Requests,
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		filters []string
		typ     string
		want    bool
	}{
		{name: "exact", filters: []string{"order.created"}, typ: "order.created", want: true},
		{name: "exact mismatch", filters: []string{"order.created"}, typ: "order.updated"},
		{name: "star", filters: []string{"order.*"}, typ: "order.created", want: true},
		{name: "star is one token", filters: []string{"order.*"}, typ: "order.created.late"},
		{name: "gt", filters: []string{"invoice.>"}, typ: "invoice.paid.late", want: true},
		{name: "gt needs a token", filters: []string{"invoice.>"}, typ: "invoice"},
		{name: "any of several", filters: []string{"a", "order.*"}, typ: "order.x", want: true},
		{name: "shorter type", filters: []string{"order.created"}, typ: "order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Matches(tt.filters, tt.typ); got != tt.want {
				t.Fatalf("Matches(%v, %q) = %v", tt.filters, tt.typ, got)
			}
		})
	}
}

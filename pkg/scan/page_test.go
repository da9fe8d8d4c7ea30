package scan_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/scan"
)

type rec struct {
	pos  scan.Pos
	text string
}

// TestPageWalksEveryRecordOnce: descending and ascending pages, of several
// sizes, with a subject filter, a record filter and a scan cap small
// enough to force short pages, list every matching record exactly once,
// in order, and never more than the limit per page.
func TestPageWalksEveryRecordOnce(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	var all []rec // matching records, oldest first
	for i := range 700 {
		subj := "t.a"
		if i%3 == 0 {
			subj = "t.b"
		}
		n := 1 + i%4 // records per message
		var lines []string
		for k := range n {
			lines = append(lines, fmt.Sprintf("%d-%d", i, k))
		}
		ack, err := js.Publish(ctx, subj, []byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		if subj == "t.a" {
			for k, l := range lines {
				if k != 1 { // the record filter drops index 1
					all = append(all, rec{scan.Pos{Seq: ack.Sequence, Idx: k}, l})
				}
			}
		}
	}
	decode := func(m jetstream.Msg, seq uint64) ([]rec, error) {
		var out []rec
		for k, l := range strings.Split(string(m.Data()), "\n") {
			if k != 1 {
				out = append(out, rec{scan.Pos{Seq: seq, Idx: k}, l})
			}
		}
		return out, nil
	}
	posOf := func(r rec) scan.Pos { return r.pos }
	for _, desc := range []bool{true, false} {
		for _, tc := range []struct{ limit, maxScan int }{{1, 0}, {7, 0}, {100, 0}, {5000, 0}, {10, 50}} {
			want := slices.Clone(all)
			if desc {
				slices.Reverse(want)
			}
			var got []rec
			var cursor *scan.Pos
			for pages := 0; ; pages++ {
				if pages > 3000 {
					t.Fatalf("desc=%v %+v: no end after %d pages", desc, tc, pages)
				}
				res, err := scan.Page(ctx, s, scan.PageOptions{Subjects: []string{"t.a"}, Desc: desc, Cursor: cursor,
					Limit: tc.limit, MaxScan: tc.maxScan}, decode, posOf)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Items) > tc.limit {
					t.Fatalf("page of %d items, limit %d", len(res.Items), tc.limit)
				}
				got = append(got, res.Items...)
				if !res.More {
					break
				}
				next := res.Next
				cursor = &next
			}
			if len(got) != len(want) {
				t.Fatalf("desc=%v %+v: %d records, want %d", desc, tc, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("desc=%v %+v: record %d is %+v, want %+v", desc, tc, i, got[i], want[i])
				}
			}
		}
	}
}

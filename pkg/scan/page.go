package scan

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Pos is a position in a stream: a message sequence and, for a message
// that holds several records (an ATTEMPTS batch), a record's index in it.
// Positions order by sequence, then index.
type Pos struct {
	Seq uint64
	Idx int
}

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool {
	return p.Seq < q.Seq || (p.Seq == q.Seq && p.Idx < q.Idx)
}

// AfterMsg is the position after every record of the message at seq.
func AfterMsg(seq uint64) Pos { return Pos{Seq: seq, Idx: math.MaxInt32} }

// Page limits.
const (
	// DefaultMaxScan is how many messages one page reads at most: a page
	// of a sparse filter over a long stream stops there and returns a
	// cursor to go on from (the page may then be short, even empty).
	DefaultMaxScan = 20000
	// maxWindow is the most messages a backward page reads in one range.
	maxWindow = 4096
)

// PageOptions select one page of a stream.
type PageOptions struct {
	// Subjects filter the stream server-side; empty reads every subject.
	Subjects []string
	// HeadersOnly leaves message bodies on the server.
	HeadersOnly bool
	// Desc lists newest first (the default of the API); otherwise oldest
	// first.
	Desc bool
	// Cursor, when set, is where the previous page ended: the page lists
	// what comes after it (ascending) or before it (descending).
	Cursor *Pos
	// Lo and Hi bound the sequences read, inclusive (0: the stream's
	// first and last).
	Lo, Hi uint64
	// Limit is how many items the page holds at most (at least 1).
	Limit int
	// MaxScan bounds the messages read (default DefaultMaxScan).
	MaxScan int
}

// PageResult is one page. Next is where the next page resumes (pass it as
// Cursor) when More; items may follow only then.
type PageResult[T any] struct {
	Items []T
	Next  Pos
	More  bool
}

// Page reads one page of the stream. decode returns the items a message
// holds that match the caller's filters, in position order (records of one
// message in their order), each with its position (pos). It holds at most
// Limit items and one message at a time, whatever the stream's length: a
// descending page reads ranges of sequences backwards, keeping only the
// newest items it still needs from each.
func Page[T any](ctx context.Context, s jetstream.Stream, o PageOptions,
	decode func(m jetstream.Msg, seq uint64) ([]T, error), pos func(T) Pos) (PageResult[T], error) {
	if o.Limit < 1 {
		o.Limit = 1
	}
	if o.MaxScan <= 0 {
		o.MaxScan = DefaultMaxScan
	}
	info, err := s.Info(ctx)
	if err != nil {
		return PageResult[T]{}, fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
	}
	lo, hi := max(info.State.FirstSeq, o.Lo, 1), info.State.LastSeq
	if o.Hi > 0 {
		hi = min(hi, o.Hi)
	}
	if o.Desc {
		return pageDesc(ctx, s, o, lo, hi, decode, pos)
	}
	return pageAsc(ctx, s, o, lo, hi, decode, pos)
}

func pageAsc[T any](ctx context.Context, s jetstream.Stream, o PageOptions, lo, hi uint64,
	decode func(jetstream.Msg, uint64) ([]T, error), pos func(T) Pos) (PageResult[T], error) {
	var res PageResult[T]
	if o.Cursor != nil {
		lo = max(lo, o.Cursor.Seq)
	}
	if lo > hi {
		return res, nil
	}
	scanned := 0
	err := Scan(ctx, s, Options{Subjects: o.Subjects, HeadersOnly: o.HeadersOnly, StartSeq: lo, EndSeq: hi,
		BatchSize: min(256, o.Limit+1)}, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := meta.Sequence.Stream
		if len(res.Items) == o.Limit {
			// A full page and another message: more may follow.
			res.More = true
			return ErrStop
		}
		scanned++
		items, err := decode(m, seq)
		if err != nil {
			return err
		}
		for _, it := range items {
			if o.Cursor != nil && !o.Cursor.Less(pos(it)) {
				continue
			}
			if len(res.Items) == o.Limit {
				res.More = true
				return ErrStop
			}
			res.Items = append(res.Items, it)
			res.Next = pos(it)
		}
		if len(res.Items) < o.Limit && scanned >= o.MaxScan && seq < hi {
			res.Next, res.More = AfterMsg(seq), true
			return ErrStop
		}
		return nil
	})
	if err != nil {
		return PageResult[T]{}, err
	}
	return res, nil
}

func pageDesc[T any](ctx context.Context, s jetstream.Stream, o PageOptions, lo, hi uint64,
	decode func(jetstream.Msg, uint64) ([]T, error), pos func(T) Pos) (PageResult[T], error) {
	var res PageResult[T]
	if o.Cursor != nil {
		hi = min(hi, o.Cursor.Seq)
	}
	window := uint64(max(64, 2*o.Limit))
	scanned := uint64(0)
	for hi >= lo && hi > 0 {
		start := lo
		if hi-lo+1 > window {
			start = hi - window + 1
		}
		need := o.Limit - len(res.Items)
		// The newest need items of [start, hi], oldest first: a ring.
		ring := make([]T, 0, need)
		head, matched := 0, 0
		err := Scan(ctx, s, Options{Subjects: o.Subjects, HeadersOnly: o.HeadersOnly, StartSeq: start, EndSeq: hi,
			BatchSize: 256}, func(m jetstream.Msg) error {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			items, err := decode(m, meta.Sequence.Stream)
			if err != nil {
				return err
			}
			for _, it := range items {
				if o.Cursor != nil && !pos(it).Less(*o.Cursor) {
					continue
				}
				matched++
				if len(ring) < need {
					ring = append(ring, it)
					continue
				}
				ring[head] = it
				head = (head + 1) % need
			}
			return nil
		})
		if err != nil {
			return PageResult[T]{}, err
		}
		scanned += hi - start + 1
		// Newest first: walk the ring backwards from its newest item.
		for i := range len(ring) {
			res.Items = append(res.Items, ring[(head-1-i+2*len(ring))%len(ring)])
		}
		if len(res.Items) == o.Limit {
			res.Next = pos(res.Items[len(res.Items)-1])
			res.More = matched > len(ring) || start > lo
			return res, nil
		}
		if start == lo {
			return res, nil
		}
		if scanned >= uint64(o.MaxScan) {
			res.Next, res.More = Pos{Seq: start}, true
			return res, nil
		}
		hi = start - 1
		window = min(window*4, maxWindow)
	}
	return res, nil
}

// SeqAtTime returns the sequence of the first message of subjects stored
// at or after t, or the stream's last sequence plus one when there is none.
func SeqAtTime(ctx context.Context, s jetstream.Stream, subjects []string, t time.Time) (uint64, error) {
	var seq uint64
	found := false
	err := Scan(ctx, s, Options{Subjects: subjects, StartTime: t, HeadersOnly: true, BatchSize: 1}, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq, found = meta.Sequence.Stream, true
		return ErrStop
	})
	if err != nil {
		return 0, err
	}
	if found {
		return seq, nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", s.CachedInfo().Config.Name, err)
	}
	return info.State.LastSeq + 1, nil
}

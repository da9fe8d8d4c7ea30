package deadletter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
)

// ErrNotFound is returned by Store.Get when no dead letter is stored at a
// sequence: it was replayed, purged, expired, or never existed.
var ErrNotFound = errors.New("no such dead letter")

// ErrNoStream is returned by Open when the DEADLETTER stream does not exist.
var ErrNoStream = errors.New("stream " + stream.DeadLetter + " not found")

// Store reads and deletes entries of the DEADLETTER stream.
type Store struct {
	s jetstream.Stream
}

// Open looks up the DEADLETTER stream. It returns ErrNoStream when it is
// missing (the deliverer creates it at start-up).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	s, err := js.Stream(ctx, stream.DeadLetter)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrNoStream
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", stream.DeadLetter, err)
	}
	return &Store{s: s}, nil
}

// Get reads the entry stored at seq, body included. It returns ErrNotFound
// when there is none.
func (st *Store) Get(ctx context.Context, seq uint64) (Entry, error) {
	m, err := st.s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("seq %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read %s seq %d: %w", stream.DeadLetter, seq, err)
	}
	return Decode(m.Subject, m.Sequence, m.Time, m.Header, m.Data), nil
}

// Delete removes the entry at seq. It returns ErrNotFound when it was gone
// already.
func (st *Store) Delete(ctx context.Context, seq uint64) error {
	err := st.s.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// The server's reason is only in the text; ask whether it is gone.
		if _, gerr := st.s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("seq %d: %w", seq, ErrNotFound)
		}
	}
	if err != nil {
		return fmt.Errorf("delete %s seq %d: %w", stream.DeadLetter, seq, err)
	}
	return nil
}

// Select returns the entries of sel in stream order (oldest first), at most
// sel.Limit of them, without bodies. Explicit sequences that are not stored
// come back in missing, in the order given.
func (st *Store) Select(ctx context.Context, sel Selection) (entries []Entry, missing []uint64, err error) {
	if len(sel.Seqs) > 0 {
		return st.selectSeqs(ctx, sel)
	}
	err = st.each(ctx, sel, func(e Entry) error {
		entries = append(entries, e)
		if sel.Limit > 0 && len(entries) >= sel.Limit {
			return scan.ErrStop
		}
		return nil
	})
	return entries, nil, err
}

// Latest returns the newest sel.Limit entries of sel (all when 0), newest
// first, and how many entries matched in all.
func (st *Store) Latest(ctx context.Context, sel Selection) (entries []Entry, matched int, err error) {
	if len(sel.Seqs) > 0 {
		entries, _, err = st.selectSeqs(ctx, sel)
		reverse(entries)
		return entries, len(entries), err
	}
	err = st.each(ctx, sel, func(e Entry) error {
		matched++
		entries = append(entries, e)
		if sel.Limit > 0 && len(entries) > sel.Limit {
			entries = entries[1:]
		}
		return nil
	})
	reverse(entries)
	return entries, matched, err
}

func (st *Store) selectSeqs(ctx context.Context, sel Selection) (entries []Entry, missing []uint64, err error) {
	seen := map[uint64]bool{}
	for _, seq := range sel.Seqs {
		if seen[seq] {
			continue
		}
		seen[seq] = true
		e, err := st.Get(ctx, seq)
		if errors.Is(err, ErrNotFound) {
			missing = append(missing, seq)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		e.Record.Data = nil
		entries = append(entries, e)
	}
	return entries, missing, nil
}

// each visits every entry matching the filters of sel, oldest first.
func (st *Store) each(ctx context.Context, sel Selection, visit func(Entry) error) error {
	return st.eachFrom(ctx, sel, 0, visit)
}

func (st *Store) eachFrom(ctx context.Context, sel Selection, from uint64, visit func(Entry) error) error {
	opts := scan.Options{Subjects: []string{sel.Subject()}, HeadersOnly: true, StartSeq: from}
	if from == 0 && !sel.Since.IsZero() {
		// The stream time is when the dead letter was stored; the header
		// time can only be a little earlier. A minute of slack, then the
		// exact filter below.
		opts.StartTime = sel.Since.Add(-time.Minute)
	}
	return scan.Scan(ctx, st.s, opts, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if sel.MaxSeq > 0 && meta.Sequence.Stream > sel.MaxSeq {
			return scan.ErrStop
		}
		e := Decode(m.Subject(), meta.Sequence.Stream, meta.Timestamp, m.Headers(), nil)
		if !sel.Match(e) {
			return nil
		}
		return visit(e)
	})
}

func reverse(es []Entry) {
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
}

// Slack between a record's own time and when its stream stored it: a
// dead letter or an attempt batch is stored a little after the time its
// headers or records carry, never before (clock skew aside).
const storeSlack = time.Minute

// Bounds returns the sequences of s worth reading for records timed at or
// after since (zero: unbounded): lo, inclusive, 0 for the stream's first.
// until does not bound the read (a record stored late, after a NATS
// outage, still counts at its own time): records are filtered on it.
func Bounds(ctx context.Context, s jetstream.Stream, subjects []string, since, until time.Time) (lo, hi uint64, err error) {
	if !since.IsZero() {
		if lo, err = scan.SeqAtTime(ctx, s, subjects, since.Add(-storeSlack)); err != nil {
			return 0, 0, err
		}
	}
	return lo, 0, nil
}

// Page returns one page of the entries matching sel's filters (not Seqs,
// not Limit: limit is the page size), without bodies, newest first when
// desc, after (ascending) or before (descending) cursor when set. It holds
// at most limit entries in memory, however many are stored.
func (st *Store) Page(ctx context.Context, sel Selection, desc bool, cursor *scan.Pos, limit int) (scan.PageResult[Entry], error) {
	subjects := []string{sel.Subject()}
	lo, hi, err := Bounds(ctx, st.s, subjects, sel.Since, sel.Until)
	if err != nil {
		return scan.PageResult[Entry]{}, err
	}
	if sel.MaxSeq > 0 && (hi == 0 || sel.MaxSeq < hi) {
		hi = sel.MaxSeq
	}
	return scan.Page(ctx, st.s, scan.PageOptions{Subjects: subjects, HeadersOnly: true, Desc: desc, Cursor: cursor,
		Lo: lo, Hi: hi, Limit: limit}, func(m jetstream.Msg, seq uint64) ([]Entry, error) {
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		e := Decode(m.Subject(), seq, meta.Timestamp, m.Headers(), nil)
		if !sel.Match(e) {
			return nil, nil
		}
		return []Entry{e}, nil
	}, func(e Entry) scan.Pos { return scan.Pos{Seq: e.Record.GetSeq()} })
}

// Count returns how many entries match sel's filters and the first n of
// them, oldest first (a dry run), holding no more than n in memory.
func (st *Store) Count(ctx context.Context, sel Selection, n int) (count int, sample []Entry, err error) {
	sel.Limit = 0
	err = st.each(ctx, sel, func(e Entry) error {
		count++
		if len(sample) < n {
			sample = append(sample, e)
		}
		return nil
	})
	return count, sample, err
}

// Each visits the entries matching sel's filters, oldest first, from
// sequence from on (0: the start), without bodies. visit may return
// scan.ErrStop.
func (st *Store) Each(ctx context.Context, sel Selection, from uint64, visit func(Entry) error) error {
	return st.eachFrom(ctx, sel, from, visit)
}

// LastSeq is the stream's last sequence (0 when it never held anything).
func (st *Store) LastSeq(ctx context.Context) (uint64, error) {
	info, err := st.s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream.DeadLetter, err)
	}
	return info.State.LastSeq, nil
}

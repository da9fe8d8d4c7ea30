// Package eventlog reads the EVENTS stream for the delivery API: one page
// of a tenant's events, and one event by its id.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
)

// Event is one stored event as a receiver would see it.
type Event struct {
	// Seq is its EVENTS sequence.
	Seq    uint64
	ID     string
	Tenant string
	Type   string
	// OccurredAt is Hookline-Occurred-At, or ReceivedAt without it.
	OccurredAt time.Time
	// ReceivedAt is when EVENTS stored it.
	ReceivedAt  time.Time
	OrderingKey string
	// Data is the body (nil from a headers-only read).
	Data []byte
}

// ErrNotFound: no event of that tenant has that id in EVENTS (never
// published, or past the stream's max age).
var ErrNotFound = errors.New("no such event")

// ErrNoStream is returned when EVENTS does not exist.
var ErrNoStream = errors.New("stream " + stream.Events + " not found")

// Decode reads the event stored at seq on subject, as the deliverer's
// dispatch reads it (ids, occurred_at); ok is false when the subject is
// not events.<tenant>.<type>.
func Decode(subject string, seq uint64, stored time.Time, h nats.Header, data []byte) (Event, bool) {
	tenant, typ, err := stream.ParseEventSubject(subject)
	if err != nil {
		return Event{}, false
	}
	ev := Event{Seq: seq, Tenant: tenant, Type: typ, ReceivedAt: stored, OccurredAt: stored,
		OrderingKey: h.Get(stream.HeaderOrderingKey), Data: data}
	ev.ID, _ = stream.EventIDFromMsgID(tenant, h.Get(stream.HeaderMsgID))
	if ev.ID == "" || stream.ValidateEventID(ev.ID) != nil {
		ev.ID = stream.SeqEventID(seq, stored)
	}
	if v := h.Get(stream.HeaderOccurredAt); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			ev.OccurredAt = t
		}
	}
	return ev, true
}

// Filter selects events: Tenant ("" every tenant), Types (NATS-token
// filters over the type: "order.*"), and the time EVENTS stored them in
// [Since, Until).
type Filter struct {
	Tenant       string
	Types        []string
	Since, Until time.Time
}

// Subjects are the server-side filters of f.
func (f Filter) Subjects() []string {
	tenant := f.Tenant
	if tenant == "" {
		tenant = "*"
	}
	if len(f.Types) == 0 {
		return []string{stream.EventsPrefix + "." + tenant + ".>"}
	}
	out := make([]string, 0, len(f.Types))
	for _, t := range f.Types {
		out = append(out, stream.EventSubject(tenant, t))
	}
	return out
}

func open(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, stream.Events)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrNoStream
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", stream.Events, err)
	}
	return s, nil
}

// Page returns one page of the events of f, without their data, newest
// first when desc, after (ascending) or before (descending) cursor.
func Page(ctx context.Context, js jetstream.JetStream, f Filter, desc bool, cursor *scan.Pos, limit int) (scan.PageResult[Event], error) {
	s, err := open(ctx, js)
	if err != nil {
		return scan.PageResult[Event]{}, err
	}
	subjects := f.Subjects()
	var lo, hi uint64
	// The stream time is the filter's own: no slack needed.
	if !f.Since.IsZero() {
		if lo, err = scan.SeqAtTime(ctx, s, subjects, f.Since); err != nil {
			return scan.PageResult[Event]{}, err
		}
	}
	if !f.Until.IsZero() {
		next, err := scan.SeqAtTime(ctx, s, subjects, f.Until)
		if err != nil {
			return scan.PageResult[Event]{}, err
		}
		if next <= 1 || (lo > 0 && next <= lo) {
			return scan.PageResult[Event]{}, nil
		}
		hi = next - 1
	}
	return scan.Page(ctx, s, scan.PageOptions{Subjects: subjects, HeadersOnly: true, Desc: desc, Cursor: cursor,
		Lo: lo, Hi: hi, Limit: limit}, func(m jetstream.Msg, seq uint64) ([]Event, error) {
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		ev, ok := Decode(m.Subject(), seq, meta.Timestamp, m.Headers(), nil)
		if !ok || (!f.Since.IsZero() && ev.ReceivedAt.Before(f.Since)) || (!f.Until.IsZero() && !ev.ReceivedAt.Before(f.Until)) {
			return nil, nil
		}
		return []Event{ev}, nil
	}, func(e Event) scan.Pos { return scan.Pos{Seq: e.Seq} })
}

// idWindow is how far from the time in a generated id (evt_<ULID>) Find
// looks first: the producer makes the id right before it publishes.
const idWindow = 5 * time.Minute

// Find returns the event of tenant with id, data included.
//
// Cost: an id evt_seq_<n>_<nanos> (stream.SeqEventID) is one message read,
// and so is the older evt_seq_<n>, which names whichever event without a
// Nats-Msg-Id is stored at n now (EVENTS may have been recreated since the
// id was given); an id the producer
// generated (evt_<ULID>: it carries the time it was made) reads the
// tenant's events stored within five minutes of that time; any other id
// (chosen by the publisher) reads the headers of every event of the tenant
// still in EVENTS, newest first, until it is found — O(the tenant's
// events), about 1 s per million on one core.
func Find(ctx context.Context, js jetstream.JetStream, tenant, id string) (Event, error) {
	s, err := open(ctx, js)
	if err != nil {
		return Event{}, err
	}
	if seq, stored, ok := stream.ParseSeqEventID(id); ok {
		ev, err := get(ctx, s, seq)
		if err == nil && ev.Tenant == tenant && (ev.ID == id || stored.IsZero() && ev.ID == stream.SeqEventID(seq, ev.ReceivedAt)) {
			return ev, nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Event{}, err
		}
	}
	subjects := []string{stream.EventsPrefix + "." + tenant + ".>"}
	match := func(m jetstream.Msg) bool {
		got, _ := stream.EventIDFromMsgID(tenant, m.Headers().Get(stream.HeaderMsgID))
		return got == id
	}
	if t, ok := ULIDTime(id); ok {
		seq, err := scanFor(ctx, s, scan.Options{Subjects: subjects, HeadersOnly: true, StartTime: t.Add(-idWindow)},
			func(meta *jetstream.MsgMetadata) bool { return meta.Timestamp.After(t.Add(idWindow)) }, match)
		if err != nil {
			return Event{}, err
		}
		if seq > 0 {
			return get(ctx, s, seq)
		}
	}
	// Newest first: a recent event is found soonest.
	var cursor *scan.Pos
	for {
		res, err := scan.Page(ctx, s, scan.PageOptions{Subjects: subjects, HeadersOnly: true, Desc: true, Cursor: cursor, Limit: 1},
			func(m jetstream.Msg, seq uint64) ([]uint64, error) {
				if match(m) {
					return []uint64{seq}, nil
				}
				return nil, nil
			}, func(seq uint64) scan.Pos { return scan.Pos{Seq: seq} })
		if err != nil {
			return Event{}, err
		}
		if len(res.Items) > 0 {
			return get(ctx, s, res.Items[0])
		}
		if !res.More {
			return Event{}, ErrNotFound
		}
		next := res.Next
		cursor = &next
	}
}

// scanFor returns the sequence of the first message that matches, or 0
// when none does before stop says the scan went far enough.
func scanFor(ctx context.Context, s jetstream.Stream, opts scan.Options, stop func(*jetstream.MsgMetadata) bool, match func(jetstream.Msg) bool) (uint64, error) {
	var found uint64
	err := scan.Scan(ctx, s, opts, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if stop(meta) {
			return scan.ErrStop
		}
		if match(m) {
			found = meta.Sequence.Stream
			return scan.ErrStop
		}
		return nil
	})
	return found, err
}

func get(ctx context.Context, s jetstream.Stream, seq uint64) (Event, error) {
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("read %s seq %d: %w", stream.Events, seq, err)
	}
	ev, ok := Decode(m.Subject, m.Sequence, m.Time, m.Header, m.Data)
	if !ok {
		return Event{}, ErrNotFound
	}
	return ev, nil
}

// ULIDTime is the time in an id the producer generated: evt_<ULID>, whose
// first ten Crockford base32 characters are milliseconds since the epoch.
func ULIDTime(id string) (time.Time, bool) {
	u, ok := strings.CutPrefix(id, "evt_")
	if !ok || len(u) != 26 {
		return time.Time{}, false
	}
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var ms uint64
	for i := range 26 {
		k := strings.IndexByte(alphabet, u[i])
		if k < 0 {
			return time.Time{}, false
		}
		if i < 10 {
			ms = ms<<5 | uint64(k)
		}
	}
	if ms >= 1<<48 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}

// Each visits the events of f stored from sequence from (0: the start) to
// maxSeq (0: the end), oldest first, without their data. visit may return
// scan.ErrStop.
func Each(ctx context.Context, js jetstream.JetStream, f Filter, from, maxSeq uint64, visit func(Event) error) error {
	s, err := open(ctx, js)
	if err != nil {
		return err
	}
	opts := scan.Options{Subjects: f.Subjects(), HeadersOnly: true, StartSeq: from, EndSeq: maxSeq}
	if from == 0 && !f.Since.IsZero() {
		opts.StartTime = f.Since
	}
	return scan.Scan(ctx, s, opts, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		ev, ok := Decode(m.Subject(), meta.Sequence.Stream, meta.Timestamp, m.Headers(), nil)
		if !ok || (!f.Since.IsZero() && ev.ReceivedAt.Before(f.Since)) {
			return nil
		}
		if !f.Until.IsZero() && !ev.ReceivedAt.Before(f.Until) {
			return scan.ErrStop // stored in order: nothing later is earlier
		}
		return visit(ev)
	})
}

// LastSeq is EVENTS' last sequence.
func LastSeq(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := open(ctx, js)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream.Events, err)
	}
	return info.State.LastSeq, nil
}

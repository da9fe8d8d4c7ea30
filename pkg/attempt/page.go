package attempt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Outcomes an attempt record carries.
var Outcomes = []string{OutcomeSuccess, "retry", "dead_letter"}

// OutcomeSuccess is the outcome of a 2xx attempt.
const OutcomeSuccess = "success"

// Filter is a Query (Limit aside: the page size is given to Page) with the
// API's filters on the outcome and the HTTP status.
type Filter struct {
	Query
	Outcomes []string
	Statuses []deadletter.StatusMatch
	// Types are event type filters (order.*, invoice.>): any may match.
	Types []string
}

func (f Filter) match(a *hooklinev1.Attempt) bool {
	if f.EventID != "" && a.GetEventId() != f.EventID {
		return false
	}
	if len(f.Outcomes) > 0 && !slices.Contains(f.Outcomes, a.GetOutcome()) {
		return false
	}
	if len(f.Statuses) > 0 && !slices.ContainsFunc(f.Statuses, func(m deadletter.StatusMatch) bool { return m.Match(a.GetStatus()) }) {
		return false
	}
	if len(f.Types) > 0 && !subscription.MatchesAny(f.Types, a.GetEventType()) {
		return false
	}
	return true
}

// mayMatch is false for a record line that cannot match f's event id or
// outcomes: those values appear in a matching line as JSON strings as they
// are (ids and outcomes need no escaping), so the line need not be decoded
// — most of the cost of a filter that few records match.
func (f Filter) mayMatch(line []byte) bool {
	if f.EventID != "" && !bytes.Contains(line, []byte(`"`+f.EventID+`"`)) {
		return false
	}
	if len(f.Outcomes) > 0 && !slices.ContainsFunc(f.Outcomes, func(o string) bool { return bytes.Contains(line, []byte(`"`+o+`"`)) }) {
		return false
	}
	return true
}

// Page returns one page of the attempt records matching f, newest first
// when desc, in the order they are stored (a batched message's records
// one by one, each with its own position: scan.Pos{Seq, Idx}), after
// (ascending) or before (descending) cursor when set. Records that do not
// decode are left out. It holds at most limit records and one message in
// memory, however many are stored. It returns ErrNoStream when ATTEMPTS is
// missing.
func Page(ctx context.Context, js jetstream.JetStream, f Filter, desc bool, cursor *scan.Pos, limit int) (scan.PageResult[Record], error) {
	s, err := js.Stream(ctx, stream.Attempts)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return scan.PageResult[Record]{}, ErrNoStream
	}
	if err != nil {
		return scan.PageResult[Record]{}, fmt.Errorf("look up stream %s: %w", stream.Attempts, err)
	}
	subjects := []string{subject(f.Tenant, f.Subscription)}
	lo, hi, err := deadletter.Bounds(ctx, s, subjects, f.Since, f.Until)
	if err != nil {
		return scan.PageResult[Record]{}, err
	}
	decode := protojson.UnmarshalOptions{DiscardUnknown: true}
	return scan.Page(ctx, s, scan.PageOptions{Subjects: subjects, Desc: desc, Cursor: cursor, Lo: lo, Hi: hi, Limit: limit},
		func(m jetstream.Msg, seq uint64) ([]Record, error) {
			if id := m.Headers().Get(stream.HeaderEventID); f.EventID != "" && id != "" && id != f.EventID {
				return nil, nil // a one-record message of another event
			}
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			var out []Record
			for i, line := range stream.AttemptRecords(m.Data()) {
				if !f.mayMatch(line) {
					continue
				}
				a := &hooklinev1.Attempt{}
				if decode.Unmarshal(line, a) != nil || !f.match(a) {
					continue
				}
				t := meta.Timestamp
				if a.GetStartedAt() != nil {
					t = a.GetStartedAt().AsTime()
				}
				if (!f.Since.IsZero() && t.Before(f.Since)) || (!f.Until.IsZero() && !t.Before(f.Until)) {
					continue
				}
				out = append(out, Record{Seq: seq, Index: i, Attempt: a, Time: t})
			}
			return out, nil
		}, func(r Record) scan.Pos { return scan.Pos{Seq: r.Seq, Idx: r.Index} })
}

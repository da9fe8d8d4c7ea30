// Package attempt reads the attempt history the deliverer records in the
// ATTEMPTS stream (subject attempts.<tenant>.<subscription>). A message
// holds one or more records of one subscription, one a line, each the
// proto3 JSON of hooklinev1.Attempt (stream.AttemptRecords splits them);
// the header Hookline-Event-Id is set only on a message of one record.
package attempt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// ErrNoStream is returned by List when the ATTEMPTS stream does not exist.
var ErrNoStream = errors.New("stream " + stream.Attempts + " not found")

// Query selects attempts. Tenant and Subscription narrow the subject
// server-side; EventID, Since and Until filter what is read.
type Query struct {
	Tenant       string
	Subscription string
	EventID      string
	Since, Until time.Time
	// Limit keeps the newest Limit attempts (0: all).
	Limit int
}

// Record is one attempt and where it is stored.
type Record struct {
	// Seq is the stream sequence of the message holding the record;
	// records of one message share it.
	Seq uint64
	// Index is the record's position among the message's records (0 for
	// the first; set by Page).
	Index   int
	Attempt *hooklinev1.Attempt
	// Time is when the attempt started (the stream time when the record
	// lacks started_at).
	Time time.Time
}

// Skipped is a line of an ATTEMPTS message that is not an attempt record,
// or a message that holds no record at all.
type Skipped struct {
	Seq uint64
	// Record is the 1-based position of the bad line among the message's
	// records (blank lines not counted); 0 when the message holds none.
	Record int
	// Err says which record ("record 3: …") and why.
	Err error
}

// errNoRecords is the Err of a Skipped message whose body holds no record.
var errNoRecords = errors.New("the body holds no record (empty or blank)")

// List returns the attempts of q ordered by time (oldest first; ties by
// attempt number, then by sequence, then by position in the message), and
// the records it could not decode. Limit applies to records, not messages.
// It returns ErrNoStream when ATTEMPTS is missing.
func List(ctx context.Context, js jetstream.JetStream, q Query) ([]Record, []Skipped, error) {
	s, err := js.Stream(ctx, stream.Attempts)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, ErrNoStream
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look up stream %s: %w", stream.Attempts, err)
	}
	opts := scan.Options{Subjects: []string{subject(q.Tenant, q.Subscription)}}
	if !q.Since.IsZero() {
		// A message is stored after every record it holds started (a
		// batch too); the minute allows for the deliverer's clock.
		opts.StartTime = q.Since.Add(-time.Minute)
	}
	var (
		out     []Record
		skipped []Skipped
		decode  = protojson.UnmarshalOptions{DiscardUnknown: true}
	)
	err = scan.Scan(ctx, s, opts, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seq := meta.Sequence.Stream
		records := stream.AttemptRecords(m.Data())
		if len(records) == 0 {
			skipped = append(skipped, Skipped{Seq: seq, Err: errNoRecords})
			return nil
		}
		// The header names the event of a one-record message (and is absent
		// otherwise): skip decoding a record that cannot match. A message of
		// several records is always decoded, header or not.
		if id := m.Headers().Get(stream.HeaderEventID); q.EventID != "" && len(records) == 1 && id != "" && id != q.EventID {
			return nil
		}
		for i, line := range records {
			a := &hooklinev1.Attempt{}
			if err := decode.Unmarshal(line, a); err != nil {
				skipped = append(skipped, Skipped{Seq: seq, Record: i + 1, Err: fmt.Errorf("record %d: %w", i+1, err)})
				continue
			}
			if q.EventID != "" && a.GetEventId() != q.EventID {
				continue
			}
			t := meta.Timestamp
			if a.GetStartedAt() != nil {
				t = a.GetStartedAt().AsTime()
			}
			if (!q.Since.IsZero() && t.Before(q.Since)) || (!q.Until.IsZero() && !t.Before(q.Until)) {
				continue
			}
			out = append(out, Record{Seq: seq, Attempt: a, Time: t})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Attempt, out[j].Attempt
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		if a.GetAttempt() != b.GetAttempt() {
			return a.GetAttempt() < b.GetAttempt()
		}
		// Records of one message share Seq: the stable sort keeps them
		// in their order in the message.
		return out[i].Seq < out[j].Seq
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, skipped, nil
}

func subject(tenant, sub string) string {
	if tenant == "" && sub == "" {
		return stream.AttemptsPrefix + ".>"
	}
	if tenant == "" {
		tenant = "*"
	}
	if sub == "" {
		sub = "*"
	}
	return stream.AttemptSubject(tenant, sub)
}

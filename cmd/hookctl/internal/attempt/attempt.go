// Package attempt reads the attempt history the deliverer records in the
// ATTEMPTS stream (subject attempts.<tenant>.<subscription>, body the
// protojson of hooklinev1.Attempt).
package attempt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hookline/hookline/cmd/hookctl/internal/scan"
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
	Seq     uint64
	Attempt *hooklinev1.Attempt
	// Time is when the attempt started (the stream time when the record
	// lacks started_at).
	Time time.Time
}

// Skipped is a message in ATTEMPTS that is not an attempt record.
type Skipped struct {
	Seq uint64
	Err error
}

// List returns the attempts of q ordered by time (oldest first; ties by
// attempt number, then by sequence), and the messages it could not decode.
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
		if q.EventID != "" && m.Headers().Get(stream.HeaderEventID) != "" && m.Headers().Get(stream.HeaderEventID) != q.EventID {
			return nil
		}
		a := &hooklinev1.Attempt{}
		if err := decode.Unmarshal(m.Data(), a); err != nil {
			skipped = append(skipped, Skipped{Seq: meta.Sequence.Stream, Err: err})
			return nil
		}
		if q.EventID != "" && a.GetEventId() != q.EventID {
			return nil
		}
		t := meta.Timestamp
		if a.GetStartedAt() != nil {
			t = a.GetStartedAt().AsTime()
		}
		if (!q.Since.IsZero() && t.Before(q.Since)) || (!q.Until.IsZero() && !t.Before(q.Until)) {
			return nil
		}
		out = append(out, Record{Seq: meta.Sequence.Stream, Attempt: a, Time: t})
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

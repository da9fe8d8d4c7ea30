// Package deadletter is the reader's side of the DEADLETTER stream, shared by
// hookctl and the producer's API: reading entries into hooklinev1.DeadLetter
// records, selecting them by filters (one page at a time, too), checking
// their subscriptions, replaying them as new delivery tasks, and purging them.
package deadletter

import (
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Entry is one dead letter: the record decoded from its headers, and the
// headers themselves (every one, for `dlq show`).
type Entry struct {
	Record *hooklinev1.DeadLetter
	Header nats.Header
}

// Decode builds the record of the DEADLETTER message stored at seq. It is
// lenient: a dead letter published by hand with missing headers still lists,
// with tenant and subscription taken from the subject and the dead-letter
// time from the stream when the headers lack them. data may be nil (a
// headers-only read).
func Decode(subject string, seq uint64, stored time.Time, h nats.Header, data []byte) Entry {
	r := &hooklinev1.DeadLetter{
		Seq:             seq,
		EventId:         h.Get(stream.HeaderEventID),
		Tenant:          h.Get(stream.HeaderTenant),
		EventType:       h.Get(stream.HeaderEventType),
		SubscriptionId:  h.Get(stream.HeaderSubscriptionID),
		Reason:          h.Get(stream.HeaderReason),
		LastError:       h.Get(stream.HeaderLastError),
		OriginalSubject: h.Get(stream.HeaderOriginalSubject),
		FirstAttemptAt:  timestamp(h.Get(stream.HeaderFirstAttemptAt)),
		LastAttemptAt:   timestamp(h.Get(stream.HeaderLastAttemptAt)),
		OccurredAt:      timestamp(h.Get(stream.HeaderOccurredAt)),
		DeadLetteredAt:  timestamp(h.Get(stream.HeaderDeadLetteredAt)),
		Data:            data,
	}
	if n, err := strconv.ParseInt(h.Get(stream.HeaderLastStatus), 10, 32); err == nil {
		r.LastStatus = int32(n)
	}
	if n, err := strconv.ParseUint(h.Get(stream.HeaderAttempt), 10, 32); err == nil {
		r.Attempts = uint32(n)
	}
	if parts := strings.SplitN(subject, ".", 3); len(parts) == 3 && parts[0] == stream.DeadLetterPrefix {
		if r.Tenant == "" {
			r.Tenant = parts[1]
		}
		if r.SubscriptionId == "" {
			r.SubscriptionId = parts[2]
		}
	}
	if r.DeadLetteredAt == nil && !stored.IsZero() {
		r.DeadLetteredAt = timestamppb.New(stored)
	}
	return Entry{Record: r, Header: h}
}

func timestamp(s string) *timestamppb.Timestamp {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return timestamppb.New(t)
}

// Time is when the entry was dead-lettered (the zero time if unknown).
func (e Entry) Time() time.Time {
	if e.Record.GetDeadLetteredAt() == nil {
		return time.Time{}
	}
	return e.Record.GetDeadLetteredAt().AsTime()
}

// IsReplay reports whether the entry is a replayed task that failed again,
// and the DEADLETTER sequence it had been replayed from.
func (e Entry) IsReplay() (string, bool) {
	v := e.Header.Get(stream.HeaderReplay)
	return v, v != ""
}

// Encode is the DEADLETTER message of rec in the header contract (the
// inverse of Decode), written by pkg/wire as the deliverer writes it; used
// by fixtures and tests.
func Encode(rec *hooklinev1.DeadLetter) *nats.Msg {
	t := func(ts *timestamppb.Timestamp) time.Time {
		if ts == nil {
			return time.Time{}
		}
		return ts.AsTime()
	}
	occurred := ""
	if rec.GetOccurredAt() != nil {
		occurred = wire.FormatTime(rec.GetOccurredAt().AsTime())
	}
	return wire.DeadLetter{
		EventID:         rec.GetEventId(),
		Tenant:          rec.GetTenant(),
		EventType:       rec.GetEventType(),
		OccurredAt:      occurred,
		SubscriptionID:  rec.GetSubscriptionId(),
		Reason:          rec.GetReason(),
		Attempts:        int(rec.GetAttempts()),
		LastStatus:      int(rec.GetLastStatus()),
		LastError:       rec.GetLastError(),
		FirstAttemptAt:  t(rec.GetFirstAttemptAt()),
		LastAttemptAt:   t(rec.GetLastAttemptAt()),
		DeadLetteredAt:  t(rec.GetDeadLetteredAt()),
		OriginalSubject: rec.GetOriginalSubject(),
	}.Msg(nil, rec.GetData())
}

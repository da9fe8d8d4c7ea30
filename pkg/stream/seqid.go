package stream

import (
	"strconv"
	"strings"
	"time"
)

// SeqEventIDPrefix starts the id of an event published to EVENTS without a
// Nats-Msg-Id (or with one that is not a valid event id).
const SeqEventIDPrefix = "evt_seq_"

// SeqEventID is the id of an event published without a Nats-Msg-Id:
// evt_seq_<EVENTS sequence>_<stored time, unix nanoseconds>. Both come from
// the stored message, so every reader (dispatch, the API, a back-fill) gives
// the same event the same id; the time keeps it unique when EVENTS is
// recreated and its sequences start again at 1, so that a receiver
// deduplicating on webhook-id does not drop a new event as an old one. It
// stays inside ValidateEventID's grammar (at most 48 characters).
func SeqEventID(seq uint64, stored time.Time) string {
	return SeqEventIDPrefix + strconv.FormatUint(seq, 10) + "_" + strconv.FormatInt(stored.UnixNano(), 10)
}

// ParseSeqEventID reads a SeqEventID: its sequence and stored time. An id
// of the older form evt_seq_<sequence> (dead letters and receivers' records
// from before the time was added) has a zero time. ok is false for any
// other id.
func ParseSeqEventID(id string) (seq uint64, stored time.Time, ok bool) {
	rest, ok := strings.CutPrefix(id, SeqEventIDPrefix)
	if !ok {
		return 0, time.Time{}, false
	}
	s, ns, timed := strings.Cut(rest, "_")
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, time.Time{}, false
	}
	if !timed {
		return seq, time.Time{}, true
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	return seq, time.Unix(0, n), true
}

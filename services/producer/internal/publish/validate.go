package publish

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
)

// Validate checks ev as every way in takes an event (POST /v1/events and
// its batch, the NATS ingest) before any of it is published: report is
// called for each field at fault, under its API name (tenant, type, data,
// id, ordering_key), so that the API can list them all and the ingest
// answer the first. maxData bounds the data (0: no bound); an id is
// checked unless the caller made it up (Generated).
func (ev Event) Validate(maxData int64, report func(field string, err error)) {
	if ev.Tenant == "" {
		report("tenant", errors.New("is required"))
	} else if err := subscription.ValidateTenant(ev.Tenant); err != nil {
		report("tenant", err)
	}
	switch {
	case ev.Type == "":
		report("type", errors.New("is required"))
	case strings.HasPrefix(ev.Type, stream.ReservedTypePrefix):
		report("type", fmt.Errorf("%s* types are Hookline's own (e.g. hookline.subscription.disabled); a tenant may not publish them", stream.ReservedTypePrefix))
	default:
		if err := subscription.ValidateEventType(ev.Type); err != nil {
			report("type", err)
		}
	}
	switch {
	case len(ev.Data) == 0 || bytes.Equal(bytes.TrimSpace(ev.Data), []byte("null")):
		report("data", errors.New("is required (any JSON value except null)"))
	case maxData > 0 && int64(len(ev.Data)) > maxData:
		report("data", fmt.Errorf("must be at most %d bytes", maxData))
	case !json.Valid(ev.Data):
		// Stored, it would only be dead-lettered as invalid_payload.
		report("data", errors.New("must be a JSON value"))
	}
	if !ev.Generated {
		if err := stream.ValidateEventID(ev.ID); err != nil {
			report("id", err)
		}
	}
	if ev.OrderingKey != "" {
		if err := stream.ValidateOrderingKey(ev.OrderingKey); err != nil {
			report("ordering_key", err)
		}
	}
}

// ParseOccurredAt reads an event's occurred_at (RFC 3339).
func ParseOccurredAt(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("must be an RFC 3339 timestamp, e.g. 2026-01-02T15:04:05Z")
	}
	return t, nil
}

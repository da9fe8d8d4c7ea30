package tracing

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Hookline's span attributes. Ids, tenants and types are fine here (unlike
// metric labels); URLs, secrets, signatures, custom header values and
// bodies never are: a span leaves the process for a collector that other
// people read.
const (
	AttrTenant         = attribute.Key("hookline.tenant")
	AttrEventID        = attribute.Key("hookline.event.id")
	AttrEventType      = attribute.Key("hookline.event.type")
	AttrSubscriptionID = attribute.Key("hookline.subscription.id")
	// AttrAttempt is the attempt's number, from 1.
	AttrAttempt = attribute.Key("hookline.attempt")
	// AttrSubscriptions is how many subscriptions an event matched.
	AttrSubscriptions = attribute.Key("hookline.subscriptions")
	// AttrOutcome is the attempt's outcome (success, retry, dead_letter…).
	AttrOutcome = attribute.Key("hookline.outcome")
	// AttrReplay is the DEADLETTER sequence a replayed task came from.
	AttrReplay = attribute.Key("hookline.replay")
)

// MessagingSystem is messaging.system of Hookline's NATS spans.
var MessagingSystem = semconv.MessagingSystemKey.String("nats")

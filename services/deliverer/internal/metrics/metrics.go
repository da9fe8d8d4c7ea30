// Package metrics holds the deliverer's Prometheus collectors. Labels are
// bounded sets (outcomes, reasons, error classes): never ids or URLs.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the deliverer's collectors.
type Metrics struct {
	Attempts             *prometheus.CounterVec
	AttemptDuration      *prometheus.HistogramVec
	AttemptErrors        *prometheus.CounterVec
	DeadLetters          *prometheus.CounterVec
	EventsDispatched     prometheus.Counter
	EventsUnmatched      prometheus.Counter
	EventsInvalid        *prometheus.CounterVec
	EventsUnscoped       prometheus.Counter
	TasksPublished       prometheus.Counter
	TasksDeferred        prometheus.Counter
	ScheduleFailures     prometheus.Counter
	AttemptRecordsFailed prometheus.Counter
	// Admission: tasks that waited in their subscription's line, how long,
	// how many wait now, and tasks deferred instead, by reason.
	AdmissionParked    prometheus.Counter
	AdmissionParkedNow prometheus.Gauge
	AdmissionWait      prometheus.Histogram
	AdmissionDeferred  *prometheus.CounterVec
	AdmissionRefused   *prometheus.CounterVec
	// AdmissionLinePolls counts the admissions asked for the heads of
	// waiting lines; AdmissionWakes the lines woken by a shared slot
	// (their tenant's, their destination's) freed in this deliverer.
	AdmissionLinePolls prometheus.Counter
	AdmissionWakes     prometheus.Counter
	// Ordered delivery: tasks waiting for an earlier event of their key,
	// redelivered tasks of a finished key line skipped, and tasks whose
	// key line Redis no longer held.
	OrderingWaiting   prometheus.Gauge
	OrderingSkipped   prometheus.Counter
	OrderingStateLost prometheus.Counter
	// Direct: first attempts made from dispatch (no task stored), by what
	// became of them, and the fan-outs that stored a task instead, by why.
	Direct *prometheus.CounterVec
	// DispatchWaiting: events fetched from EVENTS and waiting for a
	// dispatch worker in the fair buffer.
	DispatchWaiting prometheus.Gauge
	// PullRestarts: message iterators the stages' watchdog replaced
	// (pool.Messages), by stage and reason.
	PullRestarts *prometheus.CounterVec
}

// PullStages and PullRestartReasons are the values of
// hookline_pull_restarts_total's labels (pool.RestartReasons).
var (
	PullStages         = []string{"dispatch", "deliver"}
	PullRestartReasons = []string{"stalled", "closed"}
)

// DirectResults are the values of hookline_direct_attempts_total's result
// label: what became of a first attempt made from dispatch (delivered,
// retry_scheduled, dead_lettered), a delivery stored already deferred
// because its subscription's line was full here (deferred: no attempt, no
// task), or why a task was stored instead
// (unmeasured_or_slow: the endpoint is not known to be fast here; line:
// its line was too long to wait in, or no slot came within the wait; busy: every direct slot is
// taken; refused: admission said no for longer than a slot's wait (a rate
// limit, an open circuit); tenant_busy: the subscription's tenant holds
// its share of the direct slots; not_ready: the subscription's policy
// or secrets could not be resolved; fallback: a retry or dead letter could
// not be stored, so the task was).
var DirectResults = []string{"delivered", "retry_scheduled", "dead_lettered", "deferred", "unmeasured_or_slow", "line", "busy", "tenant_busy", "refused", "not_ready", "fallback"}

// DeferReasons are the values of hookline_admission_deferred_total's
// reason label. The first admissionReasons are admission's refusals
// (hookline_admission_refused_total's reason label too).
var DeferReasons = []string{"in_flight_full", "rate_limited", "circuit_open", "probe_in_flight", "tenant_full", "destination_full", "destination_open", "line_full", "ordered", "shutdown"}

const admissionReasons = 7

// Attempt outcomes (label values of hookline_attempts_total).
var Outcomes = []string{"success", "retry", "dead_letter"}

// New creates the collectors and registers them with reg. Label values in
// outcomes, reasons and classes are pre-created so that rates start at 0.
func New(reg prometheus.Registerer, reasons, classes []string) *Metrics {
	m := &Metrics{
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_attempts_total",
			Help: "HTTP delivery attempts by outcome (success, retry, dead_letter).",
		}, []string{"outcome"}),
		AttemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookline_attempt_duration_seconds",
			Help:    "Duration of HTTP delivery attempts by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"outcome"}),
		AttemptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_attempt_errors_total",
			Help: "Failed HTTP delivery attempts by error class (timeout, connection_refused, http_status, …).",
		}, []string{"error_class"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_dead_letters_total",
			Help: "Dead letters published by reason.",
		}, []string{"reason"}),
		EventsDispatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_events_dispatched_total",
			Help: "Events fanned out to at least one subscription.",
		}),
		EventsUnmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_events_unmatched_total",
			Help: "Events that matched no enabled subscription (acked).",
		}),
		EventsInvalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_events_invalid_total",
			Help: "Events with a body that is not JSON, a subject without a type, an invalid event id (Nats-Msg-Id) or ordering key (Hookline-Ordering-Key), by problem.",
		}, []string{"problem"}),
		EventsUnscoped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_events_unscoped_id_total",
			Help: "Events whose Nats-Msg-Id is a bare event id rather than <tenant>:<event id>: their deduplication is shared with every tenant (see the NATS contract).",
		}),
		TasksPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_tasks_published_total",
			Help: "Delivery tasks published by dispatch (acknowledged by JetStream, duplicates included).",
		}),
		TasksDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_tasks_deferred_total",
			Help: "Tasks put back without an attempt (endpoint admission or a lookup failure).",
		}),
		ScheduleFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_retry_schedule_failures_total",
			Help: "Retry schedules that could not be published (the task was nak'ed with the delay instead).",
		}),
		AttemptRecordsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_attempt_records_failed_total",
			Help: "Attempt records that could not be stored in ATTEMPTS.",
		}),
		AdmissionParked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookline_admission_parked_total",
			Help: "Tasks that waited in their subscription's line for an admission slot (no worker held, no retry spent).",
		}),
		AdmissionParkedNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookline_admission_parked",
			Help: "Tasks waiting in line for an admission slot now, in this deliverer.",
		}),
		AdmissionWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookline_admission_wait_seconds",
			Help:    "How long tasks waited in line before their attempt.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10, 30},
		}),
		AdmissionDeferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_admission_deferred_total",
			Help: "Tasks deferred without an attempt (a scheduled copy), by reason: circuit_open, probe_in_flight, rate_limited, in_flight_full, tenant_full, destination_full, destination_open (a long wait), line_full (the line had no room), ordered (waiting for an earlier event of its ordering key), shutdown.",
		}, []string{"reason"}),
	}
	m.AdmissionRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_admission_refused_total",
		Help: "Admissions refused (the task then waited in line or was deferred), by reason: in_flight_full, rate_limited, circuit_open, probe_in_flight, tenant_full (the tenant's share of workers or cap), destination_full (the host's cap), destination_open (the host's circuit: open, or half-open with its probe in flight).",
	}, []string{"reason"})
	m.AdmissionLinePolls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_admission_line_polls_total",
		Help: "Admissions asked for the head of a task line (each a Redis round trip): when the line formed, when a slot freed in this deliverer woke it, and on its backoff timer (20ms doubling to HOOKLINE_ADMISSION_POLL_MAX).",
	})
	m.AdmissionWakes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_admission_line_wakes_total",
		Help: "Task lines woken by a tenant's or destination's slot freed in this deliverer, instead of waiting for their next poll.",
	})
	m.OrderingWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hookline_ordering_waiting",
		Help: "Tasks of ordered subscriptions waiting in this deliverer for an earlier event of their ordering key.",
	})
	m.OrderingSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_ordering_skipped_total",
		Help: "Redelivered tasks of an ordering key whose line had already moved past them (delivered or dead-lettered before): acked without a new attempt.",
	})
	m.OrderingStateLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_ordering_state_lost_total",
		Help: "Ordered tasks whose place in their key's line Redis did not hold (Redis lost its data, or the task predates ordering): order is not guaranteed for them.",
	})
	m.Direct = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_direct_attempts_total",
		Help: "First attempts made from dispatch without storing a task, by result (delivered, retry_scheduled, dead_lettered), fan-outs that stored a delivery already deferred because its line was full (deferred), and fan-outs that stored a task instead, by why (unmeasured_or_slow, line, busy, tenant_busy, refused, not_ready, fallback).",
	}, []string{"result"})
	m.DispatchWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hookline_dispatch_waiting",
		Help: "Events fetched from EVENTS that wait in this deliverer's dispatch buffer for a worker (served a tenant at a time, in turn).",
	})
	for _, r := range DirectResults {
		m.Direct.WithLabelValues(r)
	}
	m.PullRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_pull_restarts_total",
		Help: "Message iterators of a stage (dispatch, deliver) replaced by its watchdog, by reason: stalled (workers waited without a message while the consumer had messages to deliver) or closed (the iterator closed by itself while the consumer was there).",
	}, []string{"stage", "reason"})
	for _, st := range PullStages {
		for _, r := range PullRestartReasons {
			m.PullRestarts.WithLabelValues(st, r)
		}
	}
	for _, r := range DeferReasons {
		m.AdmissionDeferred.WithLabelValues(r)
	}
	for _, r := range DeferReasons[:admissionReasons] {
		m.AdmissionRefused.WithLabelValues(r)
	}
	for _, o := range Outcomes {
		m.Attempts.WithLabelValues(o)
		m.AttemptDuration.WithLabelValues(o)
	}
	for _, r := range reasons {
		m.DeadLetters.WithLabelValues(r)
	}
	for _, c := range classes {
		m.AttemptErrors.WithLabelValues(c)
	}
	for _, p := range []string{"invalid_json", "no_type", "invalid_id", "invalid_ordering_key"} {
		m.EventsInvalid.WithLabelValues(p)
	}
	reg.MustRegister(m.Attempts, m.AttemptDuration, m.AttemptErrors, m.DeadLetters, m.EventsDispatched,
		m.EventsUnmatched, m.EventsInvalid, m.EventsUnscoped, m.TasksPublished, m.TasksDeferred, m.ScheduleFailures,
		m.AttemptRecordsFailed, m.AdmissionParked, m.AdmissionParkedNow, m.AdmissionWait, m.AdmissionDeferred, m.AdmissionRefused,
		m.AdmissionLinePolls, m.AdmissionWakes,
		m.OrderingWaiting, m.OrderingSkipped, m.OrderingStateLost, m.Direct, m.DispatchWaiting, m.PullRestarts)
	return m
}

// NewViewBehind registers hookline_subscription_view_behind_total: lookups
// that found a layer of the subscription view behind the registry revision
// they needed and asked the next layer — the memo's watch lagged (memo: it
// waited subcache.CatchUp in vain, then asked Redis), or the Redis cache's
// watermark did (redis: the KV bucket answered).
func NewViewBehind(reg prometheus.Registerer, memo, redis func() uint64) {
	for layer, n := range map[string]func() uint64{"memo": memo, "redis": redis} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "hookline_subscription_view_behind_total",
			Help:        "Subscription lookups that found a view layer (memo, redis) behind the registry revision they needed and asked the next layer.",
			ConstLabels: prometheus.Labels{"layer": layer},
		}, func() float64 { return float64(n()) }))
	}
}

// NewRegistryRewound registers hookline_subscription_registry_rewound_total:
// the times this deliverer found the subscriptions bucket deleted and
// created again, or restored from an older backup (its revisions went
// back), and reset and replayed the Redis cache (subscription.Cache.Rewound).
func NewRegistryRewound(reg prometheus.Registerer, n func() uint64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "hookline_subscription_registry_rewound_total",
		Help: "Times the subscriptions KV bucket was found recreated or restored backwards (revisions went back) and the Redis cache was reset and replayed.",
	}, func() float64 { return float64(n()) }))
}

// Package metrics holds the producer's Prometheus collectors. Labels are
// bounded: routes are mux patterns, codes HTTP statuses, results a fixed set.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Results of an event publish (label "result").
const (
	ResultAccepted  = "accepted"  // stored for the first time
	ResultDuplicate = "duplicate" // id already stored (a retried publish)
	ResultFailed    = "failed"    // not acknowledged: the client was told 503
)

// Ops of hookline_event_id_mark_errors_total.
const (
	MarkLookup = "lookup"
	MarkWrite  = "write"
)

// Metrics is every collector of the producer, on its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests    *prometheus.CounterVec
	HTTPDuration    *prometheus.HistogramVec
	EventsPublished *prometheus.CounterVec
	// EventIDMarkErrors counts failed lookups and writes of the marks
	// that keep an event id a duplicate beyond the duplicate window.
	EventIDMarkErrors *prometheus.CounterVec
	// QuotaRefused counts API requests refused by the tenant events/s
	// quota; QuotaDegraded those let through because Redis could not
	// answer.
	QuotaRefused  prometheus.Counter
	QuotaDegraded prometheus.Counter
	// ReplayEntries counts the entries replay jobs handled, by result
	// (replayed, failed, gone); ReplayJobs the jobs that ended, by state
	// (done, failed, cancelled).
	ReplayEntries *prometheus.CounterVec
	ReplayJobs    *prometheus.CounterVec
	// IngestAnswers counts the NATS ingest's answers, by answer (see
	// IngestAnswerValues).
	IngestAnswers *prometheus.CounterVec
}

// Answers of the NATS ingest (hookline_ingest_answers_total).
const (
	IngestStored      = "stored"
	IngestDuplicate   = "duplicate"
	IngestRefused     = "refused"
	IngestUnavailable = "unavailable"
)

// IngestAnswerValues are the values of hookline_ingest_answers_total's
// answer label.
var IngestAnswerValues = []string{IngestStored, IngestDuplicate, IngestRefused, IngestUnavailable}

// New registers the collectors (and the Go and process collectors).
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookline_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		EventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_events_published_total",
			Help: "Events published to the EVENTS stream, by result (accepted, duplicate, failed).",
		}, []string{"result"}),
	}
	m.EventIDMarkErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_event_id_mark_errors_total",
		Help: "Failed lookups and writes of the marks that keep an event id a duplicate beyond the duplicate window, by op (lookup, write); the duplicate window still deduplicates those ids.",
	}, []string{"op"})
	m.QuotaRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_tenant_quota_refused_total",
		Help: "Event publish requests refused (429) by the tenant events/s quota.",
	})
	m.QuotaDegraded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_tenant_quota_degraded_total",
		Help: "Event publish requests let through unchecked by the tenant events/s quota because Redis could not answer.",
	})
	m.ReplayEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_replay_entries_total",
		Help: "Entries (dead letters or events) replay jobs handled, by result (replayed, failed, gone).",
	}, []string{"result"})
	m.ReplayJobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_replay_jobs_total",
		Help: "Replay jobs that ended, by state (done, failed, cancelled).",
	}, []string{"state"})
	m.IngestAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_ingest_answers_total",
		Help: "Publishes to the NATS ingest (ingest.<tenant>.<type>), by answer: stored, duplicate (its id was stored before), refused (400: bad input), unavailable (503: not stored, publish again).",
	}, []string{"answer"})
	m.Registry.MustRegister(m.HTTPRequests, m.HTTPDuration, m.EventsPublished, m.EventIDMarkErrors, m.QuotaRefused, m.QuotaDegraded,
		m.ReplayEntries, m.ReplayJobs, m.IngestAnswers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{ResultAccepted, ResultDuplicate, ResultFailed} {
		m.EventsPublished.WithLabelValues(r)
	}
	for _, op := range []string{MarkLookup, MarkWrite} {
		m.EventIDMarkErrors.WithLabelValues(op)
	}
	for _, r := range []string{"replayed", "failed", "gone"} {
		m.ReplayEntries.WithLabelValues(r)
	}
	for _, st := range []string{"done", "failed", "cancelled"} {
		m.ReplayJobs.WithLabelValues(st)
	}
	for _, a := range IngestAnswerValues {
		m.IngestAnswers.WithLabelValues(a)
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

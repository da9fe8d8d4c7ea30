package metrics

import "github.com/prometheus/client_golang/prometheus"

// Lag is how far behind the pipeline runs: the deliverer's JetStream
// consumers as JetStream counts them (sampled by lag.Sampler; every
// replica reports the same consumer, so aggregate with max, not sum), and
// the end-to-end latency of first successful deliveries.
type Lag struct {
	ConsumerPending     *prometheus.GaugeVec
	ConsumerAckPending  *prometheus.GaugeVec
	ConsumerRedelivered *prometheus.GaugeVec
	ConsumerInfoErrors  *prometheus.CounterVec
	DeliveryLatency     prometheus.Histogram
}

// Consumers are the values of the consumer label.
var Consumers = []string{"dispatch", "deliver"}

// DeliveryLatencyBuckets reach past the default retry schedule's last
// attempt (about 33 hours after the first): a delivery that succeeds on
// its eighth attempt still lands in a bucket below +Inf.
var DeliveryLatencyBuckets = []float64{
	.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 5 * 3600, 12 * 3600, 24 * 3600, 48 * 3600,
}

// NewLag creates the lag collectors and registers them with reg.
func NewLag(reg prometheus.Registerer) *Lag {
	l := &Lag{
		ConsumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_consumer_pending_messages",
			Help: "Messages of the consumer's stream not yet delivered to any deliverer (JetStream num_pending), by consumer (dispatch: events, deliver: tasks); sampled every HOOKLINE_CONSUMER_LAG_INTERVAL.",
		}, []string{"consumer"}),
		ConsumerAckPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_consumer_ack_pending_messages",
			Help: "Messages handed to deliverers and not yet acknowledged (JetStream num_ack_pending), by consumer; at HOOKLINE_MAX_ACK_PENDING the consumer hands out nothing more.",
		}, []string{"consumer"}),
		ConsumerRedelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_consumer_redelivered_messages",
			Help: "Messages handed out more than once and not yet acknowledged (JetStream num_redelivered), by consumer: crashes, lost acks, naks.",
		}, []string{"consumer"}),
		ConsumerInfoErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_consumer_info_errors_total",
			Help: "Failed reads of a consumer's info (the lag gauges then keep their last value), by consumer.",
		}, []string{"consumer"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookline_delivery_latency_seconds",
			Help:    "End-to-end latency: from the event's acceptance (its EVENTS timestamp) to its successful delivery to a subscription, retries and waits included; replays and test deliveries excluded.",
			Buckets: DeliveryLatencyBuckets,
		}),
	}
	for _, c := range Consumers {
		l.ConsumerPending.WithLabelValues(c)
		l.ConsumerAckPending.WithLabelValues(c)
		l.ConsumerRedelivered.WithLabelValues(c)
		l.ConsumerInfoErrors.WithLabelValues(c)
	}
	reg.MustRegister(l.ConsumerPending, l.ConsumerAckPending, l.ConsumerRedelivered, l.ConsumerInfoErrors, l.DeliveryLatency)
	return l
}

package lag_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/deliverer/internal/lag"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSamplerReadsConsumerCounts: on a real nats-server, the gauges say
// what JetStream says of the dispatch consumer: three events stored and
// none handed out → pending 3; one pulled and not acked → pending 2, ack
// pending 1; the same one handed out again → redelivered 1.
func TestSamplerReadsConsumerCounts(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	sc := stream.Config{MemoryStorage: true, Replicas: 1}
	if err := stream.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := nats.NewMsg(stream.EventSubject("acme", "order.created"))
		m.Header.Set(stream.HeaderMsgID, stream.EventMsgID("acme", "evt_"+string(rune('a'+i))))
		m.Data = []byte(`{}`)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	m := metrics.NewLag(prometheus.NewRegistry())
	s := lag.NewSampler(js, lag.Config{Metrics: m, Every: time.Second, Log: zaptest.NewLogger(t)})
	gauge := func(g *prometheus.GaugeVec) float64 { return testutil.ToFloat64(g.WithLabelValues("dispatch")) }

	// JetStream updates a consumer's counts as the stream applies
	// messages and acks: each step is awaited, not assumed.
	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.Sample(ctx); !cond(); s.Sample(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: pending %v ack pending %v redelivered %v", what,
					gauge(m.ConsumerPending), gauge(m.ConsumerAckPending), gauge(m.ConsumerRedelivered))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	await("three events stored, none handed out", func() bool {
		return gauge(m.ConsumerPending) == 3 && gauge(m.ConsumerAckPending) == 0
	})
	if got := testutil.ToFloat64(m.ConsumerPending.WithLabelValues("deliver")); got != 0 {
		t.Fatalf("deliver pending %v", got)
	}
	cons, err := js.Consumer(ctx, stream.Events, stream.DispatchConsumer)
	if err != nil {
		t.Fatal(err)
	}
	first, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	await("one pulled, not acked", func() bool {
		return gauge(m.ConsumerPending) == 2 && gauge(m.ConsumerAckPending) == 1
	})
	if err := first.Nak(); err != nil {
		t.Fatal(err)
	}
	// The nak is applied asynchronously: pull until the nak'ed event comes
	// back (at most the two others first).
	for range 3 {
		again, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if md, _ := again.Metadata(); md != nil && md.NumDelivered == 2 {
			break
		}
	}
	await("the nak'ed event handed out again", func() bool { return gauge(m.ConsumerRedelivered) == 1 })
	if n := testutil.ToFloat64(m.ConsumerInfoErrors.WithLabelValues("dispatch")); n != 0 {
		t.Fatalf("info errors %v", n)
	}
}

// TestSamplerCountsFailures: a consumer that does not exist is counted as
// an error, and the gauges keep their value.
func TestSamplerCountsFailures(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	m := metrics.NewLag(prometheus.NewRegistry())
	m.ConsumerPending.WithLabelValues("deliver").Set(7)
	lag.NewSampler(js, lag.Config{Metrics: m, Every: time.Second, Log: zap.NewNop()}).Sample(context.Background())
	if n := testutil.ToFloat64(m.ConsumerInfoErrors.WithLabelValues("deliver")); n != 1 {
		t.Fatalf("info errors %v, want 1", n)
	}
	if v := testutil.ToFloat64(m.ConsumerPending.WithLabelValues("deliver")); v != 7 {
		t.Fatalf("gauge %v changed on a failed read", v)
	}
}

type fixed struct{ status int }

func (f fixed) Send(context.Context, sender.Request) sender.Result {
	return sender.Result{Status: f.status}
}

// TestTimed: a successful attempt observes the time since acceptance; a
// failure, a replay, a test delivery and a task without the header do not.
func TestTimed(t *testing.T) {
	t.Parallel()
	accepted := time.Now().Add(-90 * time.Second).UTC().Format(time.RFC3339Nano)
	for _, tc := range []struct {
		name   string
		status int
		header map[string][]string
		want   uint64
	}{
		{"success", http.StatusOK, map[string][]string{stream.HeaderAcceptedAt: {accepted}}, 1},
		{"failure", http.StatusInternalServerError, map[string][]string{stream.HeaderAcceptedAt: {accepted}}, 0},
		{"replay", http.StatusOK, map[string][]string{stream.HeaderAcceptedAt: {accepted}, stream.HeaderReplay: {"4"}}, 0},
		{"test delivery", http.StatusOK, map[string][]string{stream.HeaderAcceptedAt: {accepted}, stream.HeaderTest: {"true"}}, 0},
		{"no header", http.StatusOK, nil, 0},
		{"garbage header", http.StatusOK, map[string][]string{stream.HeaderAcceptedAt: {"yesterday"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Buckets: []float64{60, 120}})
			lag.Timed(fixed{tc.status}, h).Send(context.Background(), sender.Request{TaskHeader: tc.header})
			var m dto.Metric
			if err := h.Write(&m); err != nil {
				t.Fatal(err)
			}
			count, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			if count != tc.want {
				t.Fatalf("observed %v times, want %d", count, tc.want)
			}
			if tc.want == 1 && sum < 90 {
				t.Fatalf("latency %vs, want at least the 90s since acceptance", sum)
			}
		})
	}
}

// TestTimedExemplar: a task that carries a traceparent links its latency
// sample to the trace.
func TestTimedExemplar(t *testing.T) {
	t.Parallel()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Buckets: []float64{60, 120}})
	lag.Timed(fixed{http.StatusOK}, h).Send(context.Background(), sender.Request{TaskHeader: map[string][]string{
		stream.HeaderAcceptedAt:  {time.Now().UTC().Format(time.RFC3339Nano)},
		stream.HeaderTraceParent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}})
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	var ex *dto.Exemplar
	for _, b := range m.GetHistogram().GetBucket() {
		if b.GetExemplar() != nil {
			ex = b.GetExemplar()
		}
	}
	if ex == nil || len(ex.GetLabel()) != 1 || ex.GetLabel()[0].GetValue() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("exemplar %v, want the task's trace id", ex)
	}
}

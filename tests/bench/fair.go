package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

// The fairness scenarios: a victim tenant publishes at a steady rate to a
// fast endpoint, first alone ("quiet"), then while a flood tenant's events
// pile up at slow endpoints (each answers 200 after fairFloodDelay: slow
// successes, which never trip a breaker): one endpoint, as issue 18 states
// the bound (a tenant flooding a slow endpoint with 5,000 events, another
// tenant's p99 within twice its quiet value), then eight subscriptions of
// another flood tenant (40,000 deliveries from 5,000 events: the shape the
// red team starved the others with). Every subscription has default
// settings. The floods are never waited for: the first is still being
// served (deferred, a few deliveries a second) during the second.
const (
	fairVictim     = "victim"
	typeFairQuiet  = "fair.quiet"
	fairFloodDelay = 2 * time.Second
	fairRate       = 20
	fairDuration   = 5 * time.Second
)

// The victim's deliveries through tasks: its endpoint answers after
// fairTasksDelay, above what dispatch attempts itself (250 ms), so every
// delivery is a task in DELIVERIES, taken by the deliver stage beside the
// flood's. Measured quiet, and once more right after the eight-subscription
// flood's victim, while that flood's deferred tasks come due.
var fairTasks = []struct{ name, eventType, endpoint string }{
	{"fair: victim's tasks 20/s (300 ms endpoint), quiet", "fair.tasks.quiet", "fair-tasks-quiet"},
	{"fair: victim's tasks 20/s (300 ms endpoint), after the 8 slow subs' flood", "fair.tasks.loaded", "fair-tasks-loaded"},
}

const fairTasksDelay = 300 * time.Millisecond

// fairFlood is one flood scenario's tenant, subscriptions and the
// victim's subscription measured under it.
type fairFlood struct {
	tenant, eventType string
	subs              int
	// victimType and victimEndpoint are the victim's subscription for this
	// scenario (its own, so that the quiet one's measure stays apart).
	victimType, victimEndpoint string
}

var fairFloods = []fairFlood{
	{tenant: "flood1", eventType: "fair.flood1", subs: 1, victimType: "fair.loaded1", victimEndpoint: "fair-loaded1"},
	{tenant: "flood", eventType: "fair.flood", subs: 8, victimType: "fair.loaded", victimEndpoint: "fair-loaded"},
}

// endpoint is the i-th flood subscription's endpoint.
func (f fairFlood) endpoint(i int) string { return fmt.Sprintf("fair-%s-%d", f.tenant, i) }

// fairness returns the victim's quiet scenario and one under each flood
// (cfg.Events/2 events to the flood tenant, × its subscriptions).
func (r *rig) fairness(ctx context.Context) []Scenario {
	out := []Scenario{r.victim(ctx, "fair: victim 20/s, quiet", typeFairQuiet, "fair-quiet")}
	out = append(out, r.victim(ctx, fairTasks[0].name, fairTasks[0].eventType, fairTasks[0].endpoint))
	events := max(r.cfg.Events/2, 1)
	for _, f := range fairFloods {
		for i := range f.subs {
			r.sink.Endpoint(f.endpoint(i)).SetBehavior(fairFloodDelay, 0)
		}
		name := fmt.Sprintf("fair: victim 20/s, %d events × %d slow subs of another tenant", events, f.subs)
		// With -profile, the deliverer and the server from the flood's
		// publish on: its fan-out is what the victim's first second waits
		// behind.
		var stopProfile func()
		if p := profilers(r.profiler(ProcDeliverer, r.stack.Deliverers[0].URL(), "fair-"+f.tenant),
			r.profiler(ProcNATS, "", "fair-"+f.tenant)); p != nil {
			stopProfile = p(ctx)
		}
		if err := publishNATSOf(ctx, r.js, f.tenant, f.eventType, r.prefix+"_"+f.tenant, events, r.cfg.PayloadBytes, nil); err != nil {
			out = append(out, Scenario{Name: name, Path: "nats", Error: "flood: " + err.Error()})
			return out
		}
		// Measure once the flood holds the deliverer's attempts: its
		// endpoints have requests in hand.
		deadline := time.Now().Add(30 * time.Second)
		for r.floodArrivals(f) < f.subs && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		out = append(out, r.victim(ctx, name, f.victimType, f.victimEndpoint))
		if stopProfile != nil {
			stopProfile()
		}
	}
	return append(out, r.victim(ctx, fairTasks[1].name, fairTasks[1].eventType, fairTasks[1].endpoint))
}

// victim publishes fairRate events/s for fairDuration to the victim
// tenant's eventType and measures publish → receipt at endpoint.
func (r *rig) victim(ctx context.Context, name, eventType, endpoint string) Scenario {
	events := int(fairRate * fairDuration.Seconds())
	s := Scenario{Name: name, Path: "nats", Subscriptions: 1, Events: events, Deliveries: events, Rate: fairRate}
	ep := r.sink.Endpoint(endpoint)
	subject := stream.EventSubject(fairVictim, eventType)
	prefix := r.prefix + "_" + endpoint
	send := func(i int) error {
		m := nats.NewMsg(subject)
		m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(fairVictim, eventID(prefix, i)))
		m.Data = Payload(make([]byte, 0, r.cfg.PayloadBytes+32), time.Now().UnixNano(), i, r.cfg.PayloadBytes)
		_, err := r.js.PublishMsgAsync(m)
		if err == jetstream.ErrTooManyStalledMsgs {
			_, err = r.js.PublishMsg(ctx, m)
		}
		return err
	}
	finish := func() error {
		select {
		case <-r.js.PublishAsyncComplete():
			return nil
		case <-time.After(time.Minute):
			return fmt.Errorf("publish acks outstanding after a minute")
		}
	}
	return r.pacedScenario(ctx, s, ep, fairRate, fairDuration, send, finish)
}

// floodArrivals counts the requests f's endpoints received.
func (r *rig) floodArrivals(f fairFlood) int {
	n := 0
	for i := range f.subs {
		n += r.sink.Endpoint(f.endpoint(i)).Stats().Arrivals
	}
	return n
}

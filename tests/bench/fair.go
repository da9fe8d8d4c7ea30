package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

// The fairness scenario: a victim tenant publishes at a steady rate to a
// fast endpoint, first alone ("quiet"), then while a flood tenant's
// events pile up at fairFloodSubs slow endpoints (each answers 200 after
// fairFloodDelay: slow successes, which never trip a breaker). Every
// subscription has default settings. The victim's latency during the
// flood, beside its quiet latency, is what fair sharing is judged by.
const (
	fairVictim     = "victim"
	fairFlood      = "flood"
	typeFairQuiet  = "fair.quiet"
	typeFairLoaded = "fair.loaded"
	typeFairFlood  = "fair.flood"
	fairFloodSubs  = 8
	fairFloodDelay = 2 * time.Second
	fairRate       = 20
	fairDuration   = 5 * time.Second
)

// fairness returns the victim's quiet scenario and its scenario under the
// flood (cfg.Events/2 events to the flood tenant, × fairFloodSubs).
func (r *rig) fairness(ctx context.Context) []Scenario {
	quiet := r.victim(ctx, "fair: victim 20/s, quiet", typeFairQuiet, "fair-quiet")
	for i := range fairFloodSubs {
		r.sink.Endpoint(fmt.Sprintf("fair-flood-%d", i)).SetBehavior(fairFloodDelay, 0)
	}
	flood := max(r.cfg.Events/2, 1)
	if err := publishNATSOf(ctx, r.js, fairFlood, typeFairFlood, r.prefix+"_flood", flood, r.cfg.PayloadBytes, nil); err != nil {
		quiet.Error = "flood: " + err.Error()
		return []Scenario{quiet}
	}
	// Measure once the flood holds the deliverer's attempts: its endpoints
	// have requests in hand.
	deadline := time.Now().Add(30 * time.Second)
	for r.floodArrivals() < fairFloodSubs && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	loaded := r.victim(ctx, fmt.Sprintf("fair: victim 20/s, %d events × %d slow subs of another tenant", flood, fairFloodSubs),
		typeFairLoaded, "fair-loaded")
	return []Scenario{quiet, loaded}
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

// floodArrivals counts the requests the flood's endpoints received.
func (r *rig) floodArrivals() int {
	n := 0
	for i := range fairFloodSubs {
		n += r.sink.Endpoint(fmt.Sprintf("fair-flood-%d", i)).Stats().Arrivals
	}
	return n
}

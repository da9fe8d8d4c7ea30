package security_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// deliveryAPI: what the producer's delivery API does with the shipped
// producer user — read EVENTS, ATTEMPTS and DEADLETTER a page at a time,
// find an event by id, replay a dead letter through a deliverer and delete
// it, keep replay jobs in their bucket — passes; taking from the dispatch
// consumer still does not.
func deliveryAPI(t *testing.T, p, d *component) {
	var dlSeq uint64
	allowed(t, d, "dead-letter a delivery (setup)", func(ctx context.Context) error {
		msg := deadletter.Encode(&hooklinev1.DeadLetter{EventId: "evt_api", Tenant: "acme", SubscriptionId: "sub_api",
			EventType: "order.created", Reason: "attempts_exhausted", DeadLetteredAt: timestamppb.Now(), Data: []byte(`{}`)})
		ack, err := d.js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		dlSeq = ack.Sequence
		return nil
	})
	allowed(t, p, "list and read dead letters", func(ctx context.Context) error {
		st, err := deadletter.Open(ctx, p.js)
		if err != nil {
			return err
		}
		for _, desc := range []bool{true, false} {
			res, err := st.Page(ctx, deadletter.Selection{Tenant: "acme", Since: time.Now().Add(-time.Hour)}, desc, nil, 10)
			if err != nil {
				return err
			}
			if len(res.Items) == 0 {
				return errors.New("no dead letter listed")
			}
		}
		_, err = st.Get(ctx, dlSeq)
		return err
	})
	allowed(t, p, "list attempts", func(ctx context.Context) error {
		_, err := attempt.Page(ctx, p.js, attempt.Filter{Query: attempt.Query{Subscription: "sub_1", Since: time.Now().Add(-time.Hour)}}, true, nil, 10)
		return err
	})
	allowed(t, p, "list events and find one by id", func(ctx context.Context) error {
		if _, err := eventlog.Page(ctx, p.js, eventlog.Filter{Tenant: "acme", Since: time.Now().Add(-time.Hour)}, true, &scan.Pos{Seq: 1 << 40}, 10); err != nil {
			return err
		}
		_, err := eventlog.Find(ctx, p.js, "acme", "evt_1")
		return err
	})
	allowed(t, p, "replay a dead letter through a deliverer, then delete it", func(ctx context.Context) error {
		res, err := replay.Ask(ctx, p.nc, dlSeq)
		if err != nil {
			return err
		}
		if res.Outcome != replay.Replayed {
			return fmt.Errorf("replay: %+v", res)
		}
		st, err := deadletter.Open(ctx, p.js)
		if err != nil {
			return err
		}
		return st.Delete(ctx, dlSeq)
	})
	allowed(t, p, "replay jobs: create, update, get, list", func(ctx context.Context) error {
		kv, err := p.js.KeyValue(ctx, stream.ReplayJobsBucket)
		if err != nil {
			return err
		}
		rev, err := kv.Create(ctx, "rpl_1", []byte(`{"state":"running"}`))
		if err != nil {
			return err
		}
		if _, err := kv.Update(ctx, "rpl_1", []byte(`{"state":"done"}`), rev); err != nil {
			return err
		}
		if _, err := kv.Get(ctx, "rpl_1"); err != nil {
			return err
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return err
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n != 1 {
			return fmt.Errorf("%d keys listed", n)
		}
		return nil
	})
	allowed(t, p, "event id marks: look one up, write one", func(ctx context.Context) error {
		kv, err := p.js.KeyValue(ctx, stream.EventIDsBucket)
		if err != nil {
			return err
		}
		key := stream.EventIDKey("acme", "ord.1")
		if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("lookup: %v", err)
		}
		// As the producer writes it: an async publish to the key's subject.
		ack, err := p.js.Publish(ctx, "$KV."+stream.EventIDsBucket+"."+key, []byte("1"))
		if err != nil {
			return err
		}
		if ack.Stream != "KV_"+stream.EventIDsBucket {
			return fmt.Errorf("stored in %s", ack.Stream)
		}
		_, err = kv.Get(ctx, key)
		return err
	})
	allowed(t, p, "Idempotency-Key: claim, answer, watch, release", func(ctx context.Context) error {
		// What services/producer/internal/idempotency does with the bucket.
		kv, err := p.js.KeyValue(ctx, stream.IdempotencyBucket)
		if err != nil {
			return err
		}
		key := stream.IdempotencyKey("acme", "0123abcd")
		rev, err := kv.Create(ctx, key, []byte(`{"state":"pending"}`))
		if err != nil {
			return err
		}
		w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		defer func() { _ = w.Stop() }()
		if rev, err = kv.Update(ctx, key, []byte(`{"state":"done"}`), rev); err != nil {
			return err
		}
		if _, err := kv.Get(ctx, key); err != nil {
			return err
		}
		return kv.Delete(ctx, key, jetstream.LastRevision(rev))
	})
	denied(t, p, "pull from the dispatch consumer", "$JS.API.CONSUMER.MSG.NEXT.EVENTS.dispatch", func(ctx context.Context) error {
		_, err := p.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.dispatch", []byte(`{"batch":1}`))
		return err
	})
	denied(t, p, "delete the dispatch consumer", "$JS.API.CONSUMER.DELETE.EVENTS.dispatch", func(ctx context.Context) error {
		return p.js.DeleteConsumer(ctx, stream.Events, stream.DispatchConsumer)
	})
	allowed(t, d, "store a delivery state", func(ctx context.Context) error {
		if err := deliverystate.NewWriter(d.js).Put("acme", "evt.api", deliverystate.State{SubscriptionID: "sub_api", State: deliverystate.Delivered, Attempts: 1, LastStatus: 200}); err != nil {
			return err
		}
		select {
		case <-d.js.PublishAsyncComplete():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	allowed(t, p, "read an event's delivery states", func(ctx context.Context) error {
		states, err := deliverystate.Read(ctx, p.js, "acme", "evt.api", time.Time{})
		if err != nil {
			return err
		}
		if states["sub_api"].State != deliverystate.Delivered {
			return fmt.Errorf("states %+v", states)
		}
		return nil
	})
	denied(t, p, "write a delivery state (the deliverers')", "$KV.hookline_deliveries.acme.evt=api.sub_api", func(ctx context.Context) error {
		_, err := p.js.Publish(ctx, "$KV.hookline_deliveries.acme.evt=api.sub_api", []byte(`{}`))
		return err
	})
	if _, err := replay.ServeEvents(d.nc, &replay.Replayer{JS: d.js}, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	allowed(t, p, "back-fill an event to a subscription through a deliverer", func(ctx context.Context) error {
		store, err := subscription.NewStore(ctx, p.js)
		if err != nil {
			return err
		}
		if _, err := store.Create(ctx, subscriptionRecord("sub_bf")); err != nil {
			return err
		}
		ev, err := eventlog.Find(ctx, p.js, "acme", "evt_1")
		if err != nil {
			return err
		}
		res, err := replay.AskEvent(ctx, p.nc, replay.EventRequest{Seq: ev.Seq, SubscriptionID: "sub_bf", Job: "rpl_sec"})
		if err != nil {
			return err
		}
		if res.Outcome != replay.Replayed || res.Subject != stream.DeliverySubject("acme", "sub_bf") {
			return fmt.Errorf("back-fill: %+v", res)
		}
		return nil
	})
}

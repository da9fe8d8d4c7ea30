package security_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tenant"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsConfig = "../../deploy/security/nats-server.conf"

// component is a connection as one user of the example configuration. It
// records the permission violations the server reports.
type component struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

func (c *component) sawViolation(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.violations {
		if strings.Contains(v, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

func (c *component) violationList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

// startSecureNATS starts an embedded nats-server from the example
// configuration, as shipped, with random passwords in its environment.
func startSecureNATS(t *testing.T) (url string, passwords map[string]string) {
	passwords = map[string]string{}
	for _, user := range []string{"admin", "producer", "deliverer", "hookctl", "publisher"} {
		passwords[user] = randomPassword(t)
		t.Setenv("HOOKLINE_NATS_"+strings.ToUpper(user)+"_PASSWORD", passwords[user])
	}
	file, err := server.ProcessConfigFile(natsConfig)
	if err != nil {
		t.Fatalf("example nats-server config: %v", err)
	}
	if len(file.Users) != 5 || !file.JetStream {
		t.Fatalf("example config: %d users, jetstream %v; want 5 users with JetStream", len(file.Users), file.JetStream)
	}
	s := natstest.Start(t, func(o *server.Options) {
		store := o.StoreDir
		*o = *file
		o.Host, o.Port, o.StoreDir = "127.0.0.1", -1, store
		o.NoLog, o.NoSigs = true, true
	})
	return s.ClientURL(), passwords
}

func randomPassword(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func connect(t *testing.T, url, user, password string) *component {
	t.Helper()
	c := &component{name: user}
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.Name("hookline-"+user),
		// The services' own reply prefix (natsconn.Connect).
		nats.CustomInboxPrefix(natsconn.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				c.mu.Lock()
				c.violations = append(c.violations, err.Error())
				c.mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allowed runs op and fails the test if it errs.
func allowed(t *testing.T, c *component, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := op(ctx); err != nil {
		t.Fatalf("%s: %s must be allowed: %v (violations: %v)", c.name, what, err, c.violationList())
	}
}

// denied runs op, which must fail, and waits until the server has reported
// the permission violation on subject: the refusal came from the
// permissions, not from anything else.
func denied(t *testing.T, c *component, what, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- op(ctx) }()
	// A JetStream API request that is refused gets no answer: it ends when
	// the violation is seen and the context is cancelled.
	waitFor(t, c.name+": permission violation on "+subject, func() bool {
		select {
		case err := <-errc:
			errc <- err
			return err == nil || c.sawViolation(subject)
		default:
			return c.sawViolation(subject)
		}
	})
	cancel()
	if err := <-errc; err == nil {
		t.Fatalf("%s: %s succeeded; the example permissions must refuse it", c.name, what)
	}
	if !c.sawViolation(subject) {
		t.Fatalf("%s: %s failed, but not with a permission violation on %s", c.name, what, subject)
	}
}

func publish(c *component, subject string, opts ...jetstream.PublishOpt) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.js.Publish(ctx, subject, []byte(`{"k":1}`), opts...)
		return err
	}
}

// listen subscribes to subject and waits for one message (a refused
// subscription never gets one: the wait ends with the context).
func listen(c *component, subject string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sub, err := c.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	}
}

func fetchOne(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			return m, nil
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
	}
	return nil, ctx.Err()
}

func subscriptionRecord(id string) *hooklinev1.Subscription {
	return &hooklinev1.Subscription{
		Id: id, Tenant: "acme", Url: "https://hooks.example.com/in",
		EventTypes: []string{"order.*"},
		Keys:       []*hooklinev1.SigningKey{{Secret: "enc:v1:c2VhbGVk"}},
	}
}

// The example nats-server configuration: an admin creates the topology,
// then each component does its normal work, and what it must not do is
// refused with a permission violation.
func TestNATSLeastPrivilege(t *testing.T) {
	url, pw := startSecureNATS(t)

	admin := connect(t, url, "admin", pw["admin"])
	allowed(t, admin, "ensure the topology", func(ctx context.Context) error {
		return stream.Ensure(ctx, admin.js, stream.Config{})
	})
	if _, err := nats.Connect(url, nats.UserInfo("producer", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if _, err := nats.Connect(url); err == nil {
		t.Fatal("a connection without credentials was accepted")
	}

	producer := connect(t, url, "producer", pw["producer"])
	deliverer := connect(t, url, "deliverer", pw["deliverer"])
	hookctl := connect(t, url, "hookctl", pw["hookctl"])

	t.Run("producer", func(t *testing.T) {
		p := producer
		// What the producer checks at start-up (HOOKLINE_TOPOLOGY=check):
		// the streams and the bucket.
		allowed(t, p, "check streams and bucket at start-up", func(ctx context.Context) error {
			return stream.CheckStreams(ctx, p.js, stream.Config{})
		})
		refusesStreamUpdates(t, admin, p)
		allowed(t, p, "publish an event", publish(p, stream.EventSubject("acme", "order.created"), jetstream.WithMsgID("evt_1")))
		allowed(t, p, "publish a test delivery", publish(p, stream.DeliverySubject("acme", "sub_test"), jetstream.WithMsgID("evt_test:sub_test")))
		allowed(t, p, "stream info", func(ctx context.Context) error {
			s, err := p.js.Stream(ctx, stream.Events)
			if err != nil {
				return err
			}
			_, err = s.Info(ctx)
			return err
		})
		allowed(t, p, "subscription registry: create, update, get, list, delete", func(ctx context.Context) error {
			store, err := subscription.NewStore(ctx, p.js)
			if err != nil {
				return err
			}
			for _, id := range []string{"sub_1", "sub_2"} {
				if _, err := store.Create(ctx, subscriptionRecord(id)); err != nil {
					return err
				}
			}
			if _, _, err := store.Update(ctx, "sub_1", func(s *hooklinev1.Subscription) error {
				s.Description = "updated"
				return nil
			}); err != nil {
				return err
			}
			if _, _, err := store.GetTenant(ctx, "acme", "sub_1"); err != nil {
				return err
			}
			if _, _, err := store.Delete(ctx, "sub_2"); err != nil {
				return err
			}
			subs, err := store.List(ctx, "acme")
			if err != nil || len(subs) != 1 {
				return errors.Join(err, errors.New("want one subscription listed"))
			}
			return nil
		})

		allowed(t, p, "tenant records and uid claims: write, read, claim, release; the deliver consumer's AckWait", func(ctx context.Context) error {
			ts, err := tenant.NewStore(ctx, p.js)
			if err != nil {
				return err
			}
			if _, err := ts.Update(ctx, "acme", func(r *hooklinev1.Tenant) error {
				r.Defaults = &hooklinev1.DeliveryPolicy{AttemptTimeout: "2s"}
				return nil
			}); err != nil {
				return err
			}
			if _, err := ts.Get(ctx, "acme"); err != nil {
				return err
			}
			if err := ts.ClaimUID(ctx, "acme", "ext-1", "sub_1", func(string) (bool, error) { return false, nil }); err != nil {
				return err
			}
			if err := ts.ReleaseUID(ctx, "acme", "ext-1", "sub_1"); err != nil {
				return err
			}
			_, err = p.js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
			return err
		})
		denied(t, p, "delete a stream", "$JS.API.STREAM.DELETE.EVENTS", func(ctx context.Context) error {
			return p.js.DeleteStream(ctx, stream.Events)
		})
		denied(t, p, "purge a stream", "$JS.API.STREAM.PURGE.EVENTS", func(ctx context.Context) error {
			s, err := p.js.Stream(ctx, stream.Events)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		})
		denied(t, p, "publish a dead letter", "deadletter.acme.sub_1", publish(p, stream.DeadLetterSubject("acme", "sub_1")))
		denied(t, p, "pull from the dispatch consumer", "$JS.API.CONSUMER.MSG.NEXT.EVENTS.dispatch", func(ctx context.Context) error {
			_, err := p.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.EVENTS.dispatch", []byte(`{"batch":1}`))
			return err
		})
		denied(t, p, "delete a durable consumer", "$JS.API.CONSUMER.DELETE.EVENTS.dispatch", func(ctx context.Context) error {
			return p.js.DeleteConsumer(ctx, stream.Events, stream.DispatchConsumer)
		})
		denied(t, p, "change a durable consumer", "$JS.API.CONSUMER.CREATE.EVENTS.dispatch.events.>", func(ctx context.Context) error {
			_, err := p.js.CreateOrUpdateConsumer(ctx, stream.Events, stream.ConsumerConfigs(stream.Config{})[stream.Events])
			return err
		})
		denied(t, p, "purge the dead letters", "$JS.API.STREAM.PURGE.DEADLETTER", func(ctx context.Context) error {
			s, err := p.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		})
		denied(t, p, "read a task", "$JS.API.STREAM.MSG.GET.DELIVERIES", func(ctx context.Context) error {
			_, err := p.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.DELIVERIES", []byte(`{"seq":1}`))
			return err
		})
		denied(t, p, "take work from the deliver consumer", "$JS.API.CONSUMER.MSG.NEXT.DELIVERIES.deliver", func(ctx context.Context) error {
			_, err := p.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.DELIVERIES.deliver", []byte(`{"batch":1}`))
			return err
		})
		denied(t, p, "change the dispatch consumer by its filterless subject", "$JS.API.CONSUMER.CREATE.EVENTS.dispatch", func(ctx context.Context) error {
			_, err := p.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE.EVENTS.dispatch", []byte(`{"stream_name":"EVENTS","config":{"durable_name":"dispatch","ack_policy":"none"}}`))
			return err
		})
		// Pull batches carry webhook bodies, KV gets subscription records.
		denied(t, p, "read the deliverer's replies", "_INBOX_deliverer.>", listen(p, "_INBOX_deliverer.>"))
		denied(t, p, "read every reply (the nats.go default inbox)", "_INBOX.>", listen(p, "_INBOX.>"))
	})

	t.Run("deliverer", func(t *testing.T) {
		d := deliverer
		allowed(t, d, "stream.Check at start-up", func(ctx context.Context) error {
			return stream.Check(ctx, d.js, stream.Config{})
		})
		allowed(t, d, "watch the tenant records", func(ctx context.Context) error {
			c, err := tenant.NewCache(ctx, d.js)
			if err != nil {
				return err
			}
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- c.Run(wctx) }()
			_, err = c.Get(ctx, "acme")
			cancel()
			return errors.Join(err, <-done)
		})
		denied(t, d, "write a tenant record", "$KV.hookline_tenants.t.acme", func(ctx context.Context) error {
			kv, err := d.js.KeyValue(ctx, stream.TenantsBucket)
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, stream.TenantKey("acme"), []byte(`{"tenant":"acme"}`))
			return err
		})
		refusesStreamUpdates(t, admin, d)
		denied(t, d, "change a durable consumer", "$JS.API.CONSUMER.CREATE.DELIVERIES.deliver.deliveries.>", func(ctx context.Context) error {
			cc := stream.ConsumerConfigs(stream.Config{})[stream.Deliveries]
			cc.AckWait = time.Hour
			_, err := d.js.CreateOrUpdateConsumer(ctx, stream.Deliveries, cc)
			return err
		})
		// dispatch: take the event, fan out one task, double-ack.
		allowed(t, d, "dispatch", func(ctx context.Context) error {
			cons, err := d.js.Consumer(ctx, stream.Events, stream.DispatchConsumer)
			if err != nil {
				return err
			}
			m, err := fetchOne(ctx, cons)
			if err != nil {
				return err
			}
			if _, err := d.js.Publish(ctx, stream.DeliverySubject("acme", "sub_1"), m.Data(),
				jetstream.WithMsgID(stream.TaskMsgID("evt_1", "sub_1"))); err != nil {
				return err
			}
			return m.DoubleAck(ctx)
		})
		// deliver: the test delivery and the task; one is retried through a
		// message schedule, one dead-lettered, attempts recorded.
		allowed(t, d, "deliver, record, schedule a retry, dead-letter", func(ctx context.Context) error {
			cons, err := d.js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
			if err != nil {
				return err
			}
			first, err := fetchOne(ctx, cons)
			if err != nil {
				return err
			}
			if err := first.InProgress(); err != nil {
				return err
			}
			meta, err := first.Metadata()
			if err != nil {
				return err
			}
			if _, err := d.js.Publish(ctx, stream.AttemptSubject("acme", "sub_1"), []byte(`{}`)); err != nil {
				return err
			}
			retry := stream.RetrySubject("sub_1", meta.Sequence.Stream)
			if _, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: retry, Data: first.Data()},
				jetstream.WithScheduleAt(time.Now()),
				jetstream.WithScheduleTarget(stream.DeliverySubject("acme", "sub_1")),
				jetstream.WithMsgID(retry)); err != nil {
				return err
			}
			if err := first.DoubleAck(ctx); err != nil {
				return err
			}
			second, err := fetchOne(ctx, cons)
			if err != nil {
				return err
			}
			dl := &nats.Msg{Subject: stream.DeadLetterSubject("acme", "sub_1"), Data: second.Data(), Header: nats.Header{}}
			dl.Header.Set(stream.HeaderEventID, "evt_1")
			dl.Header.Set(stream.HeaderTenant, "acme")
			dl.Header.Set(stream.HeaderSubscriptionID, "sub_1")
			dl.Header.Set(stream.HeaderEventType, "order.created")
			dl.Header.Set(stream.HeaderReason, "attempts_exhausted")
			if _, err := d.js.PublishMsg(ctx, dl,
				jetstream.WithMsgID(stream.DeadLetterMsgID("evt_1", "sub_1", ""))); err != nil {
				return err
			}
			if err := second.TermWithReason("attempts_exhausted"); err != nil {
				return err
			}
			// The schedule fires into deliveries.acme.sub_1 (the server
			// publishes it, no permission needed): the retry arrives.
			fired, err := fetchOne(ctx, cons)
			if err != nil {
				return err
			}
			if err := fired.NakWithDelay(time.Minute); err != nil {
				return err
			}
			return nil
		})
		allowed(t, d, "registry: get, watch, auto-disable", func(ctx context.Context) error {
			store, err := subscription.NewStore(ctx, d.js)
			if err != nil {
				return err
			}
			if _, _, err := store.GetTenant(ctx, "acme", "sub_1"); err != nil {
				return err
			}
			if _, err := store.List(ctx, ""); err != nil {
				return err
			}
			_, _, err = store.Update(ctx, "sub_1", func(s *hooklinev1.Subscription) error {
				s.Disabled, s.DisabledReason = true, "gone"
				return nil
			})
			return err
		})
		allowed(t, d, "publish the subscription-disabled event", publish(d, stream.EventSubject("acme", "hookline.subscription.disabled")))
		for _, typ := range []string{"hookline.subscription.failing", "hookline.subscription.recovered", "hookline.delivery.dead_lettered"} {
			allowed(t, d, "publish the operational event "+typ, publish(d, stream.EventSubject("acme", typ)))
		}
		denied(t, d, "publish another hookline.* type", "events.acme.hookline.order.created", publish(d, stream.EventSubject("acme", "hookline.order.created")))

		denied(t, d, "publish an event", "events.x", publish(d, "events.x"))
		denied(t, d, "publish another tenant's event", "events.acme.order.created", publish(d, stream.EventSubject("acme", "order.created")))
		denied(t, d, "delete a stream", "$JS.API.STREAM.DELETE.EVENTS", func(ctx context.Context) error {
			return d.js.DeleteStream(ctx, stream.Events)
		})
		denied(t, d, "purge the dead letters", "$JS.API.STREAM.PURGE.DEADLETTER", func(ctx context.Context) error {
			s, err := d.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		})
		denied(t, d, "delete a durable consumer", "$JS.API.CONSUMER.DELETE.DELIVERIES.deliver", func(ctx context.Context) error {
			return d.js.DeleteConsumer(ctx, stream.Deliveries, stream.DeliverConsumer)
		})
		denied(t, d, "delete a dead letter", "$JS.API.STREAM.MSG.DELETE.DEADLETTER", func(ctx context.Context) error {
			s, err := d.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			return s.DeleteMsg(ctx, 1)
		})
		denied(t, d, "listen to raw events", "events.>", listen(d, "events.>"))
		denied(t, d, "read the producer's replies", "_INBOX_producer.>", listen(d, "_INBOX_producer.>"))
		denied(t, d, "read every reply (the nats.go default inbox)", "_INBOX.>", listen(d, "_INBOX.>"))
	})

	t.Run("hookctl", func(t *testing.T) {
		h := hookctl
		var dlSeq uint64
		allowed(t, h, "list and show dead letters", func(ctx context.Context) error {
			cons, err := h.js.OrderedConsumer(ctx, stream.DeadLetter, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{stream.DeadLetterPrefix + ".acme.>"},
			})
			if err != nil {
				return err
			}
			m, err := fetchOne(ctx, cons)
			if err != nil {
				return err
			}
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			dlSeq = meta.Sequence.Stream
			s, err := h.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			_, err = s.GetMsg(ctx, dlSeq)
			return err
		})
		// The deliverer serves replay requests with its own user.
		if _, err := replay.Serve(deliverer.nc, &replay.Replayer{JS: deliverer.js}, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := deliverer.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		allowed(t, h, "replay a dead letter through a deliverer, then delete and purge it", func(ctx context.Context) error {
			held, err := admin.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			dl, err := held.GetMsg(ctx, dlSeq)
			if err != nil {
				return err
			}
			res, err := replay.Ask(ctx, h.nc, dlSeq)
			if err != nil {
				return err
			}
			if res.Outcome != replay.Replayed {
				return fmt.Errorf("replay of seq %d: %+v", dlSeq, res)
			}
			// The task is exactly what DEADLETTER held, for its subscription.
			if err := sameAsDeadLetter(ctx, admin, dl, res.TaskSeq); err != nil {
				return err
			}
			s, err := h.js.Stream(ctx, stream.DeadLetter)
			if err != nil {
				return err
			}
			if err := s.DeleteMsg(ctx, dlSeq); err != nil {
				return err
			}
			return s.Purge(ctx, jetstream.WithPurgeSubject(stream.DeadLetterSubject("acme", "sub_1")))
		})
		allowed(t, h, "read attempts", func(ctx context.Context) error {
			cons, err := h.js.OrderedConsumer(ctx, stream.Attempts, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return err
			}
			_, err = fetchOne(ctx, cons)
			return err
		})
		allowed(t, h, "read the registry", func(ctx context.Context) error {
			store, err := subscription.NewStore(ctx, h.js)
			if err != nil {
				return err
			}
			_, err = store.List(ctx, "acme")
			return err
		})
		allowed(t, h, "consumer lag", func(ctx context.Context) error {
			cons, err := h.js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
			if err != nil {
				return err
			}
			_, err = cons.Info(ctx)
			return err
		})

		denied(t, h, "publish an event", "events.acme.order.created", publish(h, stream.EventSubject("acme", "order.created")))
		// A task of its own making: any body, signed with the
		// subscription's secret, with no trace in EVENTS.
		denied(t, h, "publish a task", "deliveries.acme.sub_1", func(ctx context.Context) error {
			_, err := h.js.Publish(ctx, stream.DeliverySubject("acme", "sub_1"), []byte(`{"forged":true}`),
				jetstream.WithMsgID(stream.ReplayMsgID("evt_forged", "sub_1", 1)))
			return err
		})
		denied(t, h, "publish a retry schedule", "retry.sub_1.1", publish(h, stream.RetrySubject("sub_1", 1)))
		refusesStreamUpdates(t, admin, h)
		denied(t, h, "read the deliverer's replies", "_INBOX_deliverer.>", listen(h, "_INBOX_deliverer.>"))
		denied(t, h, "write the registry", "$KV.hookline_subscriptions.acme.sub_9", func(ctx context.Context) error {
			kv, err := h.js.KeyValue(ctx, stream.SubscriptionsBucket)
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, "acme.sub_9", []byte(`{}`))
			return err
		})
		denied(t, h, "delete a stream", "$JS.API.STREAM.DELETE.DEADLETTER", func(ctx context.Context) error {
			return h.js.DeleteStream(ctx, stream.DeadLetter)
		})
		denied(t, h, "purge the attempts", "$JS.API.STREAM.PURGE.ATTEMPTS", func(ctx context.Context) error {
			s, err := h.js.Stream(ctx, stream.Attempts)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		})
		denied(t, h, "take work from the deliver consumer", "$JS.API.CONSUMER.MSG.NEXT.DELIVERIES.deliver", func(ctx context.Context) error {
			_, err := h.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.DELIVERIES.deliver", []byte(`{"batch":1}`))
			return err
		})
		denied(t, h, "change a stream", "$JS.API.STREAM.UPDATE.EVENTS", func(ctx context.Context) error {
			return stream.Ensure(ctx, h.js, stream.Config{})
		})
	})

	t.Run("publisher", func(t *testing.T) {
		pub := connect(t, url, "publisher", pw["publisher"])
		allowed(t, pub, "publish an event", publish(pub, stream.EventSubject("globex", "invoice.paid"), jetstream.WithMsgID("evt_pub_1")))
		allowed(t, pub, "publish a one-token event type", publish(pub, stream.EventSubject("acme", "ping"), jetstream.WithMsgID("evt_pub_2")))

		denied(t, pub, "publish Hookline's own notice", "events.acme.hookline.subscription.disabled",
			publish(pub, stream.EventSubject("acme", "hookline.subscription.disabled")))

		// The NATS ingest: the producer takes ingest.<tenant>.<type…> in
		// its queue group and answers on the publisher's inbox (here the
		// test answers as the producer does, with a PubAck).
		in, err := producer.nc.QueueSubscribe("ingest.>", "hookline-ingest", func(m *nats.Msg) {
			_ = m.Respond([]byte(`{"stream":"EVENTS","seq":1}`))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		allowed(t, pub, "publish through the ingest, and have its answer", publish(pub, "ingest.globex.invoice.paid", jetstream.WithMsgID("evt_pub_3")))
		denied(t, pub, "publish Hookline's own notice through the ingest", "ingest.acme.hookline.subscription.disabled",
			publish(pub, "ingest.acme.hookline.subscription.disabled"))
		_ = in.Unsubscribe()
		denied(t, deliverer, "take events from the ingest", "ingest.>", listen(deliverer, "ingest.>"))
		denied(t, hookctl, "take events from the ingest", "ingest.>", listen(hookctl, "ingest.>"))
		denied(t, pub, "write the registry", "$KV.hookline_subscriptions.acme.sub_1", func(ctx context.Context) error {
			_, err := pub.js.Publish(ctx, "$KV.hookline_subscriptions.acme.sub_1", []byte(`{"url":"https://attacker.example/"}`))
			return err
		})
		denied(t, pub, "read the registry", "$JS.API.DIRECT.GET.KV_hookline_subscriptions.$KV.hookline_subscriptions.acme.sub_1", func(ctx context.Context) error {
			_, err := pub.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_hookline_subscriptions.$KV.hookline_subscriptions.acme.sub_1", nil)
			return err
		})
		denied(t, pub, "publish a task", "deliveries.acme.sub_1", publish(pub, stream.DeliverySubject("acme", "sub_1")))
		denied(t, pub, "publish a dead letter", "deadletter.acme.sub_1", publish(pub, stream.DeadLetterSubject("acme", "sub_1")))
		denied(t, pub, "ask for a replay", replay.Subject, func(ctx context.Context) error {
			_, err := replay.Ask(ctx, pub.nc, 1)
			return err
		})
		denied(t, pub, "stream info", "$JS.API.STREAM.INFO.EVENTS", func(ctx context.Context) error {
			_, err := pub.js.Stream(ctx, stream.Events)
			return err
		})
		refusesStreamUpdates(t, admin, pub)
		denied(t, pub, "listen to raw events", "events.>", listen(pub, "events.>"))
		denied(t, pub, "read every reply (the nats.go default inbox)", "_INBOX.>", listen(pub, "_INBOX.>"))
	})

	t.Run("producer: delivery API and replay jobs", func(t *testing.T) { deliveryAPI(t, producer, deliverer) })

	t.Run("replay requests", func(t *testing.T) {
		denied(t, hookctl, "serve replay requests (a deliverer's)", replay.Subject, listen(hookctl, replay.Subject))
		denied(t, producer, "serve replay requests (a deliverer's)", replay.Subject, listen(producer, replay.Subject))
	})

	// Nothing above changed a stream: none has a RePublish.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, name := range hooklineStreams {
		s, err := admin.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if rp := s.CachedInfo().Config.RePublish; rp != nil {
			t.Errorf("stream %s has a RePublish %+v", name, rp)
		}
	}
}

// hooklineStreams are every stream of the topology, the KV bucket's too.
var hooklineStreams = []string{stream.Events, stream.Deliveries, stream.Attempts, stream.DeadLetter,
	"KV_" + stream.SubscriptionsBucket, "KV_" + stream.ReplayJobsBucket, "KV_" + stream.DeliveriesBucket,
	"KV_" + stream.IdempotencyBucket, "KV_" + stream.EventIDsBucket, "KV_" + stream.TenantsBucket}

// refusesStreamUpdates: c cannot update any Hookline stream, here by adding
// a RePublish that would copy every message to a subject c reads (the
// attack of issue 18, item 3), nor create a stream.
func refusesStreamUpdates(t *testing.T, admin, c *component) {
	t.Helper()
	for _, name := range hooklineStreams {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		s, err := admin.js.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: "_INBOX_" + c.name + ".stolen.>"}
		denied(t, c, "add a RePublish to "+name, "$JS.API.STREAM.UPDATE."+name, func(ctx context.Context) error {
			_, err := c.js.UpdateStream(ctx, cfg)
			return err
		})
	}
	denied(t, c, "create a stream", "$JS.API.STREAM.CREATE.STOLEN", func(ctx context.Context) error {
		_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "STOLEN", Subjects: []string{"stolen.>"}})
		return err
	})
}

// sameAsDeadLetter: the task at taskSeq in DELIVERIES is the dead letter
// dl, body and event headers, to dl's subscription, marked as its replay.
func sameAsDeadLetter(ctx context.Context, admin *component, dl *jetstream.RawStreamMsg, taskSeq uint64) error {
	d, err := admin.js.Stream(ctx, stream.Deliveries)
	if err != nil {
		return err
	}
	task, err := d.GetMsg(ctx, taskSeq)
	if err != nil {
		return err
	}
	tenant, sub := dl.Header.Get(stream.HeaderTenant), dl.Header.Get(stream.HeaderSubscriptionID)
	if task.Subject != stream.DeliverySubject(tenant, sub) || string(task.Data) != string(dl.Data) {
		return fmt.Errorf("task %s %q, dead letter %s %q", task.Subject, task.Data, dl.Subject, dl.Data)
	}
	for _, k := range []string{stream.HeaderEventID, stream.HeaderTenant, stream.HeaderSubscriptionID, stream.HeaderEventType} {
		if task.Header.Get(k) != dl.Header.Get(k) {
			return fmt.Errorf("task header %s %q, dead letter %q", k, task.Header.Get(k), dl.Header.Get(k))
		}
	}
	if task.Header.Get(stream.HeaderReplay) != strconv.FormatUint(dl.Sequence, 10) {
		return fmt.Errorf("task %s %q, want the dead letter's seq %d", stream.HeaderReplay, task.Header.Get(stream.HeaderReplay), dl.Sequence)
	}
	return nil
}

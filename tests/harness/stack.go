package harness

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StackOptions shape a Stack.
type StackOptions struct {
	// Deliverers to start (default 1).
	Deliverers int
	// Env overrides DefaultEnv for both services.
	Env Env
	// DelivererEnv overrides Env for the deliverers only.
	DelivererEnv Env
	// NATSURL, when set, is an existing server or cluster to use instead of
	// starting one.
	NATSURL string
	// DefaultSync runs nats-server with its default fsync interval (2
	// minutes) instead of sync_interval: always: for tests that never crash
	// nats-server, where it is 2–3× faster here and changes nothing that
	// they check (an acknowledged write survives a client's crash either
	// way).
	DefaultSync bool
	// DelivererNATSURL, when set, is the URL the deliverers dial (e.g. a
	// Proxy in front of the server).
	DelivererNATSURL string
}

// Stack is the whole system of one test: nats-server, redis-server, the
// producer, deliverers, a receiver and a checker.
type Stack struct {
	tb         testing.TB
	Bins       Binaries
	NATS       *NATS // nil when StackOptions.NATSURL was given
	NATSURL    string
	Redis      *redistest.Server
	Producer   *Service
	Deliverers []*Service
	API        *API
	Receiver   *Receiver
	Checker    *Checker
	NC         *nats.Conn
	JS         jetstream.JetStream
	// Env is what the services were started with (without HOOKLINE_HTTP_ADDR).
	Env          Env
	DelivererEnv Env
}

// NewStack starts everything and waits until both services are ready.
func NewStack(tb testing.TB, o StackOptions) *Stack {
	tb.Helper()
	s := &Stack{tb: tb, Bins: Build(tb), NATSURL: o.NATSURL}
	if s.NATSURL == "" {
		s.NATS = StartNATSWith(tb, NATSOptions{SyncAlways: !o.DefaultSync})
		s.NATSURL = s.NATS.URL()
	}
	s.Redis = redistest.Start(tb)
	s.Env = DefaultEnv.With(Env{
		"HOOKLINE_NATS_URL":  s.NATSURL,
		"HOOKLINE_REDIS_URL": "redis://" + s.Redis.Addr + "/0",
	}).With(o.Env)
	s.DelivererEnv = s.Env.With(o.DelivererEnv)
	if o.DelivererNATSURL != "" {
		s.DelivererEnv = s.DelivererEnv.With(Env{"HOOKLINE_NATS_URL": o.DelivererNATSURL})
	}
	s.NC, s.JS = ConnectNATS(tb, s.NATSURL)
	s.Producer = StartProducer(tb, s.Bins, "producer", s.Env)
	s.API = NewAPI(s.Producer.URL())
	n := o.Deliverers
	if n <= 0 {
		n = 1
	}
	for i := range n {
		s.AddDeliverer(fmt.Sprintf("deliverer-%d", i+1))
	}
	AwaitStream(tb, s.JS, stream.DeadLetter, 10*time.Second)
	s.Receiver = NewReceiver(tb)
	s.Checker = NewChecker(s.JS)
	return s
}

// AddDeliverer starts one more deliverer replica.
func (s *Stack) AddDeliverer(name string) *Service {
	s.tb.Helper()
	d := StartDeliverer(s.tb, s.Bins, name, s.DelivererEnv)
	s.Deliverers = append(s.Deliverers, d)
	return d
}

// Subscribe creates a subscription of tenant to eventTypes pointing at a new
// endpoint called name, binds the endpoint (its secret verifies every
// signature) and declares it to the checker.
func (s *Stack) Subscribe(tenant, name string, eventTypes []string, b Behavior, extra ...map[string]any) (*Endpoint, Subscription) {
	s.tb.Helper()
	ep := s.Receiver.Endpoint(name)
	ep.SetBehavior(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := s.API.CreateSubscription(ctx, tenant, ep.URL, eventTypes, extra...)
	if err != nil {
		s.tb.Fatalf("create subscription %s: %v", name, err)
	}
	if sub.ID == "" || sub.Secret == "" {
		s.tb.Fatalf("create subscription %s: answer without id or secret: %+v", name, sub)
	}
	if err := ep.Bind(sub.ID, sub.Secret); err != nil {
		s.tb.Fatal(err)
	}
	s.Checker.AddSubscription(sub.ID, tenant, eventTypes, ep)
	return ep, sub
}

// Publish publishes one event through the API (retrying until accepted,
// for at most 30s), records it in the checker and returns its id.
func (s *Stack) Publish(tenant, eventType, id string, data string) string {
	s.tb.Helper()
	if id == "" {
		id = "evt_" + NewIDPrefix() + "_single"
	}
	s.Checker.Attempt(id, tenant, eventType)
	var got Published
	Eventually(s.tb, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		got, err = s.API.Publish(ctx, Event{ID: id, Tenant: tenant, Type: eventType, Data: []byte(data)})
		return err
	})
	if got.ID != id {
		s.tb.Fatalf("publish %s: acknowledged as %q", id, got.ID)
	}
	s.Checker.Accept(id, tenant, eventType)
	return id
}

// Warmup publishes one event of eventType for tenant and waits until every
// given endpoint has received it: the pipeline is up and the deliverers see
// the subscriptions.
func (s *Stack) Warmup(tenant, eventType string, eps ...*Endpoint) {
	s.tb.Helper()
	id := s.Publish(tenant, eventType, "", `{"warmup":true}`)
	for _, ep := range eps {
		ep.AwaitDelivered(s.tb, id, 30*time.Second)
	}
}

// Hookctl runs the hookctl binary against the stack's NATS and producer and
// returns its stdout, stderr and exit error.
func (s *Stack) Hookctl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return RunHookctl(ctx, s.Bins, Env{
		"HOOKLINE_NATS_URL": s.NATSURL,
		"HOOKLINE_API_URL":  s.Producer.URL(),
	}, args...)
}

// RunHookctl runs hookctl with env (and no other HOOKLINE_ variable).
func RunHookctl(ctx context.Context, bins Binaries, env Env, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, bins.Hookctl, args...)
	cmd.Env = append(baseEnv(), env.list()...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

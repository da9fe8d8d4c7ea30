// Package service assembles the deliverer from its stages — the
// subscription cache syncer, dispatch (fan-out), deliver (attempts) and the
// admin HTTP server — and runs them until the context ends.
package service

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tenant"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/deliverer/internal/admin"
	"github.com/hookline/hookline/services/deliverer/internal/attempt"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/deferrals"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/dispatch"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/lag"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/opevents"
	"github.com/hookline/hookline/services/deliverer/internal/ordering"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/hookline/hookline/services/deliverer/internal/replay"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/hookline/hookline/services/deliverer/internal/staterec"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Deps are what the service runs on.
type Deps struct {
	NATS  *nats.Conn
	Redis redis.UniversalClient
	Log   *zap.Logger
	// Version goes into the User-Agent ("Hookline/<version>").
	Version string
	// Registry receives the metrics (nil: a new registry with the Go and
	// process collectors).
	Registry *prometheus.Registry
	// Admission (nil: endpoint health from cfg.Health).
	Admission deliver.Admission
	// DialControl vets every address dialled (nil: the pkg/ssrf policy with
	// HOOKLINE_ALLOW_PRIVATE_CIDRS).
	DialControl sender.DialControl
	// Secrets (nil: deliver.OpenedSecrets with the HOOKLINE_SECRET_KEY keys,
	// which opens keys sealed at rest).
	Secrets deliver.Secrets
	// RootCAs for endpoints (nil: the system roots).
	RootCAs *x509.CertPool
	// Tracing (nil: off) makes each fan-out and attempt a span.
	Tracing *tracing.Tracing
}

// The in-process memo answers both stages' lookups.
var (
	_ dispatch.Matcher = (*subcache.Memo)(nil)
	_ deliver.Lookup   = (*subcache.Memo)(nil)
)

// Service is the running deliverer.
type Service struct {
	cfg      config.Config
	log      *zap.Logger
	syncer   *subscription.Syncer
	cache    *subscription.Cache
	memo     *subcache.Memo
	tenants  *tenant.Cache
	dispatch *dispatch.Dispatcher
	deliver  *deliver.Deliverer
	recorder *attempt.Recorder
	states   *groupcommit.Publisher // nil: states published one by one
	batches  *deliverystate.Writer  // nil: no batches to flush (group commit)
	self     *ssrf.Self
	admit    deliver.Admission
	sender   *sender.Sender
	admin    *admin.Server
	replay   *replay.Server
	lag      *lag.Sampler
	started  chan struct{}
	Metrics  *metrics.Metrics
	Registry *prometheus.Registry

	// deferrals counts each subscription's deferrals in Redis.
	deferrals *deferrals.Counter
}

// New builds the service. The topology must exist (stream.Ensure).
func New(ctx context.Context, cfg config.Config, d Deps) (*Service, error) {
	js, err := jetstream.New(d.NATS,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		return nil, err
	}
	box, err := cfg.Secrets.Box()
	if err != nil {
		return nil, err
	}
	cache := subscription.NewCache(d.Redis, store, subscription.WithLogger(d.Log.Named("subscriptions")), subscription.WithRecordAuth(box))
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		return nil, fmt.Errorf("bind kv bucket %s: %w", stream.SubscriptionsBucket, err)
	}
	tenants, err := tenant.NewCache(ctx, js)
	if err != nil {
		return nil, err
	}
	memo := subcache.New(cache, kv, d.Log.Named("subscriptions"), subcache.WithConn(d.NATS),
		subcache.WithHorizon(subscription.NewHorizon(store)))
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := metrics.New(reg, wire.DeadLetterReasons(), sender.Classes)
	lagMetrics := metrics.NewLag(reg)
	metrics.NewViewBehind(reg, memo.Lagged, cache.Behind)
	metrics.NewRegistryRewound(reg, cache.Rewound)
	rec, err := attempt.NewRecorder(d.NATS, attempt.Config{Log: d.Log.Named("attempts"), Failed: m.AttemptRecordsFailed, Linger: cfg.AttemptLinger})
	if err != nil {
		return nil, err
	}
	guard := d.DialControl
	if guard == nil {
		policy, err := cfg.SSRF()
		if err != nil {
			return nil, err
		}
		guard = policy.Control
	}
	// The deliverer's own listener is never a destination, whatever
	// HOOKLINE_ALLOW_PRIVATE_CIDRS opens (Run adds it once it listens).
	self := &ssrf.Self{}
	guard = countBlocked(reg, self.Guard(guard))
	if d.Secrets == nil {
		if d.Secrets, err = openedSecrets(cfg); err != nil {
			return nil, err
		}
	}
	urls, err := openedURLs(cfg)
	if err != nil {
		return nil, err
	}
	snd := sender.New(sender.Options{
		Timeout:          cfg.HTTPTimeout,
		MaxResponseBytes: cfg.MaxResponseBytes,
		UserAgent:        "Hookline/" + d.Version,
		HTTPSOnly:        cfg.Destinations.HTTPSOnly,
		DialControl:      guard,
		RootCAs:          d.RootCAs,
		Tracing:          d.Tracing,
	})
	ops := opevents.New(js) // operational events for tenants
	deadPub := deadletter.NewPublisher(js)
	deadPub.Tracing = d.Tracing
	var dead dispatch.DeadLetters = opevents.DeadLetters{Next: deadPub, Events: ops, OnError: func(err error) {
		d.Log.Warn("operational event not published", zap.Error(err))
	}}
	// GET /v1/events/{id}/deliveries. One batch at a time keeps a key's
	// states in the order they were written.
	// Without group commit the states of events EVENTS stored close
	// together ride in one message: one per state cost a second fsync per
	// delivery under sync_interval: always, and bursts beyond what the
	// disk took were dropped.
	states := deliverystate.NewBatchWriter(js, deliverystate.BatchConfig{OnError: func(n int, err error) {
		d.Log.Warn("delivery states not stored", zap.Int("records", n), zap.Error(err))
	}})
	stateBatches := states
	var statesGroup *groupcommit.Publisher
	if cfg.GroupCommit {
		stateBatches = nil
		statesGroup = groupcommit.New(js, groupcommit.Config{Concurrency: 1})
		states = deliverystate.NewGroupWriter(statesGroup)
	}
	if d.Admission == nil {
		d.Admission = health.New(cfg.Health, health.Limits{AttemptTimeout: cfg.HTTPTimeout, MaxPause: cfg.MaxRetryAfter, Workers: cfg.DeliverWorkers}, health.Deps{
			Redis:      d.Redis,
			Disabler:   health.NewDisabler(store, cache, js, d.Log),
			Notifier:   ops,
			Log:        d.Log,
			Registerer: reg,
		})
	}
	order := ordering.New(d.Redis, cfg.OrderingKeyTTL)
	deferred := deferrals.New(d.Redis, reg) // per subscription, for the stats API
	// A first attempt from dispatch holds its worker until its endpoint
	// answers or times out: at least one worker is always left to fan out,
	// however HOOKLINE_DISPATCH_WORKERS and HOOKLINE_DIRECT_MAX are set,
	// so that an endpoint that starts hanging never stalls every event —
	// even its own tenant's, whose events hold at most pool.DefaultPerKey
	// of the workers.
	directMax, directAttempts := cmp.Or(cfg.DirectMax, -1), min(cfg.DirectMax, pool.DefaultPerKey(cfg.DispatchWorkers)-1)
	if directAttempts <= 0 {
		directMax = -1 // none: every delivery is stored as a task
	}
	deliverer := deliver.New(deliver.Deps{
		JS: js, Lookup: memo, Sender: lag.Timed(snd, lagMetrics.DeliveryLatency), Scheduler: settle.NewScheduler(js), DeadLetters: staterec.DeadLettersTo(dead, states, d.Log),
		Recorder: staterec.Attempts(rec, states, d.Log), Log: d.Log, Metrics: m, Deferrals: deferred, Tracing: d.Tracing,
		Tenants:  tenants,
		Ordering: order,
		Floor:    ordering.NewFloor(ordering.ConsumerAckFloor(js, stream.Events, stream.DispatchConsumer), 0),
	}, deliver.Options{
		Workers:         cfg.DeliverWorkers,
		AckWait:         cfg.AckWait,
		MaxRedeliveries: cfg.MaxRedeliveries,
		Policy: settle.Policy{
			Schedule:      cfg.RetrySchedule,
			Jitter:        cfg.RetryJitter,
			MaxRetryAfter: cfg.MaxRetryAfter,
		},
		Environment:               cfg.PolicyEnvironment(),
		MaxAttemptTimeout:         min(cfg.AckWait, cfg.ShutdownTimeout) - config.AckWaitMargin,
		Admission:                 d.Admission,
		Secrets:                   d.Secrets,
		URLs:                      urls,
		Headers:                   openedHeaders(cfg),
		Auth:                      openedAuth(cfg),
		DefaultMaxInFlight:        cfg.Health.DefaultMaxInFlight,
		DefaultMaxInFlightCeiling: cfg.Health.DefaultMaxInFlightCeiling,
		MaxWait:                   cfg.AdmissionMaxWait,
		PollMax:                   cfg.AdmissionPollMax,
		LineMax:                   cfg.MaxAckPending / 2,
		LinesMax:                  cfg.MaxAckPending * 3 / 4,
		Buffer:                    max(1, cfg.MaxAckPending/4),
		HTTPTimeout:               cfg.HTTPTimeout,
		DirectMax:                 directMax,
		DirectAttempts:            directAttempts,
		DirectTenantShare:         cfg.Health.TenantWorkerShare,
	})
	var direct dispatch.Direct
	if directMax > 0 {
		direct = deliverer
	}
	s := &Service{
		cfg:     cfg,
		log:     d.Log,
		syncer:  subscription.NewSyncer(store, cache, d.Log.Named("subscriptions")),
		cache:   cache,
		memo:    memo,
		tenants: tenants,
		dispatch: dispatch.New(dispatch.Deps{JS: js, Matcher: memo, DeadLetters: staterec.DeadLettersTo(dead, states, d.Log), Log: d.Log, Metrics: m}, dispatch.Options{
			Workers:       cfg.DispatchWorkers,
			Orderer:       order,
			Tracing:       d.Tracing,
			GroupCommit:   groupCommit(cfg),
			Direct:        direct,
			AckWait:       cfg.AckWait,
			Buffer:        cfg.DispatchBufferSize(),
			BufferBytes:   cfg.DispatchBufferBytes,
			TenantFanouts: cfg.TenantFanouts,
		}),
		deliver:  deliverer,
		recorder: rec,
		states:   statesGroup,
		batches:  stateBatches,
		replay:   replay.New(d.NATS, replay.Config{JS: js, Timeout: 10 * time.Second, Tracing: d.Tracing, Log: d.Log}),
		lag:      lag.NewSampler(js, lag.Config{Metrics: lagMetrics, Every: cfg.ConsumerLagInterval, Log: d.Log}),
		self:     self,
		admit:    d.Admission,
		sender:   snd,
		started:  make(chan struct{}),
		Metrics:  m,
		Registry: reg,
	}
	s.deferrals = deferred
	s.admin = admin.New(admin.Config{Addr: cfg.HTTPAddr, Gatherer: reg, Pprof: cfg.Pprof, Checks: map[string]admin.Check{
		"nats": func(context.Context) error {
			if st := d.NATS.Status(); st != nats.CONNECTED {
				return fmt.Errorf("connection %s", st)
			}
			return nil
		},
	}})
	return s, nil
}

// Cache is the subscription cache the service looks up in.
func (s *Service) Cache() *subscription.Cache { return s.cache }

// Started is closed once Run listens and the stages run.
func (s *Service) Started() <-chan struct{} { return s.started }

// AdminAddr is the admin server's address (after Started).
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Run opens the admin listener, runs every stage until ctx ends or one
// fails, then stops pulling, lets the attempts in flight finish (within
// HOOKLINE_SHUTDOWN_TIMEOUT), flushes the attempt records and stops the
// admin server. It returns the first stage's error, nil on a clean stop.
func (s *Service) Run(ctx context.Context) error {
	if err := s.admin.Listen(); err != nil {
		return err
	}
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminDone := make(chan error, 1)
	go func() { adminDone <- s.admin.Run(adminCtx) }()
	if err := s.self.Add(s.admin.Addr()); err != nil {
		stopAdmin()
		<-adminDone
		return fmt.Errorf("refuse the deliverer's own address as a destination: %w", err)
	}

	if s.states != nil {
		// The states' publisher outlives the stages that write states.
		statesCtx, stopStates := context.WithCancel(context.WithoutCancel(ctx))
		statesDone := make(chan struct{})
		go func() { s.states.Run(statesCtx); close(statesDone) }()
		defer func() { stopStates(); <-statesDone }()
	}

	// The deferral counts outlive the stages that count them.
	countsCtx, stopCounts := context.WithCancel(context.WithoutCancel(ctx))
	countsDone := make(chan struct{})
	go func() {
		s.deferrals.Run(countsCtx, 2*time.Second, func(err error) { s.log.Warn("deferral counts not stored", zap.Error(err)) })
		close(countsDone)
	}()
	defer func() { stopCounts(); <-countsDone }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for name, run := range map[string]func(context.Context) error{
		"subscription syncer": s.syncer.Run,
		"subscription memo":   s.memo.Run,
		"tenant records":      s.tenants.Run,
		"dispatch":            s.dispatch.Run,
		"deliver":             s.deliver.Run,
		"dead-letter replay":  s.replay.Run,
		"consumer lag":        s.lag.Run,
	} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", name, err) })
				cancel()
			}
		})
	}
	s.admin.SetReady(true)
	close(s.started)
	s.log.Info("deliverer running", zap.String("admin_addr", s.admin.Addr()),
		zap.Int("dispatch_workers", s.cfg.DispatchWorkers), zap.Int("deliver_workers", s.cfg.DeliverWorkers))

	<-ctx.Done()
	s.admin.SetReady(false)
	s.log.Info("stopping: no more pulls, finishing attempts in flight", zap.Duration("timeout", s.cfg.ShutdownTimeout))
	stagesDone := make(chan struct{})
	go func() { wg.Wait(); close(stagesDone) }()
	deadline := time.NewTimer(s.cfg.ShutdownTimeout)
	defer deadline.Stop()
	select {
	case <-stagesDone:
	case <-deadline.C:
		// Exactly what is abandoned: the tasks and events taken and not
		// settled. JetStream redelivers each after AckWait; a task whose
		// attempt had already been POSTed is then delivered twice.
		abandoned := pool.Held()
		fields := []zap.Field{zap.Int("unsettled", len(abandoned))}
		for i, h := range abandoned {
			if i == 20 {
				break
			}
			fields = append(fields, zap.String(fmt.Sprintf("unsettled_%d", i), fmt.Sprintf("%s seq %d held %s", h.Subject, h.Seq, time.Since(h.Since).Round(time.Millisecond))))
		}
		s.log.Warn("shutdown timeout: abandoning the messages in hand unsettled; JetStream redelivers them after AckWait, "+
			"and a task whose attempt was already POSTed is delivered again", fields...)
	}
	if c, ok := s.admit.(interface{ Close() }); ok {
		c.Close() // slots and probes given back without waiting
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if s.batches != nil {
		if err := s.batches.Flush(fctx); err != nil {
			s.log.Warn("delivery states not all stored", zap.Error(err))
		}
	}
	if err := s.recorder.Flush(fctx); err != nil {
		s.log.Warn("attempt records not all stored", zap.Error(err))
	}
	fcancel()
	s.sender.Close()
	stopAdmin()
	if err := <-adminDone; err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// Ensure creates or updates the topology, retrying while NATS is not
// reachable yet (the deliverer may start before NATS does).
func Ensure(ctx context.Context, nc *nats.Conn, c stream.Config, log *zap.Logger) error {
	return prepare(ctx, nc, c, stream.Ensure, "ensure", log)
}

// Check waits until the topology exists as c says (stream.Check),
// retrying while it is missing or differs (an admin job may be creating it
// meanwhile) or NATS is not reachable; each retry logs what is missing and
// how to create it.
func Check(ctx context.Context, nc *nats.Conn, c stream.Config, log *zap.Logger) error {
	return prepare(ctx, nc, c, stream.Check, "check", log)
}

func prepare(ctx context.Context, nc *nats.Conn, c stream.Config, do func(context.Context, jetstream.JetStream, stream.Config) error, verb string, log *zap.Logger) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	backoff := 250 * time.Millisecond
	for {
		err := do(ctx, js, c)
		if err == nil {
			return nil
		}
		log.Warn("topology "+verb+" failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s topology: %w", verb, errors.Join(err, ctx.Err()))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// groupCommit is the dispatch stage's task publisher settings (nil: off).
func groupCommit(cfg config.Config) *groupcommit.Config {
	if !cfg.GroupCommit {
		return nil
	}
	return &groupcommit.Config{}
}

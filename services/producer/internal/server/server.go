// Package server runs the producer: it opens the listener first, ensures
// the topology (retrying while NATS is away), binds the subscription
// registry, keeps the Redis cache in sync, and shuts down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/hookline/hookline/services/producer/internal/quota"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tenant"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/api"
	"github.com/hookline/hookline/services/producer/internal/config"
	"github.com/hookline/hookline/services/producer/internal/idempotency"
	"github.com/hookline/hookline/services/producer/internal/ingest"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/hookline/hookline/services/producer/internal/portal"
	"github.com/hookline/hookline/services/producer/internal/publish"
	"github.com/hookline/hookline/services/producer/internal/registry"
	"github.com/hookline/hookline/services/producer/internal/replayjob"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// HTTP server timeouts. Bodies are small (HOOKLINE_MAX_BATCH_BYTES at most)
// and a publish waits HOOKLINE_PUBLISH_TIMEOUT at most.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
)

// Idempotency-Key: a request holds its key for idempotencyLease without
// an answer — longer than the server lets any request run (its write
// timeout), so only a dead replica's claim runs out — and a concurrent
// request with the same key waits up to idempotencyWait for the answer.
const idempotencyWait = 10 * time.Second

func idempotencyLease(cfg config.Config) time.Duration {
	return readTimeout + cfg.PublishTimeout + 25*time.Second
}

// Topology retry while NATS is unreachable at start-up.
const (
	ensureBackoffMin = 250 * time.Millisecond
	ensureBackoffMax = 5 * time.Second
)

// Server is the producer process.
type Server struct {
	cfg      config.Config
	nc       *nats.Conn
	rdb      redis.UniversalClient
	log      *zap.Logger
	registry *registry.Registry
	api      *api.API
	metrics  *metrics.Metrics

	ready atomic.Bool // topology ensured and registry bound
	cache atomic.Pointer[subscription.Cache]
	// replays runs replay jobs once the topology is there.
	replays *replayjob.Manager
	// idem remembers Idempotency-Key requests.
	idem *idempotency.Store
	// pub publishes events (and marks their ids).
	pub *publish.Publisher
	ln  net.Listener
}

// Option changes how the Server is built.
type Option func(*api.Deps)

// WithV1Middleware wraps every /v1/ route (authentication).
func WithV1Middleware(mw func(http.Handler) http.Handler) Option {
	return func(d *api.Deps) { d.V1 = mw }
}

// WithTracing starts a server span per API request and a producer span
// per publish, carried into the messages (nil: off).
func WithTracing(t *tracing.Tracing) Option {
	return func(d *api.Deps) { d.Tracing = t }
}

// New builds the producer on an existing NATS connection and Redis client.
func New(cfg config.Config, nc *nats.Conn, rdb redis.UniversalClient, log *zap.Logger, opts ...Option) (*Server, error) {
	m := metrics.New()
	pub, err := publish.New(nc, publish.Config{Timeout: cfg.PublishTimeout, Metrics: m})
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.GroupCommit:
		pub.WithGroupCommit()
	case cfg.BatchGroupCommit:
		pub.WithBatchGroupCommit()
	}
	s := &Server{cfg: cfg, nc: nc, rdb: rdb, log: log, metrics: m, pub: pub,
		registry: registry.New(cfg.SecretOverlap, log)}
	s.registry.LimitPerTenant(cfg.MaxSubscriptionsPerTenant)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s.replays = replayjob.New(js, log.Named("replay"))
	s.replays.Metrics = &replayjob.Metrics{Entries: m.ReplayEntries, Jobs: m.ReplayJobs}
	s.replays.Select = api.ReplaySelection
	box, err := cfg.Security.Secrets.Box()
	if err != nil {
		return nil, err
	}
	s.idem = idempotency.New(js, idempotency.Config{Box: box, Lease: idempotencyLease(cfg), Wait: idempotencyWait})
	qc := cfg.Quota()
	qc.Degraded, qc.Log = m.QuotaDegraded, log
	d := api.Deps{
		JS: js, Matching: s.matching, Replays: s.replays, Idempotency: s.idem,
		Publisher: pub, Registry: s.registry, Metrics: m, Log: log, Ready: s.Ready,
		MaxEventBytes: cfg.MaxEventBytes, MaxBatchBytes: cfg.MaxBatchBytes, MaxBatch: cfg.MaxBatch,
		MaxInFlight: cfg.MaxInFlightLimit, MaxRate: cfg.MaxRateLimit,
		PolicyEnv: cfg.Policy, PolicyLimits: policyLimits(cfg, js),
		Quota: quota.New(rdb, qc),
	}
	if err := secure(cfg.Security, log, &d, s.registry); err != nil {
		return nil, err
	}
	d.Health = func(ctx context.Context, id string, now time.Time) (endpointhealth.Snapshot, error) {
		return endpointhealth.Read(ctx, rdb, id, now)
	}
	d.Deferrals = func(ctx context.Context, id string, since, now time.Time) (endpointhealth.Deferrals, error) {
		return endpointhealth.ReadDeferrals(ctx, rdb, id, since, now)
	}
	key, source, err := cfg.Portal.SigningKey(cfg.Security.Secrets)
	if err != nil {
		return nil, err
	}
	if source == config.PortalKeyRandom {
		log.Warn("portal sessions are signed with a random key of this process: they work on this producer only and end when it stops; set HOOKLINE_PORTAL_KEY (or HOOKLINE_SECRET_KEY) on every replica")
	}
	p := portal.New(js, portal.Config{Settings: cfg.Portal, Key: key, Log: log.Named("portal")})
	d.PortalSessions, d.Portal = p, p.Handler
	for _, o := range opts {
		o(&d)
	}
	pub.Tracing = d.Tracing
	s.replays.Tracing = d.Tracing
	s.api = api.New(d)
	return s, nil
}

// Ready reports whether the producer can serve: NATS connected, topology
// ensured, registry bound.
func (s *Server) Ready() bool { return s.ready.Load() && s.nc.IsConnected() }

// Handler is the HTTP API (for tests that serve it themselves).
func (s *Server) Handler() http.Handler { return s.api }

// Listen opens the listener (Run does it when it was not done). It returns
// the bound address, which is useful with HOOKLINE_HTTP_ADDR=127.0.0.1:0.
func (s *Server) Listen() (net.Addr, error) {
	if s.ln == nil {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", s.cfg.HTTPAddr, err)
		}
		s.ln = ln
	}
	return s.ln.Addr(), nil
}

// Run serves until ctx is done, then stops accepting, lets in-flight
// requests finish within HOOKLINE_SHUTDOWN_TIMEOUT, and stops the syncer.
// The caller drains NATS afterwards.
func (s *Server) Run(ctx context.Context) error {
	addr, err := s.Listen()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout + s.cfg.PublishTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	// The publisher outlives the HTTP server: requests in flight at the
	// shutdown still get their events committed.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	pubDone := make(chan struct{})
	go func() { s.pub.Run(pubCtx); close(pubDone) }()
	defer func() { stopPub(); <-pubDone }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(s.ln) }()
	s.log.Info("producer listening", zap.String("addr", addr.String()))

	bgCtx, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.prepareAndSync(bgCtx) })

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	s.ready.Store(false)
	s.log.Info("producer shutting down", zap.Duration("timeout", s.cfg.ShutdownTimeout))
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("http shutdown: %w", err))
	}
	stopBg()
	wg.Wait()
	return runErr
}

// prepareAndSync checks or ensures the topology (retrying until it works or
// ctx is done), binds the registry, marks the producer ready and runs the Syncer.
func (s *Server) prepareAndSync(ctx context.Context) {
	js, err := jetstream.New(s.nc)
	if err != nil {
		s.log.Error("jetstream", zap.Error(err))
		return
	}
	var store *subscription.Store
	for backoff := ensureBackoffMin; ; backoff = min(backoff*2, ensureBackoffMax) {
		store, err = s.ensure(ctx, js)
		if err == nil {
			break
		}
		s.log.Warn("topology not ready yet; the producer stays unready and retries", zap.String("topology", s.cfg.Topology.Topology), zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	// Validated at start-up: an error here cannot happen.
	box, _ := s.cfg.Security.Secrets.Box()
	cache := subscription.NewCache(s.rdb, store, subscription.WithLogger(s.log), subscription.WithRecordAuth(box))
	tenants, err := tenant.NewStore(ctx, js)
	if err != nil {
		// Checked with the topology: only a NATS failure gets here; uids
		// and tenant records then answer 503.
		s.log.Error("tenant records unavailable", zap.Error(err))
		tenants = nil
	}
	s.registry.Attach(store, cache, tenants)
	s.cache.Store(cache)
	var jobs sync.WaitGroup
	if err := s.replays.Bind(ctx); err != nil {
		// Checked with the topology: only a NATS failure gets here.
		s.log.Error("replay jobs unavailable", zap.Error(err))
	} else {
		jobs.Go(func() { s.replays.Run(ctx) })
	}
	if err := s.pub.BindIDs(ctx); err != nil {
		// Checked with the topology: only a NATS failure gets here; ids
		// then deduplicate for the duplicate window only.
		s.log.Error("event id marks unavailable", zap.Error(err))
	}
	if s.cfg.NATSIngest {
		in := ingest.New(s.nc, s.pub, s.log.Named("ingest"), s.cfg.PublishTimeout)
		in.Answers = s.metrics.IngestAnswers
		jobs.Go(func() {
			if err := in.Run(ctx); err != nil {
				s.log.Error("NATS ingest not served", zap.Error(err))
			}
		})
	}
	if err := s.idem.Bind(ctx); err != nil {
		// Checked with the topology: only a NATS failure gets here.
		s.log.Error("idempotency keys unavailable", zap.Error(err))
	}
	s.ready.Store(true)
	s.log.Info("producer ready")
	// Run returns nil on ctx cancel and never on a transient failure.
	_ = subscription.NewSyncer(store, cache, s.log.Named("syncer")).Run(ctx)
	jobs.Wait()
}

// ensure checks the streams and the KV bucket (not the consumers: see
// stream.EnsureStreams), or creates or updates them with
// HOOKLINE_TOPOLOGY=ensure, and binds the store.
func (s *Server) ensure(ctx context.Context, js jetstream.JetStream) (*subscription.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	prepare := stream.CheckStreams
	if s.cfg.Topology.Ensures() {
		prepare = stream.EnsureStreams
	}
	if err := prepare(ctx, js, s.cfg.Stream()); err != nil {
		return nil, err
	}
	return subscription.NewStore(ctx, js)
}

// matching lists the subscriptions an event of tenant and type matches now
// (GET /v1/events/{id}).
func (s *Server) matching(ctx context.Context, tenant, eventType string) ([]*hooklinev1.Subscription, error) {
	c := s.cache.Load()
	if c == nil {
		return nil, errors.New("the subscription registry is not bound yet")
	}
	return c.ForEvent(ctx, tenant, eventType)
}

// ackWaitTTL is how long the deliver consumer's AckWait, read for
// validating attempt timeouts, is reused.
const ackWaitTTL = time.Minute

// policyLimits returns what a delivery policy must respect here: the
// retention of EVENTS and DEADLETTER (this producer's topology settings,
// which the deliverer shares) and the deliver consumer's AckWait (read
// from the consumer, which the deliverer's configuration sets; before the
// deliverer created it, the AckWait it is created with by default).
func policyLimits(cfg config.Config, js jetstream.JetStream) func(context.Context) (policy.Limits, error) {
	var (
		mu   sync.Mutex
		wait time.Duration
		read time.Time
	)
	return func(ctx context.Context) (policy.Limits, error) {
		l := policy.Limits{
			EventsMaxAge: cfg.Topology.EventsMaxAge, DeadLetterMaxAge: cfg.Topology.DeadLetterMaxAge,
			EnvAutoDisableAfter: cfg.Policy.AutoDisableAfter,
		}
		mu.Lock()
		defer mu.Unlock()
		if wait > 0 && time.Since(read) < ackWaitTTL {
			l.AckWait = wait
			return l, nil
		}
		c, err := js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
			l.AckWait = stream.DefaultAckWait
			return l, nil
		case err != nil:
			return l, fmt.Errorf("read the deliver consumer's AckWait: %w", err)
		}
		wait, read = c.CachedInfo().Config.AckWait, time.Now()
		l.AckWait = wait
		return l, nil
	}
}

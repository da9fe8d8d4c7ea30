// Package replayjob runs the delivery API's replay jobs (POST /v1/replays):
// a selection of dead letters replayed once each, server-side, resumable
// and cancellable.
//
// A job's state lives in the KV bucket hookline_replay_jobs (one key per
// job), so every producer replica answers for it and any replica resumes
// it: the replica running a job holds a lease in the record (runner,
// lease_until) and renews it with every checkpoint, a compare-and-set on
// the record's revision; a replica that finds a running job whose lease
// ran out claims it the same way.
//
// Each entry goes through the path hookctl dlq replay takes
// (deadletter.Replayer: a deliverer re-publishes what DEADLETTER holds,
// dedup id <event>:<subscription>:replay:<seq>; then the entry is deleted).
// Exactly once per job: the job pins the selection to the DEADLETTER
// sequences stored when it was created (max_seq: a replay that fails again
// is dead-lettered above it and not replayed again by the same job), writes
// the entry it is about to replay (in_flight) before asking, and moves
// its checkpoint (next_seq) past it after the entry is deleted. A runner
// that dies in between leaves in_flight set: whoever resumes finds the
// entry deleted (counted done) or asks again, which the task's dedup id
// turns into the same task (within the DELIVERIES duplicate window, 20
// minutes by default; a lease is 15 s).
package replayjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
)

// States.
const (
	Running   = "running"
	Done      = "done"
	Cancelled = "cancelled"
	Failed    = "failed"
)

// Sources.
const (
	SourceDeadLetters = "dead_letters"
	// SourceEvents back-fills one subscription from EVENTS.
	SourceEvents = "events"
)

// Modes of an events job.
const (
	// ModeMissing skips events the subscription already got (delivery
	// state delivered).
	ModeMissing = "missing"
	// ModeAll sends every selected event.
	ModeAll = "all"
)

// Filter is the selection of a dead-letter job, as the listing's query
// parameters (the API parses it with the same code).
type Filter struct {
	SubscriptionID string `json:"subscription_id,omitempty"`
	Tenant         string `json:"tenant,omitempty"`
	Type           string `json:"type,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Status         string `json:"status,omitempty"`
	Since          string `json:"since,omitempty"`
	Until          string `json:"until,omitempty"`
	// EventID limits an events job to one event (resend it).
	EventID string `json:"event_id,omitempty"`
}

// Values is f as query parameters.
func (f Filter) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"subscription_id": f.SubscriptionID, "tenant": f.Tenant, "type": f.Type,
		"reason": f.Reason, "status": f.Status, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// Job is the stored record of a job.
type Job struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	// Owner is the tenant the job touches ("" for a dead-letter job over
	// every tenant): only tokens of that tenant (or unbound ones) see it.
	Owner  string  `json:"owner,omitempty"`
	Filter Filter  `json:"filter"`
	Rate   float64 `json:"rate,omitempty"`
	// Mode of an events job.
	Mode  string `json:"mode,omitempty"`
	State string `json:"state"`
	// MaxSeq pins the selection to what DEADLETTER held at creation.
	MaxSeq uint64 `json:"max_seq"`
	// NextSeq: every entry below it was handled.
	NextSeq uint64 `json:"next_seq"`
	// InFlight is the entry being replayed (0: none).
	InFlight uint64 `json:"in_flight,omitempty"`
	Total    int    `json:"total"`
	Done     int    `json:"done"`
	Failed   int    `json:"failed"`
	Gone     int    `json:"gone"`
	// Skipped: events the subscription already got (mode missing).
	Skipped   int       `json:"skipped,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// StartedAt is when the current runner took it (for the rate).
	StartedAt  time.Time  `json:"started_at"`
	DoneAtRun  int        `json:"done_at_run"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Runner     string     `json:"runner,omitempty"`
	LeaseUntil time.Time  `json:"lease_until"`
}

// Remaining is how many selected entries are still to be handled.
func (j Job) Remaining() int {
	if j.State != Running {
		return 0
	}
	return max(j.Total-j.Done-j.Failed-j.Gone-j.Skipped, 0)
}

// ErrNotFound: no such job (or expired).
var ErrNotFound = errors.New("no such replay job")

// ErrNotReady: the bucket is not bound yet (topology pending).
var ErrNotReady = errors.New("replay jobs are not available yet (NATS topology pending)")

// ErrFinished: the job cannot be cancelled any more.
var ErrFinished = errors.New("the replay job has already finished")

// Manager creates, reads, cancels and runs jobs.
type Manager struct {
	js  jetstream.JetStream
	log *zap.Logger
	// self names this replica in leases.
	self  string
	lease time.Duration
	// Select parses a Filter into a selection (the API's code).
	Select func(Filter) (deadletter.Selection, error)
	// Tracing (nil: off) makes each run of a job a span, the root of its
	// own trace.
	Tracing *tracing.Tracing
	// Metrics (nil: none) counts entries and finished jobs.
	Metrics *Metrics

	// crashAfter, when set (tests), makes the runner stop dead after the
	// entry at seq was replayed and deleted, before its checkpoint.
	crashAfter func(seq uint64) bool

	mu      sync.Mutex
	kv      jetstream.KeyValue
	running map[string]bool
	wake    chan struct{}
	wg      sync.WaitGroup
}

// New returns a manager; Run binds the bucket and runs jobs.
func New(js jetstream.JetStream, log *zap.Logger) *Manager {
	return &Manager{js: js, log: log, self: ulid.Make().String(), lease: 15 * time.Second,
		running: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// SetLease changes the lease (tests).
func (m *Manager) SetLease(d time.Duration) { m.lease = d }

func (m *Manager) bucket() (jetstream.KeyValue, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kv == nil {
		return nil, ErrNotReady
	}
	return m.kv, nil
}

// NewJobID returns a fresh job id: rpl_<ULID>.
func NewJobID() string { return "rpl_" + ulid.Make().String() }

// Create stores a new running job id ("" for a fresh one) for f and wakes
// the runner. It counts the selection first (Total). When a job id exists
// already — the same request run again (an Idempotency-Key request
// reserves the id before it runs) — it returns that job.
func (m *Manager) Create(ctx context.Context, id, owner string, f Filter, rate float64) (Job, error) {
	kv, err := m.bucket()
	if err != nil {
		return Job{}, err
	}
	sel, err := m.Select(f)
	if err != nil {
		return Job{}, err
	}
	st, err := deadletter.Open(ctx, m.js)
	if err != nil {
		return Job{}, err
	}
	last, err := st.LastSeq(ctx)
	if err != nil {
		return Job{}, err
	}
	sel.MaxSeq = last
	now := time.Now().UTC()
	if id == "" {
		id = NewJobID()
	}
	j := Job{ID: id, Source: SourceDeadLetters, Owner: owner, Filter: f, Rate: rate,
		State: Running, MaxSeq: last, CreatedAt: now, UpdatedAt: now}
	if sel.MaxSeq > 0 {
		n, _, err := st.Count(ctx, sel, 0)
		if err != nil {
			return Job{}, err
		}
		j.Total = n
	}
	if j.Total == 0 {
		j.State, j.FinishedAt = Done, &now
	}
	if existing, ok, err := m.store(ctx, kv, j); ok || err != nil {
		return existing, err
	}
	m.log.Info("replay job created", zap.String("job_id", j.ID), zap.Int("total", j.Total))
	m.kick()
	return j, nil
}

// store creates j's record; when its id exists it returns that job and
// true.
func (m *Manager) store(ctx context.Context, kv jetstream.KeyValue, j Job) (Job, bool, error) {
	b, _ := json.Marshal(j)
	_, err := kv.Create(ctx, j.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		existing, _, err := m.Get(ctx, j.ID)
		return existing, true, err
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("store replay job: %w", err)
	}
	return j, false, nil
}

// EventsFilter is the selection of an events job: the subscription's
// tenant and event type filters (Filter.Tenant, Filter.Type, resolved by
// the caller from the registry) and the time EVENTS stored them.
func EventsFilter(f Filter) (eventlog.Filter, error) {
	ef := eventlog.Filter{Tenant: f.Tenant}
	for _, t := range strings.Split(f.Type, ",") {
		if t = strings.TrimSpace(t); t != "" {
			ef.Types = append(ef.Types, t)
		}
	}
	var err error
	if f.Since != "" {
		if ef.Since, err = time.Parse(time.RFC3339Nano, f.Since); err != nil {
			return ef, fmt.Errorf("since: %w", err)
		}
	}
	if f.Until != "" {
		if ef.Until, err = time.Parse(time.RFC3339Nano, f.Until); err != nil {
			return ef, fmt.Errorf("until: %w", err)
		}
	}
	if ef.Tenant == "" || len(ef.Types) == 0 || f.SubscriptionID == "" {
		return ef, errors.New("an events job needs the subscription, its tenant and its event types")
	}
	return ef, nil
}

// selects reports whether an events job of f sends ev (f.EventID: that
// event only; the window of EventsFilter selects the rest).
func (f Filter) selects(ev eventlog.Event) bool { return f.EventID == "" || ev.ID == f.EventID }

// CreateEvents stores a new running back-fill job id ("" for a fresh one)
// of f's subscription in mode, pinned to the events stored now, and wakes
// the runner; an existing id is returned as Create does.
func (m *Manager) CreateEvents(ctx context.Context, id, owner string, f Filter, mode string, rate float64) (Job, error) {
	kv, err := m.bucket()
	if err != nil {
		return Job{}, err
	}
	ef, err := EventsFilter(f)
	if err != nil {
		return Job{}, err
	}
	last, err := eventlog.LastSeq(ctx, m.js)
	if err != nil {
		return Job{}, err
	}
	now := time.Now().UTC()
	if id == "" {
		id = NewJobID()
	}
	j := Job{ID: id, Source: SourceEvents, Mode: mode, Owner: owner, Filter: f, Rate: rate,
		State: Running, MaxSeq: last, CreatedAt: now, UpdatedAt: now}
	if last > 0 {
		if err := eventlog.Each(ctx, m.js, ef, 0, last, func(ev eventlog.Event) error {
			if f.selects(ev) {
				j.Total++
			}
			return nil
		}); err != nil {
			return Job{}, err
		}
	}
	if j.Total == 0 {
		j.State, j.FinishedAt = Done, &now
	}
	if existing, ok, err := m.store(ctx, kv, j); ok || err != nil {
		return existing, err
	}
	m.log.Info("back-fill job created", zap.String("job_id", j.ID), zap.String("subscription_id", f.SubscriptionID), zap.Int("total", j.Total))
	m.kick()
	return j, nil
}

// DryRunEvents counts what a back-fill job would send now (mode missing:
// without the events already delivered) and returns the first n.
func (m *Manager) DryRunEvents(ctx context.Context, f Filter, mode string, n int) (int, []eventlog.Event, error) {
	ef, err := EventsFilter(f)
	if err != nil {
		return 0, nil, err
	}
	kv, err := m.js.KeyValue(ctx, stream.DeliveriesBucket)
	if err != nil {
		return 0, nil, err
	}
	states := deliverystate.NewLookup(kv) // a window's batches read once
	count := 0
	var sample []eventlog.Event
	err = eventlog.Each(ctx, m.js, ef, 0, 0, func(ev eventlog.Event) error {
		if !f.selects(ev) {
			return nil
		}
		if mode == ModeMissing {
			st, ok, err := states.Get(ctx, ev.Tenant, ev.ID, ev.ReceivedAt, f.SubscriptionID)
			if err != nil {
				return err
			}
			if ok && st.State == deliverystate.Delivered {
				return nil
			}
		}
		count++
		if len(sample) < n {
			sample = append(sample, ev)
		}
		return nil
	})
	return count, sample, err
}

// DryRun counts the selection and returns the first n entries.
func (m *Manager) DryRun(ctx context.Context, f Filter, n int) (int, []deadletter.Entry, error) {
	sel, err := m.Select(f)
	if err != nil {
		return 0, nil, err
	}
	st, err := deadletter.Open(ctx, m.js)
	if err != nil {
		return 0, nil, err
	}
	return st.Count(ctx, sel, n)
}

// Get reads a job.
func (m *Manager) Get(ctx context.Context, id string) (Job, uint64, error) {
	kv, err := m.bucket()
	if err != nil {
		return Job{}, 0, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Job{}, 0, ErrNotFound
	}
	if err != nil {
		return Job{}, 0, fmt.Errorf("read replay job: %w", err)
	}
	var j Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return Job{}, 0, fmt.Errorf("replay job %s: unreadable record: %w", id, err)
	}
	return j, e.Revision(), nil
}

// update applies fn to the job at revision rev and stores it (CAS).
func (m *Manager) update(ctx context.Context, j Job, rev uint64) (uint64, error) {
	kv, err := m.bucket()
	if err != nil {
		return 0, err
	}
	j.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(j)
	return kv.Update(ctx, j.ID, b, rev)
}

// Cancel stops a running job: its runner stops before the next entry.
func (m *Manager) Cancel(ctx context.Context, id string) (Job, error) {
	for range 20 {
		j, rev, err := m.Get(ctx, id)
		if err != nil {
			return Job{}, err
		}
		if j.State != Running {
			return j, ErrFinished
		}
		now := time.Now().UTC()
		j.State, j.FinishedAt = Cancelled, &now
		if _, err := m.update(ctx, j, rev); err == nil {
			m.log.Info("replay job cancelled", zap.String("job_id", id))
			if m.Metrics != nil {
				m.Metrics.Jobs.WithLabelValues(Cancelled).Inc()
			}
			return j, nil
		}
	}
	return Job{}, errors.New("replay job changed too often to cancel; retry")
}

func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Bind uses the bucket (once the topology is there).
func (m *Manager) Bind(ctx context.Context) error {
	kv, err := m.js.KeyValue(ctx, stream.ReplayJobsBucket)
	if err != nil {
		return fmt.Errorf("bind kv bucket %s: %w", stream.ReplayJobsBucket, err)
	}
	m.mu.Lock()
	m.kv = kv
	m.mu.Unlock()
	return nil
}

// Run claims and runs jobs until ctx ends: at start, when a job is
// created here, and every lease/3 for jobs whose runner stopped renewing.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.lease / 3)
	defer t.Stop()
	for {
		m.claimAll(ctx)
		select {
		case <-ctx.Done():
			m.wg.Wait()
			return
		case <-m.wake:
		case <-t.C:
		}
	}
}

func (m *Manager) claimAll(ctx context.Context) {
	kv, err := m.bucket()
	if err != nil {
		return
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			m.log.Warn("replay jobs: list", zap.Error(err))
		}
		return
	}
	for id := range lister.Keys() {
		m.mu.Lock()
		mine := m.running[id]
		m.mu.Unlock()
		if mine {
			continue
		}
		j, rev, err := m.Get(ctx, id)
		if err != nil || j.State != Running || (j.Runner != "" && time.Now().Before(j.LeaseUntil)) {
			continue
		}
		resumed := j.Runner != ""
		j.Runner, j.LeaseUntil = m.self, time.Now().Add(m.lease)
		j.StartedAt, j.DoneAtRun = time.Now().UTC(), j.Done+j.Failed+j.Gone+j.Skipped
		rev, err = m.update(ctx, j, rev)
		if err != nil {
			continue // another replica claimed it first
		}
		m.log.Info("replay job claimed", zap.String("job_id", id), zap.Bool("resumed", resumed))
		m.mu.Lock()
		m.running[id] = true
		m.mu.Unlock()
		m.wg.Go(func() {
			defer func() {
				m.mu.Lock()
				delete(m.running, id)
				m.mu.Unlock()
			}()
			m.run(ctx, j, rev)
		})
	}
}

// errStop ends a run: the job was cancelled or claimed elsewhere.
var errStop = errors.New("stop")

// errCrash ends a run as if the process had died (tests).
var errCrash = errors.New("crash")

// run replays the job's remaining entries with the lease held.
func (m *Manager) run(ctx context.Context, j Job, rev uint64) {
	log := m.log.With(zap.String("job_id", j.ID))
	ctx, span := m.Tracing.Start(ctx, "replay job", trace.WithNewRoot(), trace.WithAttributes(
		attribute.String("hookline.replay_job.id", j.ID), attribute.String("hookline.replay_job.source", j.Source),
		tracing.AttrTenant.String(j.Filter.Tenant), tracing.AttrSubscriptionID.String(j.Filter.SubscriptionID)))
	defer func() {
		// What this run did, and where the job stands.
		span.SetAttributes(attribute.String("hookline.replay_job.state", j.State),
			attribute.Int("hookline.replay_job.done", j.Done), attribute.Int("hookline.replay_job.failed", j.Failed),
			attribute.Int("hookline.replay_job.gone", j.Gone))
		if j.State == Failed {
			span.SetStatus(codes.Error, "replay job failed")
		}
		span.End()
	}()
	// save stores j, renewing the lease; a failed CAS means the job was
	// cancelled or taken over: stop.
	save := func() error {
		j.LeaseUntil = time.Now().Add(m.lease)
		r, err := m.update(context.WithoutCancel(ctx), j, rev)
		if err != nil {
			cur, _, gerr := m.Get(context.WithoutCancel(ctx), j.ID)
			if gerr == nil && cur.State == Cancelled {
				log.Info("replay job stops: cancelled", zap.Int("done", cur.Done))
			} else {
				log.Warn("replay job stops: its record changed under it", zap.Error(err))
			}
			return errStop
		}
		rev = r
		return nil
	}
	if j.Source == SourceEvents {
		m.runEvents(ctx, log, &j, save)
		return
	}
	sel, err := m.Select(j.Filter)
	if err != nil {
		m.finish(ctx, &j, save, Failed, err.Error())
		return
	}
	sel.MaxSeq = j.MaxSeq
	st, err := deadletter.Open(ctx, m.js)
	if err != nil {
		log.Warn("replay job waits: dead letters unreadable", zap.Error(err))
		return // the lease runs out; a later claim retries
	}
	rp := &deadletter.Replayer{JS: m.js, Store: st}
	var interval time.Duration
	if j.Rate > 0 {
		interval = time.Duration(float64(time.Second) / j.Rate)
	}
	// An entry left in flight by a runner that stopped: deleted means it
	// was replayed; still there, it is asked again below (same task).
	if j.InFlight > 0 {
		if _, err := st.Get(ctx, j.InFlight); errors.Is(err, deadletter.ErrNotFound) {
			m.tally(&j.Done, EntryReplayed)
			j.NextSeq, j.InFlight = j.InFlight+1, 0
			if save() != nil {
				return
			}
		}
	}
	var next time.Time
	for {
		err = st.Each(ctx, sel, max(j.NextSeq, 1), func(e deadletter.Entry) error {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
			next = time.Now().Add(interval)
			seq := e.Record.GetSeq()
			j.InFlight = seq
			if err := save(); err != nil {
				return err
			}
			ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			res, err := rp.Run(ectx, []deadletter.Entry{e})
			cancel()
			if m.crashAfter != nil && m.crashAfter(seq) {
				return errCrash
			}
			if err := m.count(&j, err, len(res) == 1 && res[0].Outcome == deadletter.Gone, save); err != nil {
				return err
			}
			j.NextSeq, j.InFlight = seq+1, 0
			return save()
		})
		switch {
		case err == nil:
			m.finish(ctx, &j, save, Done, "")
			return
		case errors.Is(err, errStop), errors.Is(err, errCrash):
			return
		case ctx.Err() != nil:
			// Stopping: let another replica take it over at once.
			j.Runner, j.LeaseUntil = "", time.Time{}
			if _, err := m.update(context.WithoutCancel(ctx), j, rev); err == nil {
				log.Info("replay job released", zap.Int("done", j.Done))
			}
			return
		}
		log.Warn("replay job waits and retries", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.lease / 3):
		}
		if save() != nil { // renew, and notice a cancel
			return
		}
	}
}

// Entry outcomes (hookline_replay_entries_total's result label).
const (
	EntryReplayed = "replayed" // handed to a deliverer (or found already replayed on resume)
	EntryFailed   = "failed"   // refused (kept in DEADLETTER) or not sendable
	EntryGone     = "gone"     // no longer there when its turn came
)

// Metrics counts what replay jobs do (nil: not counted): entries by
// result and jobs by the state they ended in (done, failed, cancelled).
type Metrics struct {
	Entries *prometheus.CounterVec
	Jobs    *prometheus.CounterVec
}

// tally adds one to a job's count and to the entries counter.
// count counts the outcome of one entry's replay in j: refused by the
// deliverer (e.g. headers that name another tenant: the entry stays where
// it is, counted failed), gone, or replayed. Any other error (no
// deliverer, a timeout, NATS away) is saved as j's last error and
// returned: the job waits, then goes on from this entry (asking again is
// deduplicated).
func (m *Manager) count(j *Job, err error, gone bool, save func() error) error {
	var refused *replay.RefusedError
	switch {
	case errors.As(err, &refused):
		m.tally(&j.Failed, EntryFailed)
		j.LastError = err.Error()
	case err != nil:
		j.LastError = err.Error()
		_ = save()
		return err
	case gone:
		m.tally(&j.Gone, EntryGone)
	default:
		m.tally(&j.Done, EntryReplayed)
	}
	return nil
}

func (m *Manager) tally(n *int, result string) {
	*n++
	if m.Metrics != nil {
		m.Metrics.Entries.WithLabelValues(result).Inc()
	}
}

func (m *Manager) finish(ctx context.Context, j *Job, save func() error, state, lastErr string) {
	now := time.Now().UTC()
	j.State, j.FinishedAt, j.Runner = state, &now, ""
	if lastErr != "" {
		j.LastError = lastErr
	}
	if save() == nil {
		if m.Metrics != nil {
			m.Metrics.Jobs.WithLabelValues(state).Inc()
		}
		m.log.Info("replay job finished", zap.String("job_id", j.ID), zap.String("state", state),
			zap.Int("done", j.Done), zap.Int("failed", j.Failed), zap.Int("gone", j.Gone))
	}
}

// Progress is the measured rate (entries per second) of the current
// runner and the time left at that rate.
func (j Job) Progress() (rate float64, eta time.Duration) {
	if j.State != Running || j.StartedAt.IsZero() {
		return 0, 0
	}
	el := j.UpdatedAt.Sub(j.StartedAt).Seconds()
	n := j.Done + j.Failed + j.Gone + j.Skipped - j.DoneAtRun
	if el <= 0 || n <= 0 {
		return 0, 0
	}
	rate = float64(n) / el
	return rate, time.Duration(float64(j.Remaining()) / rate * float64(time.Second))
}

// runEvents back-fills the job's subscription: each selected event, oldest
// first, is asked of a deliverer (replay.AskEvent; the task's dedup id
// names the job, so a resumed job asking again stores one task), skipping
// in mode missing those the subscription already got.
func (m *Manager) runEvents(ctx context.Context, log *zap.Logger, j *Job, save func() error) {
	ef, err := EventsFilter(j.Filter)
	if err != nil {
		m.finish(ctx, j, save, Failed, err.Error())
		return
	}
	kv, err := m.js.KeyValue(ctx, stream.DeliveriesBucket)
	if err != nil {
		log.Warn("back-fill job waits: delivery states unreadable", zap.Error(err))
		return
	}
	states := deliverystate.NewLookup(kv) // a window's batches read once
	var interval time.Duration
	if j.Rate > 0 {
		interval = time.Duration(float64(time.Second) / j.Rate)
	}
	var next time.Time
	for {
		err = eventlog.Each(ctx, m.js, ef, max(j.NextSeq, 1), j.MaxSeq, func(ev eventlog.Event) error {
			if !j.Filter.selects(ev) {
				j.NextSeq = ev.Seq + 1
				return nil
			}
			if j.Mode == ModeMissing {
				st, ok, err := states.Get(ctx, ev.Tenant, ev.ID, ev.ReceivedAt, j.Filter.SubscriptionID)
				if err != nil {
					return err
				}
				if ok && st.State == deliverystate.Delivered {
					j.Skipped++
					j.NextSeq = ev.Seq + 1
					return save()
				}
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
			next = time.Now().Add(interval)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			res, err := replay.AskEvent(actx, m.js.Conn(), replay.EventRequest{Seq: ev.Seq, SubscriptionID: j.Filter.SubscriptionID, Job: j.ID})
			cancel()
			if err := m.count(j, err, res.Outcome == replay.Gone, save); err != nil {
				return err
			}
			j.NextSeq = ev.Seq + 1
			return save()
		})
		switch {
		case err == nil:
			m.finish(ctx, j, save, Done, "")
			return
		case errors.Is(err, errStop), ctx.Err() != nil:
			return
		}
		log.Warn("back-fill job waits and retries", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.lease / 3):
		}
		if save() != nil {
			return
		}
	}
}

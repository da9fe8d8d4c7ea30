// Package idempotency remembers the API's Idempotency-Key requests in the
// KV bucket hookline_idempotency, so that a client retrying a request
// with the same key gets the first answer again instead of a second
// event, subscription or replay job — from any producer replica, across
// restarts, for the idempotency window (the bucket's TTL).
//
// One record per tenant and key (stream.IdempotencyKey): the request's
// fingerprint (method, path and body), the ids the request reserved before
// it ran, and, once it succeeded, its answer. A request claims its key with
// a KV create (a compare-and-set: of concurrent requests exactly one
// wins), runs, and stores its answer with an update on the claim's
// revision. The others find the claim and wait for the answer. A claim
// carries a lease: when the replica running it dies, a retry after the
// lease takes the claim over and runs the request again with the ids the
// first run reserved (an event id deduplicates in EVENTS; a subscription
// or a job id is created once). A request that failed (any answer but
// 2xx) releases its key: retrying it runs it again.
//
// A record is one KV value, so it must fit the bucket's largest message
// (NATS's max_payload, 1 MB by default). The ids and the answer are stored
// compressed (DEFLATE; a batch answer of 10,000 generated ids shrinks about
// fivefold), the ids only while the request runs. A request whose
// compressed ids take more than half of that room (the answer, which
// repeats them, must fit later) is refused before it runs: ErrTooLarge.
package idempotency

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/stream"
)

// MaxKeyLength bounds an Idempotency-Key.
const MaxKeyLength = 255

// Errors of Begin.
var (
	// ErrMismatch: the key was used for another request (another body,
	// another endpoint) within the window.
	ErrMismatch = errors.New("the Idempotency-Key was used for a different request")
	// ErrInProgress: the first request with the key is still running.
	ErrInProgress = errors.New("a request with this Idempotency-Key is still in progress")
	// ErrNotReady: the bucket is not bound yet (topology not checked).
	ErrNotReady = errors.New("idempotency keys are not available yet")
	// ErrTooLarge: the request's record would not fit a KV value.
	ErrTooLarge = errors.New("the request is too large for an Idempotency-Key")
)

// Request is one call with an Idempotency-Key.
type Request struct {
	// Scope is the tenant the request acts on (stream.MultiTenantScope
	// for several).
	Scope string
	Key   string
	// Method, Path and Body make the fingerprint: the same key with
	// another of them is ErrMismatch.
	Method, Path string
	Body         []byte
	// IDs are the ids the request would create (events, a subscription, a
	// job), reserved in the claim before it runs.
	IDs []string
}

// Response is a stored answer.
type Response struct {
	Status   int    `json:"status"`
	Location string `json:"location,omitempty"`
	Body     []byte `json:"-"`
}

const (
	statePending = "pending"
	stateDone    = "done"
)

type record struct {
	Fingerprint string `json:"fingerprint"`
	State       string `json:"state"`
	// IDs (records written before compression) or IDsZ: the ids
	// reserved, newline-separated, DEFLATE, base64; pending records only.
	IDs        []string  `json:"ids,omitempty"`
	IDsZ       string    `json:"ids_z,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	Status     int       `json:"status,omitempty"`
	Location   string    `json:"location,omitempty"`
	// Body (records written before compression) or BodyZ (DEFLATE,
	// base64) is the answer, sealed with the secret key when one is
	// configured (a subscription's answer holds its signing secret).
	Body  string `json:"body,omitempty"`
	BodyZ string `json:"body_z,omitempty"`
}

// ids are the reserved ids of a pending record.
func (r record) ids() ([]string, error) {
	if r.IDsZ == "" {
		return r.IDs, nil
	}
	b, err := inflate(r.IDsZ)
	if err != nil {
		return nil, fmt.Errorf("reserved ids: %w", err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\n"), nil
}

// deflate is b compressed, in base64.
func deflate(b []byte) string {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression) // a valid level: no error
	_, _ = w.Write(b)                                       // a bytes.Buffer does not fail
	_ = w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func inflate(s string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(flate.NewReader(bytes.NewReader(raw)))
}

// Claim is a key this caller holds: run the request, then Complete or
// Release.
type Claim struct {
	key string
	rev uint64
	rec record
	ids []string
	// TakenOver: a previous claim's lease ran out (its replica died) and
	// this one runs the request again with the ids it reserved.
	TakenOver bool
}

// IDs are the ids to create: the request's own, or those the first run
// reserved.
func (c *Claim) IDs() []string { return c.ids }

// Store keeps the records.
type Store struct {
	js    jetstream.JetStream
	box   *secretbox.Box
	lease time.Duration
	wait  time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue
	// maxValue is the largest record the bucket takes.
	maxValue int
}

// Config is a Store's.
type Config struct {
	// Box seals stored answers (nil: clear).
	Box *secretbox.Box
	// Lease is how long a claim holds its key without an answer (longer
	// than any request runs).
	Lease time.Duration
	// Wait is how long a request waits for a concurrent one with its key
	// before ErrInProgress.
	Wait time.Duration
}

// New returns a store on js; Bind binds the bucket.
func New(js jetstream.JetStream, c Config) *Store {
	return &Store{js: js, box: c.Box, lease: c.Lease, wait: c.Wait}
}

// Bind binds the bucket (once the topology is checked).
func (s *Store) Bind(ctx context.Context) error {
	kv, err := s.js.KeyValue(ctx, stream.IdempotencyBucket)
	if err != nil {
		return fmt.Errorf("bind kv bucket %s: %w", stream.IdempotencyBucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("kv bucket %s: %w", stream.IdempotencyBucket, err)
	}
	maxValue := int(s.js.Conn().MaxPayload())
	if m := int(st.Config().MaxValueSize); m > 0 {
		maxValue = min(maxValue, m)
	}
	s.mu.Lock()
	s.kv, s.maxValue = kv, maxValue-valueOverhead
	s.mu.Unlock()
	return nil
}

// valueOverhead is room left in a message for the KV subject and headers
// beside the record.
const valueOverhead = 1024

// fits refuses a record of size bytes above limit.
func fits(size, limit int, what string) error {
	if size > limit {
		return fmt.Errorf("%w: its %s takes %d bytes compressed, more than the %d the idempotency store holds", ErrTooLarge, what, size, limit)
	}
	return nil
}

func (s *Store) bucket() (jetstream.KeyValue, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil {
		return nil, 0, ErrNotReady
	}
	return s.kv, s.maxValue, nil
}

// Fingerprint identifies a request: the same key with another fingerprint
// is ErrMismatch.
func Fingerprint(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// kvKey is the record's key: the scope and the key's SHA-256 (a key may
// hold any printable character; a KV key may not).
func kvKey(scope, key string) string {
	sum := sha256.Sum256([]byte(key))
	return stream.IdempotencyKey(scope, hex.EncodeToString(sum[:]))
}

// Begin claims req's key, or finds its answer. It returns a *Claim when
// the caller is to run the request; a *Response when the same request
// already succeeded (replay it); ErrMismatch when the key was used for
// another request; ErrInProgress when the first request is still running
// after the wait; ErrTooLarge when the reserved ids take more than half
// of a KV value compressed (the answer must fit later); another error
// when NATS failed.
func (s *Store) Begin(ctx context.Context, req Request) (*Claim, *Response, error) {
	kv, maxValue, err := s.bucket()
	if err != nil {
		return nil, nil, err
	}
	key := kvKey(req.Scope, req.Key)
	fp := Fingerprint(req.Method, req.Path, req.Body)
	idsZ := ""
	if len(req.IDs) > 0 {
		idsZ = deflate([]byte(strings.Join(req.IDs, "\n")))
	}
	if err := fits(len(idsZ), maxValue/2, fmt.Sprintf("list of %d ids", len(req.IDs))); err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(s.wait)
	var watch jetstream.KeyWatcher
	defer func() {
		if watch != nil {
			_ = watch.Stop()
		}
	}()
	for {
		now := time.Now()
		rec := record{Fingerprint: fp, State: statePending, IDsZ: idsZ, LeaseUntil: now.Add(s.lease), CreatedAt: now.UTC()}
		rev, err := kv.Create(ctx, key, mustJSON(rec))
		if err == nil {
			return &Claim{key: key, rev: rev, rec: rec, ids: req.IDs}, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released or expired meanwhile: claim it again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read idempotency key: %w", err)
		}
		var got record
		if err := json.Unmarshal(e.Value(), &got); err != nil {
			return nil, nil, fmt.Errorf("idempotency record %s: %w", key, err)
		}
		if got.Fingerprint != fp {
			return nil, nil, ErrMismatch
		}
		if got.State == stateDone {
			body, err := s.answer(got)
			if err != nil {
				return nil, nil, err
			}
			return nil, &Response{Status: got.Status, Location: got.Location, Body: body}, nil
		}
		if now.After(got.LeaseUntil) {
			// The claim's replica died: take it over, ids kept.
			taken := got
			taken.LeaseUntil = now.Add(s.lease)
			ids, err := got.ids()
			if err != nil {
				return nil, nil, fmt.Errorf("idempotency record %s: %w", key, err)
			}
			rev, err := kv.Update(ctx, key, mustJSON(taken), e.Revision())
			if err == nil {
				return &Claim{key: key, rev: rev, rec: taken, ids: ids, TakenOver: true}, nil, nil
			}
			continue // someone else changed it first: look again
		}
		wait := min(time.Until(deadline), time.Until(got.LeaseUntil))
		if wait <= 0 {
			return nil, nil, ErrInProgress
		}
		if watch == nil {
			// Updates only: the loop reads the value itself, so a change
			// between the read above and this watch is seen next turn.
			if watch, err = kv.Watch(ctx, key, jetstream.UpdatesOnly()); err != nil {
				return nil, nil, fmt.Errorf("watch idempotency key: %w", err)
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-watch.Updates():
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		}
		t.Stop()
	}
}

// answer opens a done record's answer.
func (s *Store) answer(r record) ([]byte, error) {
	if r.BodyZ == "" {
		body, err := s.box.Open(r.Body)
		if err != nil {
			return nil, fmt.Errorf("open stored answer: %w", err)
		}
		return []byte(body), nil
	}
	z, err := s.box.Open(r.BodyZ)
	if err != nil {
		return nil, fmt.Errorf("open stored answer: %w", err)
	}
	body, err := inflate(z)
	if err != nil {
		return nil, fmt.Errorf("stored answer: %w", err)
	}
	return body, nil
}

// Complete stores the answer of a claimed request that succeeded. It
// returns ErrTooLarge when the answer does not fit a KV value even
// compressed: the claim then stays pending, and a retry after its lease
// runs the request again with the ids it reserved.
func (s *Store) Complete(ctx context.Context, c *Claim, resp Response) error {
	kv, maxValue, err := s.bucket()
	if err != nil {
		return err
	}
	body, err := s.box.Seal(deflate(resp.Body))
	if err != nil {
		return fmt.Errorf("seal answer: %w", err)
	}
	rec := record{Fingerprint: c.rec.Fingerprint, State: stateDone, CreatedAt: c.rec.CreatedAt,
		Status: resp.Status, Location: resp.Location, BodyZ: body}
	value := mustJSON(rec)
	if err := fits(len(value), maxValue, "answer"); err != nil {
		return err
	}
	if _, err := kv.Update(ctx, c.key, value, c.rev); err != nil {
		return fmt.Errorf("store idempotent answer: %w", err)
	}
	return nil
}

// Release gives the key up after a request that failed: a retry runs it
// again. A claim taken over meanwhile is left alone.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	kv, _, err := s.bucket()
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, c.key, jetstream.LastRevision(c.rev)); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("idempotency: " + err.Error())
	}
	return b
}

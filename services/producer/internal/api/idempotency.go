package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/services/producer/internal/idempotency"
)

// Idempotency-Key (POST /v1/events, /v1/events/batch, /v1/subscriptions,
// /v1/replays): a client that retries with the same key gets the first
// answer again, marked by HeaderReplayed, from any replica, for the
// idempotency window; see package idempotency.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// Idempotency is the store of Idempotency-Key requests
// (idempotency.Store).
type Idempotency interface {
	Begin(ctx context.Context, req idempotency.Request) (*idempotency.Claim, *idempotency.Response, error)
	Complete(ctx context.Context, c *idempotency.Claim, resp idempotency.Response) error
	Release(ctx context.Context, c *idempotency.Claim) error
}

var _ Idempotency = (*idempotency.Store)(nil)

// idempotencyKey reads the request's Idempotency-Key ("" for none): 1–255
// printable ASCII characters, once.
func idempotencyKey(r *http.Request) (string, *Problem) {
	vals := r.Header.Values(HeaderIdempotencyKey)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", invalid("header Idempotency-Key is given more than once")
	}
	k := vals[0]
	if k == "" || len(k) > idempotency.MaxKeyLength {
		return "", invalid(fmt.Sprintf("header Idempotency-Key must be 1 to %d characters", idempotency.MaxKeyLength))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", invalid("header Idempotency-Key must be printable ASCII")
		}
	}
	return k, nil
}

// idempotentRequest is a validated request about to run: its key (""
// for none), the tenant it acts on, its body as received and the ids it
// would create.
type idempotentRequest struct {
	key   string
	scope string
	body  []byte
	ids   []string
}

// idempotent runs run — which writes the answer — once per key: without a
// key it just runs it; with one it claims the key first, replays the
// stored answer of a request that already succeeded, refuses the key
// used for another request (422) or still running after a wait (409),
// and stores run's answer when it is a success (any other answer
// releases the key). run gets the ids to create: req.ids, or those a
// first run of the same request reserved before its replica died.
func (a *API) idempotent(w http.ResponseWriter, r *http.Request, req idempotentRequest, run func(w http.ResponseWriter, ids []string)) {
	if req.key == "" {
		run(w, req.ids)
		return
	}
	if a.idem == nil {
		writeProblem(w, unavailable("Idempotency-Key is not available on this producer"))
		return
	}
	body := req.body
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil {
		body = compact.Bytes() // whitespace aside, the same body
	}
	claim, stored, err := a.idem.Begin(r.Context(), idempotency.Request{Scope: req.scope, Key: req.key,
		Method: r.Method, Path: r.URL.Path, Body: body, IDs: req.ids})
	switch {
	case errors.Is(err, idempotency.ErrMismatch):
		writeProblem(w, problem(http.StatusUnprocessableEntity, TypeIdempotencyMismatch,
			"this Idempotency-Key was used for a different request (another body or endpoint) within the idempotency window; use a new key for a new request"))
		return
	case errors.Is(err, idempotency.ErrTooLarge):
		writeProblem(w, problem(http.StatusRequestEntityTooLarge, TypeIdempotencyTooLarge,
			"this request cannot take an Idempotency-Key: "+err.Error()+
				"; nothing was done. Send it in smaller parts, or without the key (events with ids are deduplicated by id)"))
		return
	case errors.Is(err, idempotency.ErrInProgress):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, problem(http.StatusConflict, TypeIdempotencyInProgress,
			"a request with this Idempotency-Key is still in progress; retry it shortly to get its answer"))
		return
	case errors.Is(err, context.Canceled):
		return
	case err != nil:
		a.log.Warn("idempotency key store unavailable", zap.Error(err))
		writeProblem(w, unavailable("the Idempotency-Key store is unavailable (NATS); nothing was done: retry with the same key"))
		return
	case stored != nil:
		if stored.Location != "" {
			w.Header().Set("Location", stored.Location)
		}
		w.Header().Set(HeaderReplayed, "true")
		writeRawJSON(w, stored.Status, bytes.TrimSuffix(stored.Body, []byte("\n")))
		return
	}
	rec := &recorder{header: http.Header{}}
	run(rec, claim.IDs())
	// The answer is stored before the client sees it: a client that sees
	// it and retries finds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if rec.status >= 200 && rec.status < 300 {
		if err := a.idem.Complete(ctx, claim, idempotency.Response{Status: rec.status, Location: rec.header.Get("Location"), Body: rec.body.Bytes()}); err != nil {
			// The request took effect: answer it. A retry finds the claim
			// and, after its lease, runs again with the same ids.
			a.log.Warn("idempotent answer not stored", zap.Error(err))
		}
	} else if err := a.idem.Release(ctx, claim); err != nil {
		a.log.Warn("idempotency key not released; it is retried after its lease", zap.Error(err))
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// recorder holds an answer until it is stored.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

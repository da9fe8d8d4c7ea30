package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Problem types (RFC 9457 "type" members). They are URNs: stable
// identifiers to switch on, not pages to fetch.
const (
	TypeInvalidRequest   = "urn:hookline:problem:invalid-request"    // 400
	TypeNotFound         = "urn:hookline:problem:not-found"          // 404
	TypeMethodNotAllowed = "urn:hookline:problem:method-not-allowed" // 405
	TypeConflict         = "urn:hookline:problem:conflict"           // 409
	// TypeIdempotencyInProgress: the first request with the same
	// Idempotency-Key is still running (409, Retry-After).
	TypeIdempotencyInProgress = "urn:hookline:problem:idempotency-in-progress"
	// TypeIdempotencyMismatch: the Idempotency-Key was used for another
	// request (422).
	TypeIdempotencyMismatch = "urn:hookline:problem:idempotency-key-reused"
	// TypeIdempotencyTooLarge: the request's ids or answer would not fit
	// the idempotency store (413, nothing done).
	TypeIdempotencyTooLarge = "urn:hookline:problem:idempotency-too-large"
	TypeTooLarge            = "urn:hookline:problem:content-too-large" // 413
	// The tenant's events/s quota (429, Retry-After).
	TypeRateLimited      = "urn:hookline:problem:rate-limited"
	TypeUnsupportedMedia = "urn:hookline:problem:unsupported-media" // 415
	TypeValidation       = "urn:hookline:problem:validation"        // 422
	TypeInternal         = "urn:hookline:problem:internal"          // 500
	TypeUnavailable      = "urn:hookline:problem:unavailable"       // 503
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors lists every invalid field of a 422.
	Errors []FieldError `json:"errors,omitempty"`
	// IDs are the event ids of a request that was not (fully) accepted,
	// generated ones included: retry with them and nothing is stored twice.
	IDs []string `json:"ids,omitempty"`
}

// FieldError names one invalid field: "tenant", "event_types[1]",
// "events[3].type".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func problem(status int, typ, detail string) *Problem {
	return &Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

func invalid(detail string) *Problem {
	return problem(http.StatusBadRequest, TypeInvalidRequest, detail)
}

func validation(errs []FieldError) *Problem {
	p := problem(http.StatusUnprocessableEntity, TypeValidation, "")
	p.Errors = errs
	if len(errs) == 1 {
		p.Detail = errs[0].Field + ": " + errs[0].Message
		return p
	}
	names := make([]string, len(errs))
	for i, e := range errs {
		names[i] = e.Field
	}
	p.Detail = fmt.Sprintf("%d invalid fields: %s (see errors)", len(errs), strings.Join(names, ", "))
	return p
}

func unavailable(detail string) *Problem {
	return problem(http.StatusServiceUnavailable, TypeUnavailable, detail)
}

// WriteProblem answers an RFC 9457 problem from outside the API's handlers
// (the server's middleware).
func WriteProblem(w http.ResponseWriter, status int, typ, detail string) {
	writeProblem(w, problem(status, typ, detail))
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

// WriteJSON answers v as JSON (for handlers outside this package: the portal).
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, TypeInternal, "could not encode the response"))
		return
	}
	writeRawJSON(w, status, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

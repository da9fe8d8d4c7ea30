// Package sender performs one HTTP delivery attempt: a signed POST of the
// event body with Standard Webhooks headers, a per-attempt timeout,
// redirects never followed and the response body read only up to a cap.
package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
)

// Error classes of a failed attempt (Result.ErrorClass). They are metric
// label values and attempt-record fields: keep the set small and stable.
const (
	ClassTimeout           = "timeout"
	ClassConnectionRefused = "connection_refused"
	ClassConnectionReset   = "connection_reset"
	ClassDNS               = "dns"
	ClassTLS               = "tls"
	ClassBlocked           = "blocked"
	ClassRedirect          = "redirect"
	ClassHTTPStatus        = "http_status"
	ClassInvalidURL        = "invalid_url"
	ClassCanceled          = "canceled"
	ClassNetwork           = "network"
	// ClassAuthToken: the endpoint's OAuth token could not be had (the
	// token endpoint refused, failed or could not be reached).
	ClassAuthToken = "auth_token"
)

// ErrBlocked is wrapped by the error of an attempt whose destination the
// DialControl refused (it is ssrf.ErrBlocked).
var ErrBlocked = ssrf.ErrBlocked

// DialControl is the net.Dialer Control hook. It runs after DNS resolution
// with the IP address actually being dialled, so a host name that resolves
// (or re-resolves) to a private address is refused too. Any error it returns
// ends the attempt with ErrorClass "blocked" and only its own message.
type DialControl func(network, address string, c syscall.RawConn) error

// Classes lists every error class (metric label values).
var Classes = []string{
	ClassTimeout, ClassConnectionRefused, ClassConnectionReset, ClassDNS, ClassTLS, ClassBlocked,
	ClassRedirect, ClassHTTPStatus, ClassInvalidURL, ClassCanceled, ClassNetwork, ClassAuthToken,
}

// ExcerptBytes is the most of a response body kept in Result.Excerpt.
const ExcerptBytes = 256

// Options configure a Sender.
type Options struct {
	// Timeout bounds one attempt: connect, TLS, request, response headers
	// and reading the body.
	Timeout time.Duration
	// MaxResponseBytes is the most of a response body read; the rest is
	// discarded with the connection.
	MaxResponseBytes int64
	// UserAgent, e.g. "Hookline/1.2.3".
	UserAgent string
	// DialControl vets every address dialled (nil: ssrf.Policy{}.Control,
	// which refuses every special-purpose range).
	DialControl DialControl
	// RootCAs replaces the system roots (tests).
	RootCAs *x509.CertPool
	// HTTPSOnly refuses http:// URLs (a permanent failure), so switching
	// HOOKLINE_HTTPS_ONLY on also covers subscriptions created before.
	HTTPSOnly bool
	// Tracing makes each attempt an HTTP client span and sends its
	// traceparent to the endpoint (nil: off, no header sent).
	Tracing *tracing.Tracing
}

// Request is one attempt's payload.
type Request struct {
	URL string
	// ID is the webhook-id header: the event id.
	ID string
	// Timestamp is the webhook-timestamp the signature was made with.
	Timestamp time.Time
	// Signature is the webhook-signature header value.
	Signature string
	Body      []byte
	// OrderingKey and OrderingSeq, for an ordered task, are sent as
	// Hookline-Ordering-Key and Hookline-Ordering-Sequence: the receiver
	// sees a gap in the numbers of a key when an event was dead-lettered.
	OrderingKey string
	OrderingSeq uint64
	// Informative headers, sent when set: Hookline-Event-Type,
	// Hookline-Occurred-At, Hookline-Attempt (this attempt's number, from
	// 1) and Hookline-Subscription-Id.
	EventType      string
	OccurredAt     string
	Attempt        int
	SubscriptionID string
	// Headers are the subscription's custom headers, opened (never
	// logged). They are set first: no custom header can replace one that
	// Hookline sends.
	Headers map[string]string
	// TaskHeader is the task's NATS header (read only): its traceparent
	// is the attempt span's parent.
	TaskHeader map[string][]string
	// Timeout bounds this attempt (0: Options.Timeout): the
	// subscription's effective attempt timeout. It covers fetching an
	// OAuth token and the one resend after a 401 too.
	Timeout time.Duration
	// Auth is the subscription's endpoint authentication, opened (never
	// logged).
	Auth Auth
}

// Result is what an attempt came to.
type Result struct {
	// Status is the HTTP status, 0 when there was no answer.
	Status   int
	Duration time.Duration
	// ErrorClass is one of the Class constants ("" on success).
	ErrorClass string
	// Err describes the failure. It never holds the URL's query or
	// userinfo.
	Err error
	// RetryAfter is the Retry-After of a 429 or 503 answer (0: none).
	RetryAfter time.Duration
	// Excerpt is the start of the response body, valid UTF-8.
	Excerpt string
}

// OK reports a 2xx answer.
func (r Result) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// Sender sends attempts over one shared, tuned http.Client.
type Sender struct {
	client    *http.Client
	timeout   time.Duration
	maxBody   int64
	userAgent string
	httpsOnly bool
	tracing   *tracing.Tracing
	// tokens caches the OAuth access tokens of subscriptions (oauth.go).
	tokens *tokens
	// transport is the shared one; certs the clients of subscriptions
	// with a client certificate, built from it (mtls.go).
	transport *http.Transport
	certs     *certClients
}

// New builds a Sender and its transport.
func New(o Options) *Sender {
	guard := o.DialControl
	if guard == nil {
		guard = ssrf.Policy{}.Control
	}
	dialer := &net.Dialer{
		Timeout:   o.Timeout,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, c syscall.RawConn) error {
			if err := guard(network, address, c); err != nil {
				return &blockedError{err: err}
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                  nil, // never from the environment: a proxy would bypass the dial guard
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // the body cap counts wire bytes; no decompression bombs
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
	}
	return &Sender{
		client: &http.Client{
			Transport: tr,
			// A 3xx is an answer, and a failure: never follow it (it could
			// lead anywhere, including where the dial guard would not look).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:   o.Timeout,
		maxBody:   o.MaxResponseBytes,
		userAgent: o.UserAgent,
		httpsOnly: o.HTTPSOnly,
		tracing:   o.Tracing,
		tokens:    newTokens(),
		transport: tr,
		certs:     &certClients{m: map[string]*certClient{}},
	}
}

// Close releases idle connections.
func (s *Sender) Close() {
	s.client.CloseIdleConnections()
	s.certs.closeIdle()
}

// Send performs one attempt. It never returns an error: the failure is in
// the Result. ctx cancellation ends the attempt with ClassCanceled.
func (s *Sender) Send(ctx context.Context, r Request) Result {
	ctx, span := s.attemptSpan(ctx, r) // trace.go
	start := time.Now()
	res := s.send(ctx, r)
	res.Duration = time.Since(start)
	endAttemptSpan(span, res)
	return res
}

func (s *Sender) send(ctx context.Context, r Request) Result {
	if err := checkURL(r.URL, s.httpsOnly); err != nil {
		return Result{ErrorClass: ClassInvalidURL, Err: err}
	}
	timeout := s.timeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := s.client
	if r.Auth.Cert != nil {
		var err error
		if client, err = s.certClient(r.Auth.Key, r.Auth.Cert); err != nil {
			return Result{ErrorClass: ClassTLS, Err: err}
		}
	}
	var token string
	if r.Auth.OAuth != nil {
		var err error
		if token, err = s.token(ctx, r.Auth); err != nil {
			return tokenFailure(ctx, err)
		}
	}
	resp, err := s.post(ctx, client, r, token)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && r.Auth.OAuth != nil {
		// The endpoint refused the token (revoked, or expired before its
		// time): one new token and one resend, within this attempt and
		// its timeout. Its answer is the attempt's, whatever it is: never
		// a second refresh.
		s.drain(resp.Body)
		resp.Body.Close()
		s.tokens.invalidate(r.Auth.Key, token)
		if token, err = s.token(ctx, r.Auth); err != nil {
			return tokenFailure(ctx, err)
		}
		resp, err = s.post(ctx, client, r, token)
	}
	if err != nil {
		return Result{ErrorClass: classify(ctx, err), Err: redact(err)}
	}
	defer resp.Body.Close()
	res := Result{Status: resp.StatusCode, Excerpt: s.drain(resp.Body)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return res
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.ErrorClass = ClassRedirect
		res.Err = fmt.Errorf("HTTP %d: redirects are not followed", resp.StatusCode)
	default:
		res.ErrorClass = ClassHTTPStatus
		res.Err = fmt.Errorf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// post sends the request of an attempt with client (the shared one, or
// the one of the subscription's client certificate), with token as its
// bearer token when set.
func (s *Sender) post(ctx context.Context, client *http.Client, r Request, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return nil, errInvalidURL
	}
	h := req.Header
	for name, value := range r.Headers {
		h[http.CanonicalHeaderKey(name)] = []string{value}
	}
	wire.Request{ID: r.ID, Timestamp: r.Timestamp, Signature: r.Signature, UserAgent: s.userAgent,
		EventType: r.EventType, OccurredAt: r.OccurredAt, Attempt: r.Attempt, SubscriptionID: r.SubscriptionID,
		OrderingKey: r.OrderingKey, OrderingSeq: r.OrderingSeq}.SetHeaders(h)
	// A webhook is idempotent (receivers dedupe on webhook-id). Saying so —
	// a nil value is not sent — lets the transport resend it on a fresh
	// connection when a kept-alive one turns out closed by the endpoint
	// (an idle timeout racing our reuse: Node's is 5s) instead of failing
	// the attempt, spending the retry budget and feeding the breaker.
	h["Idempotency-Key"] = nil
	// The attempt span's traceparent (tracing on), so that the receiver
	// can join the trace; never a tracestate or baggage.
	s.tracing.InjectTraceParent(ctx, h)

	if token != "" {
		// After the custom headers: the token replaces an Authorization
		// header of theirs.
		h["Authorization"] = []string{"Bearer " + token}
	}
	return client.Do(req)
}

var errInvalidURL = errors.New("invalid URL")

// tokenFailure is the result of an attempt that got no token: a
// cancelled attempt stays ClassCanceled (shutdown says nothing about the
// endpoint), a timeout is the token endpoint's.
func tokenFailure(ctx context.Context, err error) Result {
	if errors.Is(err, context.Canceled) && ctx.Err() != context.DeadlineExceeded {
		return Result{ErrorClass: ClassCanceled, Err: err}
	}
	var te *tokenError
	if !errors.As(err, &te) {
		err = &tokenError{msg: err.Error()}
	}
	return Result{ErrorClass: ClassAuthToken, Err: err}
}

// drain reads at most maxBody bytes of the body and returns the first
// ExcerptBytes of them as valid UTF-8. Read errors are ignored: the status
// already decided the attempt.
func (s *Sender) drain(body io.Reader) string {
	if s.maxBody <= 0 {
		return ""
	}
	lr := io.LimitReader(body, s.maxBody)
	var buf [ExcerptBytes]byte
	n, _ := io.ReadFull(lr, buf[:])
	_, _ = io.Copy(io.Discard, lr)
	return validPrefix(buf[:n])
}

// validPrefix is b as valid UTF-8 of at most len(b) bytes: invalid bytes,
// including a character cut in half at the end, are dropped.
func validPrefix(b []byte) string { return strings.ToValidUTF8(string(b), "") }

// ParseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date
// (relative to now). It returns 0 for a missing, invalid or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// checkURL accepts an absolute http(s) URL (https only with httpsOnly) with
// a host. Its error names what is wrong, never the URL (which may carry a
// token).
func checkURL(raw string, httpsOnly bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("invalid URL: %w", ue.Err)
		}
		return errors.New("invalid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid URL: scheme %q is not http or https", u.Scheme)
	}
	if httpsOnly && u.Scheme != "https" {
		return errors.New("invalid URL: http is refused (HOOKLINE_HTTPS_ONLY)")
	}
	if u.Hostname() == "" {
		return errors.New("invalid URL: no host")
	}
	return nil
}

// blockedError marks an error of the DialControl.
type blockedError struct{ err error }

func (e *blockedError) Error() string        { return e.err.Error() }
func (e *blockedError) Unwrap() error        { return e.err }
func (e *blockedError) Is(target error) bool { return target == ErrBlocked }

// redact drops the *url.Error wrapper, whose message holds the URL with its
// query; what remains names addresses, never the URL. A blocked
// destination keeps only the guard's words: the address it resolved to is
// the operator's business, not the subscriber's (attempt records and dead
// letters are theirs to read).
func redact(err error) error {
	var be *blockedError
	if errors.As(err, &be) {
		return fmt.Errorf("post: %w", be)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("post: %w", ue.Err)
	}
	return err
}

func classify(ctx context.Context, err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, errInvalidURL):
		return ClassInvalidURL
	case errors.Is(err, ErrBlocked):
		return ClassBlocked
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ClassTimeout
		}
		return ClassDNS
	case errors.Is(err, context.Canceled) && ctx.Err() != context.DeadlineExceeded:
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnectionRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassConnectionReset
	case isTLS(err):
		return ClassTLS
	default:
		return ClassNetwork
	}
}

func isTLS(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		rherr tls.RecordHeaderError
		alert tls.AlertError
		uaerr x509.UnknownAuthorityError
		herr  x509.HostnameError
		cierr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &rherr) || errors.As(err, &alert) ||
		errors.As(err, &uaerr) || errors.As(err, &herr) || errors.As(err, &cierr) ||
		strings.Contains(err.Error(), "tls: ")
}

package sender_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

const (
	clientID     = "hookline client"
	clientSecret = "s3cret:with+odd/chars"
)

// tokenServer is a local OAuth 2.0 token endpoint (client credentials):
// it checks the client and hands out tok-1, tok-2, … living expiresIn
// seconds.
type tokenServer struct {
	url       string
	requests  atomic.Int64
	expiresIn int
	// answer, when set, replaces the token answer (status, body).
	answer func() (int, string)
	// hold, when set, is waited on before answering; first is closed
	// when the first request arrives.
	hold, first chan struct{}
	mu          sync.Mutex
	form        url.Values
	auth        string
}

func newTokenServer(t *testing.T, expiresIn int) *tokenServer {
	t.Helper()
	ts := &tokenServer{expiresIn: expiresIn, first: make(chan struct{})}
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if n == 1 {
			close(ts.first)
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.form, ts.auth = r.PostForm, r.Header.Get("Authorization")
		ts.mu.Unlock()
		if ts.hold != nil {
			<-ts.hold
		}
		if ts.answer != nil {
			status, body := ts.answer()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, ts.expiresIn)
	})
	ts.url = srv.URL + "/oauth/token"
	return ts
}

func (ts *tokenServer) last() (url.Values, string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.form, ts.auth
}

// endpoint records the bearer token of each request and answers with
// respond(token).
type endpoint struct {
	url    string
	mu     sync.Mutex
	tokens []string
}

func newEndpoint(t *testing.T, respond func(token string) int) *endpoint {
	t.Helper()
	ep := &endpoint{}
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		ep.mu.Lock()
		ep.tokens = append(ep.tokens, tok)
		ep.mu.Unlock()
		w.WriteHeader(respond(tok))
	})
	ep.url = srv.URL + "/hook"
	return ep
}

func (ep *endpoint) seen() []string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]string(nil), ep.tokens...)
}

func oauthRequest(ep *endpoint, ts *tokenServer) sender.Request {
	r := request(ep.url)
	r.Auth = sender.Auth{Key: "sub_1", OAuth: &sender.OAuthClient{
		TokenURL: ts.url, ClientID: clientID, ClientSecret: clientSecret, Scope: "webhooks:write", Audience: "https://receiver.example",
	}}
	return r
}

// clock is a settable time for the token cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A token is fetched once and sent until it is about to expire
// (expires_in less the refresh margin), then a new one is fetched.
func TestOAuthTokenReusedUntilExpiry(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 3600)
	ep := newEndpoint(t, func(string) int { return http.StatusOK })
	s := newSender(t, sender.Options{})
	clk := &clock{now: time.Unix(1700000000, 0)}
	sender.SetTokenClock(s, clk.Now)

	for i := range 3 {
		if res := s.Send(context.Background(), oauthRequest(ep, ts)); !res.OK() {
			t.Fatalf("send %d: %+v", i, res)
		}
	}
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for 3 attempts, want 1", n)
	}
	clk.Add(time.Hour - sender.TokenRefreshMargin - time.Second)
	s.Send(context.Background(), oauthRequest(ep, ts))
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests before the refresh margin, want 1", n)
	}
	clk.Add(2 * time.Second)
	if res := s.Send(context.Background(), oauthRequest(ep, ts)); !res.OK() {
		t.Fatalf("send after expiry: %+v", res)
	}
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("%d token requests after expiry, want 2", n)
	}
	want := []string{"tok-1", "tok-1", "tok-1", "tok-1", "tok-2"}
	if got := ep.seen(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("endpoint saw tokens %v, want %v", got, want)
	}
}

// client_secret_basic (the default) sends the id and secret form-encoded
// in HTTP Basic (RFC 6749 section 2.3.1), never in the form;
// client_secret_post sends them in the form. Scope and audience are in
// the form either way.
func TestOAuthClientAuthentication(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, func(string) int { return http.StatusOK })
	s := newSender(t, sender.Options{})

	ts := newTokenServer(t, 60)
	if res := s.Send(context.Background(), oauthRequest(ep, ts)); !res.OK() {
		t.Fatalf("basic: %+v", res)
	}
	form, auth := ts.last()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(clientSecret)))
	if auth != want {
		t.Fatalf("basic: Authorization %q, want %q", auth, want)
	}
	if form.Has("client_secret") || form.Has("client_id") {
		t.Fatalf("basic: the form carries the client: %v", form)
	}
	if form.Get("scope") != "webhooks:write" || form.Get("audience") != "https://receiver.example" || form.Get("grant_type") != "client_credentials" {
		t.Fatalf("basic: form %v", form)
	}

	post := newTokenServer(t, 60)
	r := oauthRequest(ep, post)
	r.Auth.Key = "sub_2"
	r.Auth.OAuth.PostSecret = true
	if res := s.Send(context.Background(), r); !res.OK() {
		t.Fatalf("post: %+v", res)
	}
	form, auth = post.last()
	if auth != "" || form.Get("client_id") != clientID || form.Get("client_secret") != clientSecret {
		t.Fatalf("post: Authorization %q, form %v", auth, form)
	}
}

// A 401 from the endpoint forces exactly one refresh and one resend
// within the same attempt; a second 401 is the attempt's answer, never a
// loop.
func TestOAuth401ForcesOneRefresh(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 3600)
	var refuse atomic.Bool
	ep := newEndpoint(t, func(tok string) int {
		if tok == "tok-1" || refuse.Load() {
			return http.StatusUnauthorized
		}
		return http.StatusOK
	})
	s := newSender(t, sender.Options{})

	res := s.Send(context.Background(), oauthRequest(ep, ts))
	if !res.OK() {
		t.Fatalf("a revoked token was not replaced: %+v", res)
	}
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2 (one refresh)", n)
	}
	if got := ep.seen(); strings.Join(got, ",") != "tok-1,tok-2" {
		t.Fatalf("endpoint saw %v, want tok-1 then tok-2", got)
	}

	refuse.Store(true)
	res = s.Send(context.Background(), oauthRequest(ep, ts))
	if res.Status != http.StatusUnauthorized || res.ErrorClass != sender.ClassHTTPStatus {
		t.Fatalf("endpoint refusing every token: %+v, want its 401", res)
	}
	if n := ts.requests.Load(); n != 3 {
		t.Fatalf("%d token requests, want 3 (exactly one more refresh)", n)
	}
	if got := ep.seen(); strings.Join(got, ",") != "tok-1,tok-2,tok-2,tok-3" {
		t.Fatalf("endpoint saw %v", got)
	}
}

// Attempts that start together with no token share one fetch.
func TestOAuthOneFetchForConcurrentAttempts(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 3600)
	ts.hold = make(chan struct{})
	ep := newEndpoint(t, func(string) int { return http.StatusOK })
	s := newSender(t, sender.Options{})
	go func() {
		// The first token request is in: let it answer. Attempts that
		// arrive later find its token cached; none fetches again.
		<-ts.first
		close(ts.hold)
	}()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if res := s.Send(context.Background(), oauthRequest(ep, ts)); !res.OK() {
				t.Errorf("send: %+v", res)
			}
		})
	}
	wg.Wait()
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for 20 concurrent attempts, want 1", n)
	}
}

// A changed configuration (a new secret) never reuses the token fetched
// with the old one.
func TestOAuthConfigChangeFetchesANewToken(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 3600)
	ep := newEndpoint(t, func(string) int { return http.StatusOK })
	s := newSender(t, sender.Options{})
	s.Send(context.Background(), oauthRequest(ep, ts))
	r := oauthRequest(ep, ts)
	r.Auth.OAuth.ClientSecret = "rotated"
	s.Send(context.Background(), r)
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
	if got := ep.seen(); strings.Join(got, ",") != "tok-1,tok-2" {
		t.Fatalf("endpoint saw %v", got)
	}
}

// A failing token endpoint fails the attempt with class auth_token and an
// error that says what the token endpoint answered (status, OAuth error
// code) without its free text, the secret or the token; the endpoint gets
// no request.
func TestOAuthTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"refused", `{"error":"invalid_client","error_description":"client s3cret:with+odd/chars unknown"}`, 401, "token endpoint: HTTP 401 Unauthorized (invalid_client)"},
		{"server error", `oops`, 500, "token endpoint: HTTP 500 Internal Server Error"},
		{"not JSON", `<html>`, 200, "not a JSON token response"},
		{"no token", `{"token_type":"Bearer"}`, 200, "no access_token"},
		{"other type", `{"access_token":"tok-x","token_type":"mac"}`, 200, "token_type is not Bearer"},
		{"bad expiry", `{"access_token":"tok-x","expires_in":"soon"}`, 200, "expires_in is not a number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t, 60)
			ts.answer = func() (int, string) { return tc.status, tc.body }
			ep := newEndpoint(t, func(string) int { return http.StatusOK })
			s := newSender(t, sender.Options{})
			res := s.Send(context.Background(), oauthRequest(ep, ts))
			if res.ErrorClass != sender.ClassAuthToken || res.Status != 0 || res.Err == nil {
				t.Fatalf("result %+v, want class auth_token", res)
			}
			msg := res.Err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q, want it to say %q", msg, tc.want)
			}
			for _, secret := range []string{clientSecret, "unknown", "tok-x", ts.url} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error %q holds %q", msg, secret)
				}
			}
			if n := len(ep.seen()); n != 0 {
				t.Fatalf("the endpoint got %d requests without a token", n)
			}
		})
	}
}

// The token endpoint is dialled through the same guard as webhooks: one
// on a blocked address is never reached, and the attempt fails with
// class auth_token saying so.
func TestOAuthTokenEndpointBlocked(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 60)
	ep := newEndpoint(t, func(string) int { return http.StatusOK })
	tokenHost := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/oauth/token"), "http://")
	allow := ssrf.Policy{Allow: loopback}.Control
	s := newSender(t, sender.Options{DialControl: func(network, address string, c syscall.RawConn) error {
		if address == tokenHost {
			return ssrf.Policy{}.Control(network, address, c) // loopback is blocked
		}
		return allow(network, address, c)
	}})
	res := s.Send(context.Background(), oauthRequest(ep, ts))
	if res.ErrorClass != sender.ClassAuthToken || !strings.Contains(res.Err.Error(), "loopback") {
		t.Fatalf("result %+v, want auth_token naming the blocked range", res)
	}
	if n := ts.requests.Load(); n != 0 {
		t.Fatalf("the blocked token endpoint got %d requests", n)
	}
	if _, port, _ := net.SplitHostPort(tokenHost); strings.Contains(res.Err.Error(), port) {
		t.Fatalf("error %q names the address", res.Err)
	}
	if n := len(ep.seen()); n != 0 {
		t.Fatalf("the endpoint got %d requests", n)
	}
}

package sender

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Auth is an attempt's endpoint authentication, opened (never logged):
// at most one of OAuth and Cert.
type Auth struct {
	// Key is whose it is (the subscription id): tokens and client
	// certificates' transports are cached per key and per configuration.
	Key   string
	OAuth *OAuthClient
	Cert  *ClientCert
}

// OAuthClient is an OAuth 2.0 client of the client credentials grant
// (RFC 6749 section 4.4).
type OAuthClient struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scope        string
	Audience     string
	// PostSecret sends the id and secret in the form
	// (client_secret_post) instead of HTTP Basic (client_secret_basic).
	PostSecret bool
}

// hash identifies a configuration: a changed one is a new cache entry,
// so a new secret or scope never reuses a token fetched with the old.
func (c *OAuthClient) hash() [32]byte {
	return sha256.Sum256([]byte(strings.Join([]string{c.TokenURL, c.ClientID, c.ClientSecret, c.Scope, c.Audience,
		strconv.FormatBool(c.PostSecret)}, "\x00")))
}

// Token lifetimes.
const (
	// DefaultTokenLifetime is assumed of a token answered without
	// expires_in (RFC 6749 makes it optional).
	DefaultTokenLifetime = 5 * time.Minute
	// TokenRefreshMargin: a token is refreshed this long before it
	// expires (half its lifetime when that is shorter), so that it does
	// not expire in flight.
	TokenRefreshMargin = 30 * time.Second
	// maxTokenResponse bounds the token endpoint's answer read.
	maxTokenResponse = 64 << 10
	// maxTokens bounds the cache: expired entries go first.
	maxTokens = 10000
)

// tokens caches access tokens per subscription (in process): one fetch
// at a time per subscription, the others wait for it.
type tokens struct {
	mu  sync.Mutex
	m   map[string]*tokenEntry
	now func() time.Time
}

type tokenEntry struct {
	hash      [32]byte
	token     string
	refreshAt time.Time
	// call is the fetch in progress (nil: none).
	call *tokenCall
}

type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

func newTokens() *tokens { return &tokens{m: map[string]*tokenEntry{}, now: time.Now} }

// fetchFunc fetches a token and says how long it lives.
type fetchFunc func(ctx context.Context) (token string, lifetime time.Duration, err error)

// get returns the cached token of key, or fetches one (waiting for a fetch
// already under way for the same key and configuration).
func (c *tokens) get(ctx context.Context, key string, hash [32]byte, fetch fetchFunc) (string, error) {
	c.mu.Lock()
	e := c.m[key]
	if e == nil || e.hash != hash {
		e = &tokenEntry{hash: hash}
		c.put(key, e)
	}
	if e.token != "" && c.now().Before(e.refreshAt) {
		tok := e.token
		c.mu.Unlock()
		return tok, nil
	}
	call := e.call
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		e.call = call
		c.mu.Unlock()
		tok, life, err := fetch(ctx)
		c.mu.Lock()
		e.call = nil
		if err == nil {
			e.token, e.refreshAt = tok, c.now().Add(life-min(TokenRefreshMargin, life/2))
		}
		call.token, call.err = tok, err
		close(call.done)
		c.mu.Unlock()
		return tok, err
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// invalidate forgets key's token when it is still tok (an endpoint
// refused it): the next get fetches a new one. A token refreshed
// meanwhile by another attempt is kept.
func (c *tokens) invalidate(key, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[key]; e != nil && e.token == tok {
		e.token = ""
	}
}

// put stores an entry, making room first when the cache is full: expired
// entries, then any (it is a cache: a dropped token is fetched again).
func (c *tokens) put(key string, e *tokenEntry) {
	if _, ok := c.m[key]; !ok && len(c.m) >= maxTokens {
		now := c.now()
		for k, old := range c.m {
			if old.call == nil && !now.Before(old.refreshAt) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxTokens {
				break
			}
			if c.m[k].call == nil {
				delete(c.m, k)
			}
		}
	}
	c.m[key] = e
}

// tokenError is a failure to get a token: the attempt fails with
// ClassAuthToken. Its message names the token endpoint's status and OAuth
// error code, or the connection failure; never the secret, the token or
// the token URL.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return "token endpoint: " + e.msg }

// token returns the access token of an attempt's OAuth client.
func (s *Sender) token(ctx context.Context, a Auth) (string, error) {
	c := a.OAuth
	return s.tokens.get(ctx, a.Key, c.hash(), func(ctx context.Context) (string, time.Duration, error) {
		return s.fetchToken(ctx, c)
	})
}

// fetchToken asks the token endpoint for a token (RFC 6749 section 4.4.2)
// through the same client as webhooks: the SSRF dial guard, no proxy, no
// redirects.
func (s *Sender) fetchToken(ctx context.Context, c *OAuthClient) (string, time.Duration, error) {
	if err := checkURL(c.TokenURL, s.httpsOnly); err != nil {
		return "", 0, &tokenError{msg: err.Error()}
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.Scope != "" {
		form.Set("scope", c.Scope)
	}
	if c.Audience != "" {
		form.Set("audience", c.Audience)
	}
	if c.PostSecret {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &tokenError{msg: "invalid URL"}
	}
	if !c.PostSecret {
		// RFC 6749 section 2.3.1: both form-encoded, then Basic.
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(c.ClientID)+":"+url.QueryEscape(c.ClientSecret))))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, &tokenError{msg: redact(err).Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return "", 0, &tokenError{msg: fmt.Sprintf("HTTP %d, answer not read: %v", resp.StatusCode, redact(err))}
	}
	var tr struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if code := oauthErrorCode(tr.Error); jsonErr == nil && code != "" {
			msg += " (" + code + ")"
		}
		return "", 0, &tokenError{msg: msg}
	}
	switch {
	case jsonErr != nil:
		return "", 0, &tokenError{msg: fmt.Sprintf("HTTP %d with an answer that is not a JSON token response", resp.StatusCode)}
	case tr.AccessToken == "":
		return "", 0, &tokenError{msg: "the answer has no access_token"}
	case !validToken(tr.AccessToken):
		return "", 0, &tokenError{msg: "the access_token is not a valid header value"}
	case tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer"):
		return "", 0, &tokenError{msg: "token_type is not Bearer"}
	}
	life, ok := expiresIn(tr.ExpiresIn)
	if !ok {
		return "", 0, &tokenError{msg: "expires_in is not a number of seconds"}
	}
	return tr.AccessToken, life, nil
}

// expiresIn reads expires_in: a number of seconds (some servers send it
// as a string); absent is DefaultTokenLifetime.
func expiresIn(raw json.RawMessage) (time.Duration, bool) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return DefaultTokenLifetime, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// oauthErrorCode is the error code of a token endpoint's answer when it
// is one RFC 6749 allows (printable ASCII without '"' and '\', short);
// error_description and error_uri are never repeated: they are the
// server's free text.
func oauthErrorCode(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return s
}

// validToken accepts a token that can be sent in a header.
func validToken(s string) bool {
	if len(s) > 16<<10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

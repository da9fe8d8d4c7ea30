package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/producer/internal/config"
	"github.com/hookline/hookline/services/producer/internal/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// env is a running producer on a real nats-server and redis-server.
type env struct {
	t     *testing.T
	base  string
	nats  *natstest.Server
	js    jetstream.JetStream
	redis *redistest.Server
	rdb   *redis.Client
	logs  *observer.ObservedLogs
	cfg   config.Config
	stop  func() error // stops the producer and returns Run's error
}

// start runs a producer with the given extra environment, waiting until it
// is ready.
func start(t *testing.T, extra map[string]string, opts ...server.Option) *env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	rs := redistest.Start(t)
	e := startOn(t, ns.URL(), rs.Addr, extra, opts...)
	e.nats, e.js, e.redis, e.rdb = ns, js, rs, rs.Client(t)
	e.awaitReady()
	return e
}

// startOn runs a producer against the given NATS URL and Redis address
// without waiting for readiness.
func startOn(t *testing.T, natsURL, redisAddr string, extra map[string]string, opts ...server.Option) *env {
	t.Helper()
	m := map[string]string{
		"HOOKLINE_NATS_URL":         natsURL,
		"HOOKLINE_REDIS_URL":        "redis://" + redisAddr + "/0",
		"HOOKLINE_HTTP_ADDR":        "127.0.0.1:0",
		"HOOKLINE_PUBLISH_TIMEOUT":  "2s",
		"HOOKLINE_SHUTDOWN_TIMEOUT": "5s",
		// A fresh, open NATS: the producer creates its streams
		// (TestCheckOnlyWaitsForTheTopology covers "check").
		"HOOKLINE_TOPOLOGY": "ensure",
	}
	for k, v := range extra {
		m[k] = v
	}
	cfg, err := config.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	nc, err := natsconn.Connect(cfg.NATS, "producer-test", log)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	srv, err := server.New(cfg, nc, rdb, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
			runErr = errors.Join(runErr, natsconn.Drain(nc, 5*time.Second))
			_ = rdb.Close()
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("producer Run: %v", err)
		}
		for _, entry := range logs.All() {
			if line := fmt.Sprint(entry.Message, entry.ContextMap()); strings.Contains(line, "whsec_") {
				t.Errorf("a secret was logged: %s", line)
			}
		}
	})
	return &env{t: t, base: "http://" + addr.String(), logs: logs, cfg: cfg, stop: stop}
}

func (e *env) awaitReady() {
	e.t.Helper()
	eventually(e.t, "producer ready", func() bool {
		resp, err := http.Get(e.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// do sends a request; body is sent as is (string or []byte) or as JSON.
func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// expect fails unless the response has the status.
func expect(t *testing.T, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
}

// lastMsg returns the last message stored on subject.
func (e *env) lastMsg(streamName, subject string) *jetstream.RawStreamMsg {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), streamName)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), subject)
	if err != nil {
		e.t.Fatalf("last message on %s: %v", subject, err)
	}
	return m
}

// msgs is the number of messages in a stream.
func (e *env) msgs(streamName string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), streamName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) doContentType(method, path, body, contentType string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func zapString(k, v string) zap.Field { return zap.String(k, v) }

func stringify(m map[string]any) string { return fmt.Sprint(m) }

// Package admin is the deliverer's operational HTTP server: /livez,
// /readyz, /metrics and, when enabled, /debug/pprof.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is a readiness condition; its error text is shown on /readyz, so
// it must not hold a secret.
type Check func(ctx context.Context) error

// Server serves the admin endpoints.
type Server struct {
	addr   string
	srv    *http.Server
	ln     net.Listener
	ready  atomic.Bool
	checks map[string]Check
}

// Config is a Server's.
type Config struct {
	// Addr is where it listens.
	Addr string
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	// Pprof serves /debug/pprof.
	Pprof bool
	// Checks are /readyz's conditions, by name.
	Checks map[string]Check
}

// New builds the server; nothing listens until Listen.
func New(c Config) *Server {
	gatherer, withPprof := c.Gatherer, c.Pprof
	s := &Server{addr: c.Addr, checks: c.Checks}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	// OpenMetrics when the scraper asks for it: the format that carries
	// exemplars (hookline_delivery_latency_seconds links to traces).
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	return s
}

// Listen opens the listener (before anything says it is ready).
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin listen on %s (HOOKLINE_HTTP_ADDR): %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the address listened on (after Listen).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetReady turns /readyz on or off (the checks must pass too).
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// Run serves until ctx ends, then shuts down within five seconds.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("admin server shutdown: %w", err)
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var failed []string
	if !s.ready.Load() {
		failed = append(failed, "deliverer: not running")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for name, check := range s.checks {
		if err := check(ctx); err != nil {
			failed = append(failed, name+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Join(failed, "\n") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

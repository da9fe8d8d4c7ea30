// Package natstest runs a real, embedded nats-server with JetStream for tests.
package natstest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded nats-server with JetStream and file storage in a
// temporary folder of the test.
type Server struct {
	*server.Server
	StoreDir string
	opts     *server.Options
	port     int // the port it listens on, kept for Restart
}

// Options changes the server options before it starts.
type Option func(*server.Options)

// Start starts an embedded nats-server on a free loopback port and stops it
// when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	dir := tb.TempDir()
	o := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
	for _, opt := range opts {
		opt(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: server not ready within 10s")
	}
	srv := &Server{Server: s, StoreDir: dir, opts: o, port: s.Addr().(*net.TCPAddr).Port}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// Restart stops the server (unless Shutdown did already) and starts it
// again on the same port with the same storage, as a nats-server restart
// does: streams and durable consumers survive, ephemeral consumers (KV
// watches) do not.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		s.port = a.Port
	}
	port := s.port
	s.Shutdown()
	s.WaitForShutdown()
	o := s.opts.Clone()
	o.Port = port
	ns, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("natstest: restart: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: server not ready within 10s of a restart")
	}
	s.Server = ns
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.ClientURL() }

// Connect opens a client connection that closes when the test ends.
func (s *Server) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Messages reads every message stored in a stream, oldest first (deleted
// sequences skipped).
func Messages(tb testing.TB, js jetstream.JetStream, streamName string) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", streamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("natstest: stream %s info: %v", streamName, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			tb.Fatalf("natstest: stream %s seq %d: %v", streamName, seq, err)
		}
		out = append(out, m)
	}
	return out
}

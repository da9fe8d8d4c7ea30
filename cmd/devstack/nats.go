package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// startNATS starts the embedded nats-server with JetStream and file storage
// in <data>/nats. One server, one replica: the local shape of production's
// three.
func startNATS(cfg config, log *zap.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "hookline-dev",
		Host:       "127.0.0.1",
		Port:       cfg.NATSPort,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		NoSigs:     true, // devstack owns the signals
		SyncAlways: cfg.NATSSync == syncAlways,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log: log.Named("nats")}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server did not accept connections on 127.0.0.1:%d within 15s", cfg.NATSPort)
	}
	log.Info("nats started", zap.String("url", s.ClientURL()), zap.String("store_dir", opts.StoreDir),
		zap.String("sync", string(cfg.NATSSync)))
	return s, nil
}

func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// natsLogger passes on what an operator must see: warnings and errors.
type natsLogger struct{ log *zap.Logger }

func (l natsLogger) Noticef(string, ...any) {}
func (l natsLogger) Debugf(string, ...any)  {}
func (l natsLogger) Tracef(string, ...any)  {}
func (l natsLogger) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}
func (l natsLogger) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}

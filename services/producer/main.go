// Command producer is Hookline's front door and control plane: it accepts
// events over HTTP, publishes them to JetStream, and manages subscriptions
// (README, "Architecture").
package main

import (
	"context"
	"errors"
	"os"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/services/producer/internal/config"
	"github.com/hookline/hookline/services/producer/internal/server"
	"go.uber.org/zap"
)

var version = "dev" // set at build time: -ldflags "-X main.version=…"

func main() { envconfig.Main("producer", run) }

func run(ctx context.Context) error {
	if done, err := envconfig.Args("producer", os.Args[1:], &config.Config{}, version, os.Stdout); done || err != nil {
		return err
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.Log, "producer")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("producer starting", zap.String("version", version))
	nc, err := natsconn.Connect(cfg.NATS, "producer", log)
	if err != nil {
		return err
	}
	rdb, err := redisconn.Open(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	tr, err := tracing.Start(ctx, cfg.Tracing, "hookline-producer", version, tracing.LogErrors(log))
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, nc, rdb, log, server.WithTracing(tr))
	if err != nil {
		return err
	}
	runErr := srv.Run(ctx)
	return errors.Join(runErr, natsconn.Drain(nc, cfg.ShutdownTimeout), tr.Flush())
}

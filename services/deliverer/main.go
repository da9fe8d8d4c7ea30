// Command deliverer fans events out to subscriptions and delivers them (README, "Architecture").
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/service"
)

var version = "dev" // set at build time: -ldflags "-X main.version=…"

func main() { envconfig.Main("deliverer", run) }

func run(ctx context.Context) error {
	if len(os.Args) == 2 && os.Args[1] == "topology" {
		return topology(ctx)
	}
	if done, err := envconfig.Args("deliverer", os.Args[1:], &config.Config{}, version, os.Stdout); done || err != nil {
		return err
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.Log, "deliverer")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	nc, err := natsconn.Connect(cfg.NATS, "deliverer", log)
	if err != nil {
		return err
	}
	rdb, err := redisconn.Open(cfg.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	prepare := service.Check
	if cfg.Topology.Ensures() {
		prepare = service.Ensure
	}
	if err := prepare(ctx, nc, cfg.Stream(), log); err != nil {
		return err
	}
	tr, err := tracing.Start(ctx, cfg.Tracing, "hookline-deliverer", version, tracing.LogErrors(log))
	if err != nil {
		return err
	}
	svc, err := service.New(ctx, cfg, service.Deps{NATS: nc, Redis: rdb, Log: log, Version: version, Tracing: tr})
	if err != nil {
		return err
	}
	runErr := svc.Run(ctx)
	return errors.Join(runErr, natsconn.Drain(nc, cfg.ShutdownTimeout), tr.Flush())
}

// topology is `deliverer topology`: create or update every stream, the KV
// bucket and both consumers as this environment's settings say, then exit.
// It is the admin step (run with the NATS admin user: k8s runs it as the
// deliverer's init container) that lets the services run with
// HOOKLINE_TOPOLOGY=check and no right to change a stream.
func topology(ctx context.Context) error {
	cfg, err := config.LoadTopology(envconfig.Environ())
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.Log, "deliverer-topology")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	nc, err := natsconn.Connect(cfg.NATS, "admin", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := service.Ensure(ctx, nc, cfg.Stream(), log); err != nil {
		return err
	}
	log.Info("topology ensured: streams, kv bucket and consumers exist as configured")
	return nil
}

// Command deliverer fans events out to subscriptions and delivers them (README, "Architecture").
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/service"
)

var version = "dev" // set at build time: -ldflags "-X main.version=…"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "deliverer:", err)
		if errors.Is(err, envconfig.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
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
	if err := service.Ensure(ctx, nc, cfg.Stream(), log); err != nil {
		return err
	}
	svc, err := service.New(ctx, cfg, service.Deps{NATS: nc, Redis: rdb, Log: log, Version: version})
	if err != nil {
		return err
	}
	runErr := svc.Run(ctx)
	return errors.Join(runErr, natsconn.Drain(nc, cfg.ShutdownTimeout))
}

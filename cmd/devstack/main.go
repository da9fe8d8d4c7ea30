// Command devstack is what `make run` starts: an embedded NATS server with
// JetStream, a Redis (REDIS_URL, a redis-server on PATH, or an embedded
// miniredis), the producer and the deliverer as child processes, and a demo
// receiver that verifies each webhook's signature and prints it. Ctrl-C
// stops everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(os.Stdout)
		return
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "devstack:", err)
		printUsage(os.Stderr)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

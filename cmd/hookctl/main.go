// Command hookctl is the command line for people operating Hookline: dead
// letters (list, stats, show, replay, purge), the attempt history, and the
// producer API (subscriptions, event publishing).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/hookline/hookline/cmd/hookctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first Ctrl-C stops cleanly after the entry in flight; restoring
	// the default handling lets a second one end the process at once.
	go func() { <-ctx.Done(); stop() }()
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hookctl:", cli.Printable(err.Error()))
		os.Exit(cli.ExitCode(err))
	}
}

// run: config from the environment → the command tree → execute (commands
// connect to NATS or the producer API as they need) → close.
func run(ctx context.Context) error {
	cfg, err := cli.LoadConfig(cli.Environ(os.Environ()))
	if err != nil {
		return err
	}
	app := cli.New(cfg, cli.IO{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		InTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		OutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
	})
	return app.Execute(ctx, os.Args[1:])
}

// Package cli holds hookctl's command tree: the dead-letter commands (dlq
// ls, stats, show, replay, purge), the attempt history, and the producer API
// commands (subs, events, replay jobs).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/hookline/hookline/cmd/hookctl/internal/producer"
	"github.com/hookline/hookline/pkg/natsconn"
)

// IO is where a command reads and writes, and whether those are terminals
// (a progress bar and confirmation prompts need one).
type IO struct {
	In          io.Reader
	Out, Err    io.Writer
	InTerminal  bool
	OutTerminal bool
}

// App runs one hookctl invocation.
type App struct {
	cfg Config
	io  IO

	// Flags shared by every command; empty means "from the environment".
	natsURL, creds, tlsCA, tlsCert, tlsKey string
	connectTimeout                         time.Duration
	apiURL                                 string

	root *cobra.Command
	nc   *nats.Conn
	js   jetstream.JetStream
}

// New builds the command tree.
func New(cfg Config, stdio IO) *App {
	if stdio.Out != nil {
		stdio.Out = &printable{w: stdio.Out}
	}
	a := &App{cfg: cfg, io: stdio}
	a.root = a.rootCommand()
	return a
}

// Execute runs the command line args (without the program name) and closes
// the NATS connection it may have opened.
func (a *App) Execute(ctx context.Context, args []string) error {
	a.root.SetArgs(args)
	cmd, err := a.root.ExecuteContextC(ctx)
	if a.nc != nil {
		a.nc.Close()
	}
	if err == nil {
		return nil
	}
	var re *runError
	if errors.As(err, &re) {
		return re.err
	}
	// cobra's own errors: unknown flags or commands, bad flag values.
	return usageErr(fmt.Errorf("%w\nRun '%s --help' for usage", err, cmd.CommandPath()))
}

func (a *App) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hookctl",
		Short: "Operate Hookline: dead letters, attempts, subscriptions, events",
		Long: `hookctl is the command line for people operating Hookline.

Dead letters (NATS stream DEADLETTER): list, count, show, replay at a bounded
rate, purge. Attempt history (stream ATTEMPTS). Subscriptions, their stats and
event publishing through the producer API; server-side replay jobs (hookctl
replay) and dead-letter listing (dlq ls --api) through it too, with an API
token instead of NATS credentials.

NATS connection: --nats-url or HOOKLINE_NATS_URL (default nats://127.0.0.1:4222),
credentials with --creds / HOOKLINE_NATS_CREDS (or HOOKLINE_NATS_NKEY_SEED_FILE,
HOOKLINE_NATS_USER + HOOKLINE_NATS_PASSWORD), TLS with --tls-ca/--tls-cert/--tls-key
(HOOKLINE_NATS_TLS_CA/_CERT/_KEY).
Producer API: --api-url or HOOKLINE_API_URL (default http://localhost:8080); a
bearer token from HOOKLINE_API_TOKEN (environment only, never printed).

Exit codes: 0 ok (an empty selection included), 1 failure, 2 usage,
3 not found, 4 refused, 130 interrupted (run the printed command to resume).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.natsURL, "nats-url", "", "NATS server URL(s) (env HOOKLINE_NATS_URL, default nats://127.0.0.1:4222)")
	pf.StringVar(&a.creds, "creds", "", "NATS credentials file (env HOOKLINE_NATS_CREDS)")
	pf.StringVar(&a.tlsCA, "tls-ca", "", "CA bundle to verify the NATS server (env HOOKLINE_NATS_TLS_CA)")
	pf.StringVar(&a.tlsCert, "tls-cert", "", "client certificate for NATS (env HOOKLINE_NATS_TLS_CERT)")
	pf.StringVar(&a.tlsKey, "tls-key", "", "client key for NATS (env HOOKLINE_NATS_TLS_KEY)")
	pf.DurationVar(&a.connectTimeout, "connect-timeout", 5*time.Second, "give up reaching NATS after this long")
	pf.StringVar(&a.apiURL, "api-url", "", "producer API base URL (env HOOKLINE_API_URL, default http://localhost:8080)")

	root.AddCommand(a.dlqCommand(), a.attemptsCommand(), a.subsCommand(), a.eventsCommand(), a.replayCommand(), a.tenantsCommand())
	group(root)
	for _, c := range allCommands(root) {
		c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })
		if c.RunE != nil {
			c.RunE = markRun(c.RunE)
		}
	}
	root.SetIn(a.io.In)
	root.SetOut(a.io.Out)
	root.SetErr(a.io.Err)
	return root
}

// group makes a command that only holds subcommands print its help when
// called bare and reject an unknown subcommand (cobra would print help and
// exit 0 on a typo).
func group(c *cobra.Command) *cobra.Command {
	c.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())
		}
		return nil
	}
	c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return c
}

func markRun(f func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if err := f(c, args); err != nil {
			return &runError{err: err}
		}
		return nil
	}
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// natsConfig is the environment's NATS settings overridden by flags.
func (a *App) natsConfig() natsconn.Config {
	c := a.cfg.NATS
	for _, o := range []struct {
		flag string
		dst  *string
	}{
		{a.natsURL, &c.URL}, {a.creds, &c.Creds}, {a.tlsCA, &c.TLSCA}, {a.tlsCert, &c.TLSCert}, {a.tlsKey, &c.TLSKey},
	} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	return c
}

// jetStream connects once per invocation. It fails with an actionable
// message when no server answers within --connect-timeout.
func (a *App) jetStream(ctx context.Context) (jetstream.JetStream, error) {
	if a.js != nil {
		return a.js, nil
	}
	cfg := a.natsConfig()
	if err := cfg.Validate(); err != nil {
		return nil, usageErr(err)
	}
	where := redactURLs(cfg.URL)
	nc, err := natsconn.Connect(cfg, "hookctl", zap.NewNop())
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: %w (check --nats-url / HOOKLINE_NATS_URL and the credential and TLS settings)", where, err)
	}
	connected := nc.StatusChanged(nats.CONNECTED)
	if !nc.IsConnected() {
		t := time.NewTimer(a.connectTimeout)
		select {
		case <-connected:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if !nc.IsConnected() {
		last := nc.LastError()
		nc.Close()
		msg := fmt.Sprintf("cannot reach NATS at %s within %s", where, a.connectTimeout)
		if last != nil {
			msg += ": " + last.Error()
		}
		return nil, errors.New(msg + "\nCheck --nats-url / HOOKLINE_NATS_URL (default nats://127.0.0.1:4222), that the server is running, and --creds / --tls-* if it needs them.")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	a.nc, a.js = nc, js
	return js, nil
}

// natsErr turns JetStream's "not enabled" into what to do about it.
func natsErr(err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return errNoJetStream
	}
	return err
}

// api is the producer API client.
func (a *App) api() (*producer.Client, error) {
	u := a.cfg.APIURL
	if a.apiURL != "" {
		u = a.apiURL
	}
	c, err := producer.New(u, a.cfg.APIToken)
	if err != nil {
		return nil, usageErr(err)
	}
	return c, nil
}

// changedFlags lists the flags given on the command line (for a resume
// command), persistent ones included.
func changedFlags(c *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	c.Flags().Visit(func(f *pflag.Flag) { out = append(out, f) })
	return out
}

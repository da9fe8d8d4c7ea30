// Package natsconn connects to NATS with the settings every Hookline binary
// shares: URL, credentials (creds file, nkey seed or user/password) and TLS.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// PingInterval is how often a client pings the server; two unanswered pings
// mark the connection dead and trigger a reconnect.
const PingInterval = 10 * time.Second

// Config is embedded in each binary's config.
type Config struct {
	URL      string `env:"HOOKLINE_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	Creds    string `env:"HOOKLINE_NATS_CREDS"`
	NKeySeed string `env:"HOOKLINE_NATS_NKEY_SEED_FILE"`
	User     string `env:"HOOKLINE_NATS_USER"`
	Password string `env:"HOOKLINE_NATS_PASSWORD"`
	TLSCA    string `env:"HOOKLINE_NATS_TLS_CA"`
	TLSCert  string `env:"HOOKLINE_NATS_TLS_CERT"`
	TLSKey   string `env:"HOOKLINE_NATS_TLS_KEY"`
	// InboxPrefix is where replies to this client's requests (pull
	// batches, acks, API calls) arrive; empty means InboxPrefix(component).
	InboxPrefix string `env:"HOOKLINE_NATS_INBOX_PREFIX"`
}

// InboxPrefix is a component's default reply prefix, "_INBOX_<component>":
// each user of deploy/security/nats-server.conf may subscribe to its own
// prefix only, so no component can read another's replies (task bodies in
// pull batches, subscription records in KV gets).
func InboxPrefix(component string) string { return "_INBOX_" + component }

// Validate names the variable at fault; it never prints a secret.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("HOOKLINE_NATS_URL is empty")
	}
	for i, raw := range strings.Split(c.URL, ",") {
		// url.Parse's errors quote the URL, password included: say which
		// entry is wrong without echoing it.
		raw = strings.TrimSpace(raw)
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw // as nats.go reads host:port
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("HOOKLINE_NATS_URL entry %d is not a URL like nats://host:4222 (not shown: it may hold a password)", i+1)
		}
	}
	n := 0
	for _, set := range []bool{c.Creds != "", c.NKeySeed != "", c.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("set only one of HOOKLINE_NATS_CREDS, HOOKLINE_NATS_NKEY_SEED_FILE, HOOKLINE_NATS_USER")
	}
	if c.Password != "" && c.User == "" {
		return errors.New("HOOKLINE_NATS_PASSWORD is set without HOOKLINE_NATS_USER")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("HOOKLINE_NATS_TLS_CERT and HOOKLINE_NATS_TLS_KEY must be set together")
	}
	if c.InboxPrefix != "" && !validPrefix(c.InboxPrefix) {
		return fmt.Errorf("HOOKLINE_NATS_INBOX_PREFIX %q is not a subject prefix (tokens of letters, digits, '_' or '-', separated by '.')", c.InboxPrefix)
	}
	return nil
}

// validPrefix accepts dot-separated tokens of letters, digits, '_' and '-'.
func validPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return false
		}
		for _, r := range tok {
			if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

// Connect dials NATS as component ("producer", "deliverer", "hookctl"; the
// connection is named "hookline-<component>"), reconnecting forever, and
// logs connection changes.
func Connect(c Config, component string, log *zap.Logger) (*nats.Conn, error) {
	inbox := c.InboxPrefix
	if inbox == "" {
		inbox = InboxPrefix(component)
	}
	opts := []nats.Option{
		nats.Name("hookline-" + component),
		nats.CustomInboxPrefix(inbox),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Detect a silent partition in about 20 s instead of the default
		// 4 minutes: on a dead connection JetStream keeps redelivering the
		// unacknowledged tasks each AckWait, and every stale copy a
		// reconnecting client still holds would become a duplicate POST.
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats async error", zap.Error(err))
		}),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %w", c.NKeySeed, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	return nc, nil
}

// Drain flushes what is in flight on nc (publishes, acks, subscriptions
// finishing) and closes it, waiting at most timeout. While NATS is
// unreachable there is nothing to flush and it closes at once: the producer
// answered 503 to every publish since the outage began, and the deliverer's
// unacknowledged tasks are redelivered by JetStream.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	if nc.IsClosed() {
		return nil
	}
	if !nc.IsConnected() {
		nc.Close()
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout):
		nc.Close()
		return fmt.Errorf("drain nats: not closed within %s", timeout)
	}
}

// PublishAsync is js.PublishMsgAsync that tries again while the async
// publish window is full: each try already waits the stall wait (200 ms
// unless opts set another) before jetstream.ErrTooManyStalledMsgs. It gives
// up when ctx ends. onStall, when not nil, runs once per full-window try.
func PublishAsync(ctx context.Context, js jetstream.JetStream, m *nats.Msg, onStall func(), opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	for {
		f, err := js.PublishMsgAsync(m, opts...)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		if onStall != nil {
			onStall()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("async publish window full: %w", ctx.Err())
		}
	}
}

// Interruptions reports on the returned channel each time nc is
// disconnected or reconnected, until ctx ends. A KV watch (an ordered
// consumer) learns that it lost its server only when heartbeats go
// missing, about 20 s later; a holder of state built from a watch stops
// trusting it at once and watches again (replaying) instead. The channel
// holds one pending interruption; more coalesce.
func Interruptions(ctx context.Context, nc *nats.Conn) <-chan struct{} {
	out := make(chan struct{}, 1)
	if nc == nil {
		return out
	}
	status := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED)
	go func() {
		defer nc.RemoveStatusListener(status)
		for {
			select {
			case <-ctx.Done():
				return
			case <-status:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// readyTimeout bounds how long the services get to answer /readyz.
const readyTimeout = 90 * time.Second

// stack is everything `make run` starts, in start order.
type stack struct {
	cfg config
	con *console
	log *zap.Logger

	nats     *server.Server
	nc       *nats.Conn
	redis    *localRedis
	receiver *http.Server
	services []*child // producer, deliverer
}

// run starts the stack, prints the copy-paste commands once the services
// are ready, and runs until ctx ends (nil: a clean stop) or a child exits
// on its own (an error naming it).
func run(ctx context.Context, cfg config, stdout io.Writer) (err error) {
	con := newConsole(stdout)
	s := &stack{cfg: cfg, con: con, log: newLogger(con)}
	defer func() { _ = s.log.Sync() }()
	defer func() {
		if stopErr := s.stop(); err == nil {
			err = stopErr
		}
	}()
	err = s.start(ctx)
	if ctx.Err() != nil {
		return nil // Ctrl-C while starting: stop quietly
	}
	if err != nil {
		return err
	}
	exited := s.watchChildren()
	if err := s.waitReady(ctx, exited); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	tokens := os.Getenv("HOOKLINE_API_TOKENS") != "" || os.Getenv("HOOKLINE_API_TOKENS_FILE") != ""
	portalURL := ""
	if !tokens || os.Getenv("HOOKLINE_API_TOKEN") != "" {
		u, err := openPortal(ctx, "http://"+s.cfg.ProducerAddr, os.Getenv("HOOKLINE_API_TOKEN"))
		if err != nil {
			s.log.Warn("no portal link for the banner", zap.Error(err))
		}
		portalURL = u
	}
	s.con.Block(banner(s.cfg, s.redis, tokens, portalURL))
	select {
	case <-ctx.Done():
		s.log.Info("stopping: signal received")
		return nil
	case c := <-exited:
		err := c.exitError()
		s.log.Error("a child exited on its own: stopping everything", zap.String("child", c.name), zap.Error(err))
		return err
	}
}

func (s *stack) start(ctx context.Context) error {
	if err := checkPorts(s.cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	binDir, err := buildServices(ctx, s.cfg, s.con, s.log)
	if err != nil {
		return err
	}
	if s.nats, err = startNATS(s.cfg, s.log); err != nil {
		return err
	}
	if s.redis, err = startRedis(ctx, s.cfg, s.con, s.log); err != nil {
		return err
	}
	if err := s.startReceiver(); err != nil {
		return err
	}
	s.log.Info("local mode: the deliverer may deliver to loopback and private addresses (production refuses them)",
		zap.String("HOOKLINE_ALLOW_PRIVATE_CIDRS", privateCIDRs))
	addrs := map[string]string{"producer": s.cfg.ProducerAddr, "deliverer": s.cfg.DelivererAddr}
	for _, name := range services {
		env := serviceEnv(os.Environ(), s.nats.ClientURL(), s.redis.URL, addrs[name])
		c, err := startChild(s.con, name, binDir+"/"+name, nil, env)
		if err != nil {
			return err
		}
		s.services = append(s.services, c)
		s.log.Info("started "+name, zap.Int("pid", c.Pid()), zap.String("addr", addrs[name]))
	}
	return nil
}

func (s *stack) startReceiver() error {
	nc, err := nats.Connect(s.nats.ClientURL(), nats.Name("hookline-devstack-receiver"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("receiver: connect nats: %w", err)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("receiver: jetstream: %w", err)
	}
	l, err := net.Listen("tcp", s.cfg.ReceiverAddr)
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	box, err := secretBox(os.Environ())
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("receiver: %w", err)
	}
	rc := newReceiver(js, box, port, s.con)
	if _, err := rc.types.watch(nc); err != nil {
		_ = l.Close()
		return fmt.Errorf("receiver: watch events: %w", err)
	}
	s.receiver = &http.Server{Handler: rc, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.receiver.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("receiver stopped", zap.Error(err))
		}
	}()
	s.log.Info("demo receiver listening", zap.String("url", "http://"+l.Addr().String()+receiverPath))
	return nil
}

// secretBox opens signing secrets sealed at rest, with the key the services
// get from the same environment (nil when none is set: encryption is off).
func secretBox(environ []string) (*secretbox.Box, error) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	var c secretbox.Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: m}); err != nil {
		return nil, err
	}
	return c.Box()
}

// watchChildren returns a channel that yields each child that exits.
func (s *stack) watchChildren() <-chan *child {
	children := append([]*child(nil), s.services...)
	if s.redis != nil && s.redis.child != nil {
		children = append(children, s.redis.child)
	}
	exited := make(chan *child, len(children))
	for _, c := range children {
		go func() {
			<-c.done
			exited <- c
		}()
	}
	return exited
}

// waitReady polls each service's /readyz until it answers 200.
func (s *stack) waitReady(ctx context.Context, exited <-chan *child) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	addrs := map[string]string{"producer": s.cfg.ProducerAddr, "deliverer": s.cfg.DelivererAddr}
	for _, name := range services {
		url := "http://" + addrs[name] + "/readyz"
		for !ready(ctx, client, url) {
			select {
			case c := <-exited:
				return c.exitError()
			case <-ctx.Done():
				return fmt.Errorf("%s did not answer %s with 200 within %s", name, url, readyTimeout)
			case <-time.After(100 * time.Millisecond):
			}
		}
		s.log.Info(name + " is ready")
	}
	return nil
}

func ready(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop stops everything that was started, the services first (they drain
// into NATS and Redis), then the receiver, Redis and NATS. It reports a
// service that did not stop cleanly.
func (s *stack) stop() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, c := range s.services {
		wg.Go(func() {
			if err := c.stop(s.cfg.StopTimeout); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if s.receiver != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.receiver.Shutdown(ctx)
		cancel()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.redis != nil {
		if err := s.redis.stop(s.cfg.StopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if s.nats != nil {
		stopNATS(s.nats)
	}
	if len(errs) == 0 && len(s.services) > 0 {
		s.log.Info("stopped")
	}
	return errors.Join(errs...)
}

// checkPorts fails fast, naming the flag, when a fixed port is taken.
func checkPorts(cfg config) error {
	for _, p := range []struct{ what, flag, addr string }{
		{"NATS", "--nats-port or HOOKLINE_DEV_NATS_PORT", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.NATSPort))},
		{"the producer", "--producer-addr", cfg.ProducerAddr},
		{"the deliverer", "--deliverer-addr", cfg.DelivererAddr},
		{"the demo receiver", "--receiver-addr", cfg.ReceiverAddr},
	} {
		if !portFree(p.addr) {
			return fmt.Errorf("%s cannot listen on %s: the port is in use (is another `make run` going?); choose another with %s", p.what, p.addr, p.flag)
		}
	}
	return nil
}

// newLogger is devstack's own logger: zap's console format, one prefixed
// line per entry like every other source on the terminal.
func newLogger(con *console) *zap.Logger {
	ec := zap.NewDevelopmentEncoderConfig()
	ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.AddSync(con.Writer("devstack")), zap.InfoLevel)
	return zap.New(core)
}

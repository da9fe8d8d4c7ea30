package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is a nats-server process with JetStream on file storage. Its ports
// and store survive Kill and Restart, so a restart finds what was written.
type NATS struct {
	*Process
	Name        string
	Port        int
	MonitorPort int
	ClusterPort int
	StoreDir    string
	ConfPath    string
}

// NATSOptions shape a server.
type NATSOptions struct {
	// SyncAlways fsyncs every write (sync_interval: always), as production
	// runs; without it the server's default (every 2 minutes) applies.
	SyncAlways bool
}

// StartNATS starts one nats-server with JetStream and sync_interval: always
// and waits until /healthz answers 200.
func StartNATS(tb testing.TB) *NATS {
	tb.Helper()
	return StartNATSWith(tb, NATSOptions{SyncAlways: true})
}

func newNATS(tb testing.TB, bins Binaries, name string, o NATSOptions, clusterPort int, routes []int) *NATS {
	tb.Helper()
	dir := tb.TempDir()
	s := &NATS{
		Name:        name,
		Port:        FreePort(tb),
		MonitorPort: FreePort(tb),
		ClusterPort: clusterPort,
		StoreDir:    filepath.Join(dir, "store"),
		ConfPath:    filepath.Join(dir, name+".conf"),
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "server_name: %q\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", name, s.Port, s.MonitorPort)
	fmt.Fprintf(&conf, "jetstream {\n  store_dir: %q\n", s.StoreDir)
	if o.SyncAlways {
		conf.WriteString("  sync_interval: always\n")
	}
	conf.WriteString("}\n")
	if clusterPort != 0 {
		var rs []string
		for _, p := range routes {
			rs = append(rs, fmt.Sprintf("\"nats-route://127.0.0.1:%d\"", p))
		}
		fmt.Fprintf(&conf, "cluster {\n  name: \"hookline\"\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n", clusterPort, strings.Join(rs, ", "))
	}
	if err := os.WriteFile(s.ConfPath, []byte(conf.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	s.Process = NewProcess(tb, name, bins.NATSServer, []string{"-c", s.ConfPath}, nil)
	// /healthz is 200 once JetStream is up and, after a restart, once every
	// stream and consumer has caught up.
	s.Ready = HTTPReady(fmt.Sprintf("http://127.0.0.1:%d/healthz", s.MonitorPort))
	// A node that rejoins a cluster under load may take a while to catch up.
	s.ReadyWithin = 2 * time.Minute
	return s
}

// URL is the client URL.
func (s *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// Addr is host:port of the client listener.
func (s *NATS) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Cluster is several nats-server processes joined by routes.
type Cluster struct {
	Nodes []*NATS
}

// StartCluster starts n nats-servers on loopback forming one JetStream
// cluster (sync_interval: always) and waits until every node is healthy.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	bins := Build(tb)
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(tb)
	}
	c := &Cluster{}
	for i := range n {
		var routes []int
		for j, p := range ports {
			if j != i {
				routes = append(routes, p)
			}
		}
		c.Nodes = append(c.Nodes, newNATS(tb, bins, fmt.Sprintf("n%d", i+1), NATSOptions{SyncAlways: true}, ports[i], routes))
	}
	for _, s := range c.Nodes {
		if err := s.StartNoWait(); err != nil {
			tb.Fatal(err)
		}
	}
	for _, s := range c.Nodes {
		s.WaitReady(s.ReadyWithin)
	}
	return c
}

// URL lists every node, comma-separated, as nats.Connect accepts.
func (c *Cluster) URL() string {
	var us []string
	for _, s := range c.Nodes {
		us = append(us, s.URL())
	}
	return strings.Join(us, ",")
}

// ConnectNATS opens a client connection (reconnecting forever) that closes
// when the test ends.
func ConnectNATS(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// AwaitStream waits until the stream exists and answers (e.g. after a
// service ensured the topology, or after a restart).
func AwaitStream(tb testing.TB, js jetstream.JetStream, name string, timeout time.Duration) {
	tb.Helper()
	Eventually(tb, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, name)
		return err
	})
}

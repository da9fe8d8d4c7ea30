package deploy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

// TestNATSConfigs parses deploy/nats/*.conf with nats-server's own parser.
func TestNATSConfigs(t *testing.T) {
	root := repoRoot(t)
	t.Setenv("SERVER_NAME", "nats-0") // production.conf takes it from the pod

	local, err := server.ProcessConfigFile(filepath.Join(root, "deploy", "nats", "local.conf"))
	if err != nil {
		t.Fatalf("local.conf: %v", err)
	}
	if !local.JetStream || local.StoreDir == "" || local.HTTPPort == 0 {
		t.Errorf("local.conf: jetstream %v store %q monitoring %d", local.JetStream, local.StoreDir, local.HTTPPort)
	}

	prod, err := server.ProcessConfigFile(filepath.Join(root, "deploy", "nats", "production.conf"))
	if err != nil {
		t.Fatalf("production.conf: %v", err)
	}
	if !prod.JetStream || !prod.SyncAlways {
		t.Errorf("production.conf: jetstream %v sync always %v: acknowledged writes must be fsynced", prod.JetStream, prod.SyncAlways)
	}
	// Three servers: room for R3 streams (HOOKLINE_STREAM_REPLICAS=3).
	if prod.Cluster.Name == "" || len(prod.Routes) != 3 {
		t.Errorf("production.conf: cluster %q with %d routes, want three servers", prod.Cluster.Name, len(prod.Routes))
	}
	if prod.ServerName != "nats-0" || prod.HTTPPort == 0 {
		t.Errorf("production.conf: server name %q monitoring port %d", prod.ServerName, prod.HTTPPort)
	}
}

// TestNATSHelmValues: the values for the official chart ask for what
// production.conf says.
func TestNATSHelmValues(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "nats", "helm-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled bool              `json:"enabled"`
				Merge   map[string]string `json:"merge"`
			} `json:"jetstream"`
			Monitor struct {
				Enabled bool `json:"enabled"`
			} `json:"monitor"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || c.JetStream.Merge["sync_interval"] != "always" || !c.Monitor.Enabled {
		t.Errorf("helm values %+v: want 3 clustered servers, JetStream with sync_interval always, monitoring on", c)
	}
}

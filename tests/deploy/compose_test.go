package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
)

// loadCompose loads docker-compose.yml as `docker compose` does, with env as
// the environment of the command.
func loadCompose(t *testing.T, root string, env []string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithName("hookline"),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// composeShutdownTimeout is HOOKLINE_SHUTDOWN_TIMEOUT as compose sets it.
func composeShutdownTimeout(t *testing.T, s types.ServiceConfig) time.Duration {
	t.Helper()
	v := s.Environment["HOOKLINE_SHUTDOWN_TIMEOUT"]
	if v == nil {
		t.Fatalf("%s: HOOKLINE_SHUTDOWN_TIMEOUT is not set", s.Name)
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		t.Fatalf("%s: HOOKLINE_SHUTDOWN_TIMEOUT=%q: %v", s.Name, *v, err)
	}
	return d
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, root, nil)

	if got := sorted(setOf(p.ServiceNames())); !slices.Equal(got, []string{"deliverer", "nats", "producer", "redis"}) {
		t.Fatalf("services %v, want nats, redis, producer, deliverer", got)
	}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Disable {
			t.Errorf("%s: no healthcheck", name)
		}
	}

	nats := p.Services["nats"]
	if nats.Image != "nats:2.15.2-alpine" {
		t.Errorf("nats image %q", nats.Image)
	}
	if !slices.Contains(nats.Command, "-js") {
		t.Errorf("nats command %v lacks -js", nats.Command)
	}
	conf := ""
	for i, a := range nats.Command {
		if a == "-c" && i+1 < len(nats.Command) {
			conf = nats.Command[i+1]
		}
	}
	var confSource string
	var dataVolume bool
	for _, v := range nats.Volumes {
		if v.Target == conf {
			confSource = v.Source
		}
		if v.Type == types.VolumeTypeVolume && v.Target == "/data" {
			dataVolume = true
		}
	}
	if conf == "" || confSource == "" {
		t.Fatalf("nats: -c %q is not a mounted file (volumes %+v)", conf, nats.Volumes)
	}
	if rel, err := filepath.Rel(root, confSource); err != nil || strings.HasPrefix(rel, "..") || !strings.HasPrefix(rel, "deploy"+string(filepath.Separator)) {
		t.Errorf("nats config %s is not from deploy/", confSource)
	}
	opts, err := server.ProcessConfigFile(confSource)
	if err != nil {
		t.Fatalf("nats config %s: %v", confSource, err)
	}
	if !opts.JetStream || opts.StoreDir != "/data" {
		t.Errorf("nats config: jetstream %v store %q, want JetStream on the /data volume", opts.JetStream, opts.StoreDir)
	}
	if !dataVolume {
		t.Error("nats: /data is not a named volume: streams would not survive a container")
	}

	if redis := p.Services["redis"]; redis.Image != "redis:7-alpine" {
		t.Errorf("redis image %q", redis.Image)
	}

	for _, name := range []string{"producer", "deliverer"} {
		t.Run(name, func(t *testing.T) {
			s := p.Services[name]
			if s.Build == nil || filepath.Clean(s.Build.Context) != root {
				t.Fatalf("build %+v: want the repository root as context (go.work)", s.Build)
			}
			dockerfile := s.Build.Dockerfile
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(s.Build.Context, dockerfile)
			}
			if want := filepath.Join(root, "services", name, "Dockerfile"); dockerfile != want {
				t.Errorf("dockerfile %s, want %s", dockerfile, want)
			}
			if _, err := os.Stat(dockerfile); err != nil {
				t.Error(err)
			}

			known := knownEnv(t, root, name)
			for k := range s.Environment {
				if strings.HasPrefix(k, "HOOKLINE_") && !known[k] {
					t.Errorf("environment: %s is read by no code of the %s (known: %v)", k, name, sorted(known))
				}
			}
			for k, want := range map[string]string{
				"HOOKLINE_NATS_URL":  "nats://nats:4222",
				"HOOKLINE_REDIS_URL": "redis://redis:6379/0",
				"HOOKLINE_HTTP_ADDR": ":8080",
			} {
				if v := s.Environment[k]; v == nil || *v != want {
					t.Errorf("%s = %v, want %q", k, v, want)
				}
			}
			// Secrets come from the caller's environment, never from this file.
			for k := range secretVars {
				if v := s.Environment[k]; v != nil && *v != "" {
					t.Errorf("%s has a value in docker-compose.yml", k)
				}
			}

			for _, dep := range []string{"nats", "redis"} {
				if c := s.DependsOn[dep].Condition; c != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: condition %q, want service_healthy", dep, c)
				}
			}
			if hc := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(hc, "127.0.0.1:8080/readyz") {
				t.Errorf("healthcheck %q does not ask /readyz", hc)
			}
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= composeShutdownTimeout(t, s) {
				t.Errorf("stop_grace_period %v must exceed HOOKLINE_SHUTDOWN_TIMEOUT", s.StopGracePeriod)
			}
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("read_only %v cap_drop %v security_opt %v: want read-only, no capabilities, no new privileges", s.ReadOnly, s.CapDrop, s.SecurityOpt)
			}
			if s.User == "0" || s.User == "root" {
				t.Errorf("user %q", s.User)
			}
		})
	}

	// The deliverer scales with --scale: nothing may pin one container.
	d := p.Services["deliverer"]
	if d.ContainerName != "" {
		t.Errorf("deliverer has container_name %q: it could not scale", d.ContainerName)
	}
	for _, port := range d.Ports {
		if port.Published != "" {
			t.Errorf("deliverer publishes host port %s: a second replica could not bind it", port.Published)
		}
	}
	if pr := p.Services["producer"]; len(pr.Ports) != 1 || pr.Ports[0].Published != "8080" || pr.Ports[0].Target != 8080 {
		t.Errorf("producer ports %+v, want 8080:8080", pr.Ports)
	}
}

// TestComposeTakesSecretsFromTheEnvironment: what the operator exports
// reaches the services, and nothing else does.
func TestComposeTakesSecretsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, root, []string{
		"HOOKLINE_SECRET_KEY=k3y",
		"HOOKLINE_API_TOKENS=ops:abc:admin",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS=172.16.0.0/12",
	})
	want := map[string]map[string]string{
		"producer":  {"HOOKLINE_SECRET_KEY": "k3y", "HOOKLINE_API_TOKENS": "ops:abc:admin", "HOOKLINE_ALLOW_PRIVATE_CIDRS": "172.16.0.0/12"},
		"deliverer": {"HOOKLINE_SECRET_KEY": "k3y", "HOOKLINE_ALLOW_PRIVATE_CIDRS": "172.16.0.0/12"},
	}
	for svc, vars := range want {
		for k, v := range vars {
			if got := p.Services[svc].Environment[k]; got == nil || *got != v {
				t.Errorf("%s: %s = %v, want %q", svc, k, got, v)
			}
		}
	}
	if _, ok := p.Services["deliverer"].Environment["HOOKLINE_API_TOKENS"]; ok {
		t.Error("the deliverer gets the API tokens it has no use for")
	}
}

func setOf(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	goredis "github.com/redis/go-redis/v9"
)

// loadCompose loads docker-compose.yml as `docker compose` does, with env as
// the environment of the command.
func loadCompose(t *testing.T, root string, env []string, more ...cli.ProjectOptionsFn) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		append([]cli.ProjectOptionsFn{
			cli.WithWorkingDirectory(root),
			cli.WithEnv(env),
			cli.WithName("hookline"),
			cli.WithInterpolation(true),
			cli.WithNormalization(true),
			cli.WithConsistency(true),
		}, more...)...,
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
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
	p := loadCompose(t, root, []string{"HOOKLINE_REDIS_PASSWORD=" + testRedisPassword})

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
	if nats.Image != "nats:2.15.3-alpine" {
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
			// Secrets come from the caller's environment, never from this
			// file (the only one exported here is the Redis password).
			for k := range secretVars {
				if v := s.Environment[k]; v != nil && *v != "" && *v != testRedisPassword {
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

	// NATS has no users here, the API none without tokens, and Redis is a
	// cache anyone could rewrite: nothing is published beyond loopback.
	for _, name := range []string{"nats", "redis", "producer"} {
		for _, port := range p.Services[name].Ports {
			if port.Published != "" && port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q: want 127.0.0.1 only", name, port.Published, port.HostIP)
			}
		}
	}
	if n := len(p.Services["nats"].Ports); n != 2 {
		t.Errorf("nats publishes %d ports, want client and monitoring on loopback", n)
	}
	// Redis takes its password from the environment, not its command line.
	redis := p.Services["redis"]
	if cmd := strings.Join(redis.Command, " "); strings.Contains(cmd, testRedisPassword) || !strings.Contains(cmd, "requirepass") {
		t.Errorf("redis command %q: want requirepass from the environment, never the password itself", cmd)
	}
	if hc := strings.Join(redis.HealthCheck.Test, " "); !strings.Contains(hc, "PONG") {
		t.Errorf("redis healthcheck %q: redis-cli exits 0 on NOAUTH, the answer must be checked", hc)
	}
}

// testRedisPassword is what the compose tests export as HOOKLINE_REDIS_PASSWORD.
const testRedisPassword = "c0mpose7e5tpa55w0rd"

// TestComposeNeedsARedisPassword: without HOOKLINE_REDIS_PASSWORD, compose
// refuses to start and says what to set.
func TestComposeNeedsARedisPassword(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithName("hookline"), cli.WithInterpolation(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	_, err = opts.LoadProject(context.Background())
	if err == nil || !strings.Contains(err.Error(), "set HOOKLINE_REDIS_PASSWORD") {
		t.Fatalf("compose without a Redis password: %v, want an error naming HOOKLINE_REDIS_PASSWORD", err)
	}
}

// TestComposeRedisRequiresThePassword runs the compose file's Redis command
// (as compose interpolates it) with a real redis-server, on a Unix socket:
// a client without the password is refused, one with it is served, and
// the password is not on redis-server's command line.
func TestComposeRedisRequiresThePassword(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed (make test-deps installs it)")
	}
	root := repoRoot(t)
	redisSvc := loadCompose(t, root, []string{"HOOKLINE_REDIS_PASSWORD=" + testRedisPassword}).Services["redis"]
	if len(redisSvc.Command) != 3 || redisSvc.Command[0] != "sh" || redisSvc.Command[1] != "-c" {
		t.Fatalf("redis command %q: want sh -c SCRIPT", redisSvc.Command)
	}
	sock := filepath.Join(t.TempDir(), "redis.sock")
	script := strings.Replace(redisSvc.Command[2], "exec redis-server ", "exec redis-server --port 0 --unixsocket "+sock+" ", 1)
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+*redisSvc.Environment["REDISCLI_AUTH"])
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	anon := goredis.NewClient(&goredis.Options{Network: "unix", Addr: sock})
	defer anon.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err = anon.Ping(ctx).Err(); err != nil && !strings.Contains(err.Error(), "NOAUTH"); err = anon.Ping(ctx).Err() {
		if time.Now().After(deadline) {
			t.Fatalf("redis from the compose command did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the socket to appear
	}
	if err == nil {
		t.Fatal("redis answered a client without the password")
	}
	authed := goredis.NewClient(&goredis.Options{Network: "unix", Addr: sock, Password: testRedisPassword})
	defer authed.Close()
	if err := authed.Ping(ctx).Err(); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(args), testRedisPassword) {
		t.Fatalf("the password is on redis-server's command line: %q", args)
	}
}

// TestComposeTakesSecretsFromTheEnvironment: what the operator exports
// reaches the services, and nothing else does.
func TestComposeTakesSecretsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, root, []string{
		"HOOKLINE_REDIS_PASSWORD=" + testRedisPassword,
		"HOOKLINE_SECRET_KEY=k3y",
		"HOOKLINE_API_TOKENS=ops:abc:admin",
		"HOOKLINE_ALLOW_PRIVATE_CIDRS=172.16.0.0/12",
	})
	want := map[string]map[string]string{
		"producer":  {"HOOKLINE_SECRET_KEY": "k3y", "HOOKLINE_API_TOKENS": "ops:abc:admin", "HOOKLINE_ALLOW_PRIVATE_CIDRS": "172.16.0.0/12", "HOOKLINE_REDIS_PASSWORD": testRedisPassword},
		"deliverer": {"HOOKLINE_SECRET_KEY": "k3y", "HOOKLINE_ALLOW_PRIVATE_CIDRS": "172.16.0.0/12", "HOOKLINE_REDIS_PASSWORD": testRedisPassword},
		"redis":     {"REDISCLI_AUTH": testRedisPassword},
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

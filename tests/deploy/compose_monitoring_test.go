package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// mounts maps a service's bind-mount targets to their sources, failing on
// a source that is not a file of the repository.
func mounts(t *testing.T, root string, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if !v.ReadOnly {
			t.Errorf("%s mounts %s writable", s.Name, v.Source)
		}
		if rel, err := filepath.Rel(root, v.Source); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%s mounts %s from outside the repository", s.Name, v.Source)
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("%s mounts %s: %v", s.Name, v.Source, err)
		}
		out[v.Target] = v.Source
	}
	return out
}

// TestComposeMonitoringProfile: `docker compose --profile monitoring up`
// adds a Prometheus that scrapes both services under the job names the
// rules select on and evaluates deploy/monitoring/alerts.yaml (promtool
// checks the configuration as mounted), and a Grafana provisioned with
// that Prometheus and deploy/monitoring/dashboard.json; both on loopback
// only. Without the profile neither starts (TestComposeServices).
func TestComposeMonitoringProfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, root, []string{"HOOKLINE_REDIS_PASSWORD=" + testRedisPassword}, cli.WithProfiles([]string{"monitoring"}))
	for _, name := range []string{"prometheus", "grafana"} {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("the monitoring profile has no %s (services %v)", name, p.ServiceNames())
		}
		if !slices.Contains(s.Profiles, "monitoring") {
			t.Errorf("%s profiles %v: it would start without --profile monitoring", name, s.Profiles)
		}
		if !strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("%s image %q is not pinned", name, s.Image)
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q: want 127.0.0.1 only", name, port.Published, port.HostIP)
			}
		}
	}

	prom := p.Services["prometheus"]
	pm := mounts(t, root, prom)
	cfgPath := ""
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			cfgPath = v
		}
	}
	cfgSource := pm[cfgPath]
	if cfgSource == "" {
		t.Fatalf("prometheus --config.file=%q is not a mounted file (mounts %v)", cfgPath, pm)
	}
	raw, err := os.ReadFile(cfgSource)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global        map[string]string `json:"global"`
		RuleFiles     []string          `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			DNSSDConfigs []struct {
				Names           []string `json:"names"`
				Type            string   `json:"type"`
				Port            int      `json:"port"`
				RefreshInterval string   `json:"refresh_interval"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", cfgSource, err)
	}
	if len(cfg.RuleFiles) != 1 || pm[cfg.RuleFiles[0]] != filepath.Join(root, "deploy", "monitoring", "alerts.yaml") {
		t.Fatalf("rule_files %v: want deploy/monitoring/alerts.yaml as mounted (mounts %v)", cfg.RuleFiles, pm)
	}
	jobs := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		var targets []string
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets = append(targets, n+":"+strconv.Itoa(d.Port))
			}
		}
		jobs[sc.JobName] = strings.Join(targets, ",")
	}
	// The services listen on HOOKLINE_HTTP_ADDR :8080 in compose; the
	// deliverer is found by name so that every --scale replica is scraped.
	want := map[string]string{"hookline-producer": "producer:8080", "hookline-deliverer": "deliverer:8080"}
	for job, targets := range want {
		if jobs[job] != targets {
			t.Errorf("job %s scrapes %q, want %q", job, jobs[job], targets)
		}
	}
	for _, svc := range []string{"producer", "deliverer"} {
		if v := p.Services[svc].Environment["HOOKLINE_HTTP_ADDR"]; v == nil || *v != ":8080" {
			t.Errorf("%s listens on %v, not the scraped :8080", svc, v)
		}
	}
	// promtool checks the configuration with its rule file where the
	// container sees it.
	dir := t.TempDir()
	local := strings.Replace(string(raw), cfg.RuleFiles[0], filepath.Join(root, "deploy", "monitoring", "alerts.yaml"), 1)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}

	g := p.Services["grafana"]
	gm := mounts(t, root, g)
	var dashboards struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	var datasources struct {
		Datasources []struct {
			Type      string `json:"type"`
			URL       string `json:"url"`
			IsDefault bool   `json:"isDefault"`
		} `json:"datasources"`
	}
	for target, source := range gm {
		b, err := os.ReadFile(source)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(target, "/etc/grafana/provisioning/dashboards/"):
			if err := yaml.Unmarshal(b, &dashboards); err != nil {
				t.Fatalf("%s: %v", source, err)
			}
		case strings.HasPrefix(target, "/etc/grafana/provisioning/datasources/"):
			if err := yaml.Unmarshal(b, &datasources); err != nil {
				t.Fatalf("%s: %v", source, err)
			}
		}
	}
	if len(dashboards.Providers) != 1 {
		t.Fatalf("dashboard providers %+v", dashboards.Providers)
	}
	dashboard := filepath.Join(root, "deploy", "monitoring", "dashboard.json")
	found := false
	for target, source := range gm {
		if source == dashboard && filepath.Dir(target) == dashboards.Providers[0].Options.Path {
			found = true
		}
	}
	if !found {
		t.Errorf("deploy/monitoring/dashboard.json is not mounted where the provider reads (%s; mounts %v)", dashboards.Providers[0].Options.Path, gm)
	}
	if len(datasources.Datasources) != 1 || datasources.Datasources[0].Type != "prometheus" ||
		datasources.Datasources[0].URL != "http://prometheus:9090" || !datasources.Datasources[0].IsDefault {
		t.Errorf("datasources %+v: want the compose Prometheus as the default", datasources.Datasources)
	}
	if _, ok := g.DependsOn["prometheus"]; !ok {
		t.Error("grafana does not depend on prometheus")
	}
}

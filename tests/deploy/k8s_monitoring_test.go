package deploy_test

import (
	"bytes"
	"flag"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var updatePrometheusRule = flag.Bool("update-prometheusrule", false, "rewrite k8s/components/monitoring/prometheusrule.yaml from deploy/monitoring/alerts.yaml")

// prometheusRule renders deploy/monitoring/alerts.yaml (from its groups:
// line on) as the spec of a PrometheusRule.
func prometheusRule(t *testing.T, root string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("\ngroups:\n"))
	if i < 0 {
		t.Fatal("alerts.yaml: no top-level groups:")
	}
	var out bytes.Buffer
	out.WriteString(`# Generated from deploy/monitoring/alerts.yaml by tests/deploy
# (TestPrometheusRuleIsCurrent -update-prometheusrule): edit that file, not this one.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: hookline
spec:
`)
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b[i+1:]), "\n"), "\n") {
		if line != "" {
			out.WriteString("  " + line)
		}
		out.WriteString("\n")
	}
	return out.Bytes()
}

// TestPrometheusRuleIsCurrent: the component's PrometheusRule holds the
// same rules as the file promtool tests.
func TestPrometheusRuleIsCurrent(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	path := filepath.Join(root, "k8s", "components", "monitoring", "prometheusrule.yaml")
	want := prometheusRule(t, root)
	if *updatePrometheusRule {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from deploy/monitoring/alerts.yaml: run `cd tests && go test ./deploy -run TestPrometheusRuleIsCurrent -update-prometheusrule`", path)
	}
}

// TestKustomizeMonitoringComponent builds the base and prod with
// components/monitoring added, decodes every resource strictly, and checks
// the scrape, the rules, the ServiceAccount and what the NetworkPolicies
// let through.
func TestKustomizeMonitoringComponent(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	for _, from := range []string{"base", "overlays/prod"} {
		t.Run(from, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			if err := os.CopyFS(filepath.Join(tmp, "k8s"), os.DirFS(filepath.Join(root, "k8s"))); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(tmp, "k8s", "overlays", "monitoring-check")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../" + from +
				"\ncomponents:\n  - ../../components/monitoring\n"
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			r := build(t, dir)
			checkCommon(t, root, r)
			checkMonitoring(t, root, r)
		})
	}
}

func checkMonitoring(t *testing.T, root string, r *rendered) {
	t.Helper()
	// The ServiceAccount: no token, used by both pods.
	sa := r.serviceAccounts["hookline"]
	if sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount hookline: %+v, want one with automountServiceAccountToken: false", sa)
	}
	pods := map[string]labels.Set{}
	for _, name := range []string{"hookline-producer", "hookline-deliverer"} {
		spec := r.deployments[name].Spec.Template.Spec
		if spec.ServiceAccountName != "hookline" || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: serviceAccountName %q, automountServiceAccountToken %s, want hookline without a token", name, spec.ServiceAccountName, boolPtr(spec.AutomountServiceAccountToken))
		}
		pods[name] = labels.Set(r.deployments[name].Spec.Template.Labels)
	}

	// The PodMonitor scrapes both pods on their http port, job = app name.
	pm := r.podMonitors["hookline"]
	if pm == nil {
		t.Fatalf("no PodMonitor hookline in %v", r.kindsAndName)
	}
	if pm.Spec.JobLabel != "app.kubernetes.io/name" {
		t.Errorf("PodMonitor jobLabel %q: the rules select job=hookline-producer/deliverer", pm.Spec.JobLabel)
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range pods {
		if !sel.Matches(l) {
			t.Errorf("PodMonitor does not select %s (%v)", name, l)
		}
		if l["app.kubernetes.io/name"] != name {
			t.Errorf("%s: app.kubernetes.io/name %q, the job label would differ", name, l["app.kubernetes.io/name"])
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port == nil || *pm.Spec.PodMetricsEndpoints[0].Port != "http" ||
		pm.Spec.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want port http, /metrics", pm.Spec.PodMetricsEndpoints)
	}
	for _, name := range []string{"hookline-producer", "hookline-deliverer"} {
		if !slices.ContainsFunc(r.deployments[name].Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" }) {
			t.Errorf("%s has no port http to scrape", name)
		}
	}

	// The PrometheusRule holds alerts.yaml's rules.
	pr := r.promRules["hookline"]
	if pr == nil {
		t.Fatalf("no PrometheusRule hookline in %v", r.kindsAndName)
	}
	want := loadRules(t, root)
	if len(pr.Spec.Groups) != len(want.Groups) {
		t.Fatalf("PrometheusRule: %d groups, alerts.yaml %d", len(pr.Spec.Groups), len(want.Groups))
	}
	for i, g := range pr.Spec.Groups {
		wg := want.Groups[i]
		if g.Name != wg.Name || len(g.Rules) != len(wg.Rules) {
			t.Errorf("group %d: %s with %d rules, alerts.yaml %s with %d", i, g.Name, len(g.Rules), wg.Name, len(wg.Rules))
			continue
		}
		for j, rule := range g.Rules {
			wr := wg.Rules[j]
			if rule.Alert != wr.Alert || rule.Record != wr.Record || rule.Expr.String() != wr.Expr ||
				!maps.Equal(rule.Labels, wr.Labels) || !maps.Equal(rule.Annotations, wr.Annotations) {
				t.Errorf("rule %s%s differs from alerts.yaml", wr.Alert, wr.Record)
			}
			if wr.For != 0 && (rule.For == nil || string(*rule.For) != wr.For.String()) {
				t.Errorf("rule %s: for %v, alerts.yaml %s", wr.Alert, rule.For, wr.For)
			}
		}
	}

	// NetworkPolicies: what gets through.
	var pols []*networkingv1.NetworkPolicy
	for _, p := range r.netPols {
		pols = append(pols, p)
	}
	del, prod := pods["hookline-deliverer"], pods["hookline-producer"]
	for name, l := range pods {
		if !slices.ContainsFunc(pols, func(p *networkingv1.NetworkPolicy) bool {
			s, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			return err == nil && s.Matches(l) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
				slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}) {
			t.Errorf("%s: no policy isolates it for ingress and egress (default deny)", name)
		}
	}
	for _, c := range []struct {
		pod  labels.Set
		ip   string
		port int32
		want bool
	}{
		{del, "93.184.215.14", 443, true},
		{del, "93.184.215.14", 80, true},
		{del, "2606:2800:21f:cb07::1", 443, true},
		{del, "93.184.215.14", 8443, false},
		{del, "93.184.215.14", 22, false},
		{del, "10.0.0.7", 443, false},
		{del, "172.20.1.1", 443, false},
		{del, "192.168.1.1", 80, false},
		{del, "169.254.169.254", 80, false},
		{del, "127.0.0.1", 443, false},
		{del, "100.64.0.1", 443, false},
		{del, "fd00::1", 443, false},
		{prod, "93.184.215.14", 443, false},
	} {
		if got := egressToIP(pols, c.pod, c.ip, c.port); got != c.want {
			t.Errorf("%s → %s:%d allowed %v, want %v", c.pod["app.kubernetes.io/name"], c.ip, c.port, got, c.want)
		}
	}
	nats := labels.Set{"app.kubernetes.io/name": "nats"}
	redis := labels.Set{"app.kubernetes.io/name": "redis"}
	other := labels.Set{"app.kubernetes.io/name": "something"}
	prom := labels.Set{"app.kubernetes.io/name": "prometheus"}
	for _, c := range []struct {
		from, to labels.Set
		port     int32
		want     bool
	}{
		{del, nats, 4222, true}, {del, redis, 6379, true}, {prod, nats, 4222, true}, {prod, redis, 6379, true},
		{del, nats, 8222, false}, {del, other, 4222, false}, {prod, other, 80, false},
	} {
		if got := egressToPod(pols, c.from, c.to, c.port); got != c.want {
			t.Errorf("egress %s → %s:%d allowed %v, want %v", c.from["app.kubernetes.io/name"], c.to["app.kubernetes.io/name"], c.port, got, c.want)
		}
	}
	for _, c := range []struct {
		from, to labels.Set
		port     int32
		want     bool
	}{
		{other, prod, 8080, true}, {prom, del, 8080, true},
		{other, del, 8080, false}, {other, prod, 9090, false}, {prom, del, 9090, false},
	} {
		if got := ingressFromPod(pols, c.from, c.to, c.port); got != c.want {
			t.Errorf("ingress %s → %s:%d allowed %v, want %v", c.from["app.kubernetes.io/name"], c.to["app.kubernetes.io/name"], c.port, got, c.want)
		}
	}
}

func boolPtr(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}

func selects(p *networkingv1.NetworkPolicy, pod labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
	return err == nil && s.Matches(pod)
}

func portAllowed(ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if (p.Protocol == nil || *p.Protocol == "TCP") && (p.Port == nil || p.Port.IntVal == port) {
			return true
		}
	}
	return false
}

func peerSelectsPod(peer networkingv1.NetworkPolicyPeer, pod labels.Set) bool {
	if peer.PodSelector == nil || peer.IPBlock != nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
	// A namespaceSelector only widens to other namespaces: these tests
	// take every peer pod to be in a namespace it selects.
	return err == nil && s.Matches(pod)
}

// egressToIP: some policy selecting pod allows TCP to ip:port through an
// ipBlock (every policy is additive).
func egressToIP(pols []*networkingv1.NetworkPolicy, pod labels.Set, ip string, port int32) bool {
	addr := netip.MustParseAddr(ip)
	for _, p := range pols {
		if !selects(p, pod) {
			continue
		}
		for _, rule := range p.Spec.Egress {
			if !portAllowed(rule.Ports, port) {
				continue
			}
			if len(rule.To) == 0 {
				return true
			}
			for _, peer := range rule.To {
				if peer.IPBlock == nil || !netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(addr) {
					continue
				}
				excluded := false
				for _, e := range peer.IPBlock.Except {
					excluded = excluded || netip.MustParsePrefix(e).Contains(addr)
				}
				if !excluded {
					return true
				}
			}
		}
	}
	return false
}

func egressToPod(pols []*networkingv1.NetworkPolicy, from, to labels.Set, port int32) bool {
	for _, p := range pols {
		if !selects(p, from) {
			continue
		}
		for _, rule := range p.Spec.Egress {
			if portAllowed(rule.Ports, port) && (len(rule.To) == 0 || slices.ContainsFunc(rule.To, func(peer networkingv1.NetworkPolicyPeer) bool { return peerSelectsPod(peer, to) })) {
				return true
			}
		}
	}
	return false
}

func ingressFromPod(pols []*networkingv1.NetworkPolicy, from, to labels.Set, port int32) bool {
	for _, p := range pols {
		if !selects(p, to) {
			continue
		}
		for _, rule := range p.Spec.Ingress {
			if portAllowed(rule.Ports, port) && (len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(peer networkingv1.NetworkPolicyPeer) bool { return peerSelectsPod(peer, from) })) {
				return true
			}
		}
	}
	return false
}

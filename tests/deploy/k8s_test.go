package deploy_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is the output of `kustomize build`, decoded strictly: a field
// the Kubernetes API does not know (a typo like readinesProbe) fails.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	scaledObjs  map[string]*scaledObject
	// components/monitoring
	podMonitors     map[string]*monitoringv1.PodMonitor
	promRules       map[string]*monitoringv1.PrometheusRule
	netPols         map[string]*networkingv1.NetworkPolicy
	serviceAccounts map[string]*corev1.ServiceAccount
	namespaces      map[string]bool // metadata.namespace of every resource
	kindsAndName    []string
}

// scaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject these
// tests read; decoding is strict, so every field used must be declared.
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval int32  `json:"pollingInterval"`
		CooldownPeriod  int32  `json:"cooldownPeriod"`
		Advanced        struct {
			HorizontalPodAutoscalerConfig struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// build runs kustomize (the Go API kubectl embeds) on dir.
func build(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		scaledObjs:  map[string]*scaledObject{},
		namespaces:  map[string]bool{},

		podMonitors:     map[string]*monitoringv1.PodMonitor{},
		promRules:       map[string]*monitoringv1.PrometheusRule{},
		netPols:         map[string]*networkingv1.NetworkPolicy{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
	}
	for _, res := range resources.Resources() {
		b, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := res.GetKind(), res.GetName()
		r.kindsAndName = append(r.kindsAndName, kind+"/"+name)
		r.namespaces[res.GetNamespace()] = true
		var target any
		switch kind {
		case "Deployment":
			d := &appsv1.Deployment{}
			r.deployments[name], target = d, d
		case "Service":
			s := &corev1.Service{}
			r.services[name], target = s, s
		case "ConfigMap":
			c := &corev1.ConfigMap{}
			r.configMaps[name], target = c, c
		case "PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			r.pdbs[name], target = p, p
		case "HorizontalPodAutoscaler":
			h := &autoscalingv2.HorizontalPodAutoscaler{}
			r.hpas[name], target = h, h
		case "ScaledObject":
			s := &scaledObject{}
			r.scaledObjs[name], target = s, s
		case "PodMonitor":
			p := &monitoringv1.PodMonitor{}
			r.podMonitors[name], target = p, p
		case "PrometheusRule":
			p := &monitoringv1.PrometheusRule{}
			r.promRules[name], target = p, p
		case "NetworkPolicy":
			n := &networkingv1.NetworkPolicy{}
			r.netPols[name], target = n, n
		case "ServiceAccount":
			s := &corev1.ServiceAccount{}
			r.serviceAccounts[name], target = s, s
		default:
			t.Fatalf("%s: unexpected kind %s/%s (a Secret? secrets never live in this tree)", dir, kind, name)
		}
		if err := yaml.UnmarshalStrict(b, target); err != nil {
			t.Fatalf("%s: %s/%s: %v", dir, kind, name, err)
		}
	}
	return r
}

// overlayExpectations: what each overlay must produce. A new overlay needs
// a row here, so that it is checked too.
var overlayExpectations = map[string]struct {
	namespace        string
	producerReplicas int32
	// delivererReplicas is the Deployment's count; 0 when an autoscaler
	// owns it, then minScale is the autoscaler's floor.
	delivererReplicas int32
	minScale          int32
	streamReplicas    string
	resourcesLimited  bool
	pdb               bool
	natsCreds         bool
}{
	"dev":  {namespace: "hookline-dev", producerReplicas: 1, delivererReplicas: 1, streamReplicas: "1"},
	"prod": {namespace: "hookline", producerReplicas: 3, minScale: 3, streamReplicas: "3", resourcesLimited: true, pdb: true, natsCreds: true},
}

func TestKustomizeBase(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	r := build(t, filepath.Join(root, "k8s", "base"))
	checkCommon(t, root, r)
	if len(r.namespaces) != 1 || !r.namespaces[""] {
		t.Errorf("base sets namespaces %v: it must be namespace-less", r.namespaces)
	}
}

func TestKustomizeOverlays(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dirs, err := os.ReadDir(filepath.Join(root, "k8s", "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		name := d.Name()
		found[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := overlayExpectations[name]
			if !ok {
				t.Fatalf("overlay %s has no expectations in this test: add a row to overlayExpectations", name)
			}
			r := build(t, filepath.Join(root, "k8s", "overlays", name))
			checkCommon(t, root, r)
			checkOverlay(t, r, want.namespace, want.producerReplicas, want.delivererReplicas, want.minScale, want.streamReplicas)
			if want.resourcesLimited {
				checkResources(t, r)
			}
			if want.pdb {
				checkPDBs(t, r)
			}
			if want.natsCreds {
				checkNATSCreds(t, r)
				checkRedisACL(t, r)
			}
			if name == "prod" {
				checkKEDA(t, r)
				env := containerEnv(t, r, r.deployments["hookline-producer"].Spec.Template.Spec.Containers[0])
				if env["HOOKLINE_HTTPS_ONLY"].value != "true" {
					t.Errorf("prod accepts http:// subscription URLs (HOOKLINE_HTTPS_ONLY=%q)", env["HOOKLINE_HTTPS_ONLY"].value)
				}
			}
		})
	}
	for name := range overlayExpectations {
		if !found[name] {
			t.Errorf("overlay %s is missing", name)
		}
	}
}

// TestKustomizeProdVariants builds prod with the alternatives its
// comments offer an operator: each must build and hold what prod holds.
func TestKustomizeProdVariants(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tests := []struct {
		name, from, to string
		check          func(t *testing.T, r *rendered)
	}{
		{
			name: "hpa instead of keda", from: "../../components/keda", to: "../../components/hpa",
			check: func(t *testing.T, r *rendered) {
				if len(r.scaledObjs) != 0 || len(r.hpas) != 1 {
					t.Errorf("%d ScaledObjects, %d HPAs: want the HPA alone (two autoscalers would fight)", len(r.scaledObjs), len(r.hpas))
				}
			},
		},
		{
			name: "nats users instead of creds", from: "../../components/nats-creds", to: "../../components/nats-users",
			check: func(t *testing.T, r *rendered) {
				init := topologyInit(t, r)
				ienv := containerEnv(t, r, init)
				if ienv["HOOKLINE_NATS_USER"].value != "admin" || ienv["HOOKLINE_NATS_PASSWORD"].source != "secret" {
					t.Errorf("topology step: NATS user %+v password %+v, want admin from a Secret", ienv["HOOKLINE_NATS_USER"], ienv["HOOKLINE_NATS_PASSWORD"])
				}
				for _, svc := range []string{"producer", "deliverer"} {
					d := r.deployments["hookline-"+svc]
					env := containerEnv(t, r, d.Spec.Template.Spec.Containers[0])
					if env["HOOKLINE_NATS_USER"].value != svc || env["HOOKLINE_NATS_PASSWORD"].source != "secret" {
						t.Errorf("%s: NATS user %+v password %+v", svc, env["HOOKLINE_NATS_USER"], env["HOOKLINE_NATS_PASSWORD"])
					}
					if _, ok := env["HOOKLINE_NATS_CREDS"]; ok {
						t.Errorf("%s: both a creds file and a password", svc)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			if err := os.CopyFS(filepath.Join(tmp, "k8s"), os.DirFS(filepath.Join(root, "k8s"))); err != nil {
				t.Fatal(err)
			}
			kpath := filepath.Join(tmp, "k8s", "overlays", "prod", "kustomization.yaml")
			b, err := os.ReadFile(kpath)
			if err != nil {
				t.Fatal(err)
			}
			from, to := "  - "+tt.from+"\n", "  - "+tt.to+"\n"
			if !strings.Contains(string(b), from) || !regexp.MustCompile(`(?m)^\s*#\s*- `+regexp.QuoteMeta(tt.to)+`$`).Match(b) {
				t.Fatalf("prod does not list %q with %q as a commented alternative", tt.from, tt.to)
			}
			if err := os.WriteFile(kpath, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			r := build(t, filepath.Dir(kpath))
			checkCommon(t, root, r)
			checkOverlay(t, r, "hookline", 3, 0, 3, "3")
			checkResources(t, r)
			checkPDBs(t, r)
			tt.check(t, r)
		})
	}
}

// checkCommon holds for the base and every overlay.
func checkCommon(t *testing.T, root string, r *rendered) {
	t.Helper()
	for _, svc := range []string{"producer", "deliverer"} {
		name := "hookline-" + svc
		d := r.deployments[name]
		if d == nil {
			t.Fatalf("no Deployment %s in %v", name, r.kindsAndName)
		}
		checkDeployment(t, root, r, svc, d)
	}

	checkTopologyStep(t, r)

	// The producer's Service reaches the producer's pods on their http port.
	s := r.services["hookline-producer"]
	if s == nil {
		t.Fatalf("no Service hookline-producer in %v", r.kindsAndName)
	}
	pod := r.deployments["hookline-producer"].Spec.Template
	for k, v := range s.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the producer's pods %v", k, v, pod.Labels)
		}
	}
	if len(s.Spec.Selector) == 0 || len(s.Spec.Ports) == 0 || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service: selector %v ports %+v", s.Spec.Selector, s.Spec.Ports)
	}
}

func checkDeployment(t *testing.T, root string, r *rendered, svc string, d *appsv1.Deployment) {
	t.Helper()
	name := d.Name
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	env := containerEnv(t, r, c)
	known := knownEnv(t, root, svc)

	// Selector selects the template.
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels", name, k, v)
		}
	}

	// Every variable is one the service reads; secrets come from Secrets.
	for k, v := range env {
		if strings.HasPrefix(k, "HOOKLINE_") && !known[k] {
			t.Errorf("%s: %s is read by no code of the %s", name, k, svc)
		}
		if secretVars[k] && v.source != "secret" {
			t.Errorf("%s: %s comes from a %s; a secret's value must come from a Secret", name, k, v.source)
		}
		if fileVars[k] && !mountedFromSecret(pod, c, v.value) {
			t.Errorf("%s: %s=%s is not a file mounted from a Secret", name, k, v.value)
		}
	}
	for _, k := range []string{"HOOKLINE_NATS_URL", "HOOKLINE_REDIS_URL", "HOOKLINE_HTTP_ADDR", "HOOKLINE_SHUTDOWN_TIMEOUT", "HOOKLINE_STREAM_REPLICAS"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s: %s is not set", name, k)
		}
	}
	if _, ok := env["HOOKLINE_SECRET_KEY_FILE"]; !ok {
		t.Errorf("%s: signing secrets are not sealed at rest (no HOOKLINE_SECRET_KEY_FILE)", name)
	}

	// Probes on the port the service listens on.
	_, port, err := net.SplitHostPort(env["HOOKLINE_HTTP_ADDR"].value)
	if err != nil {
		t.Fatalf("%s: HOOKLINE_HTTP_ADDR=%q: %v", name, env["HOOKLINE_HTTP_ADDR"].value, err)
	}
	var httpPort string
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = strconv.Itoa(int(p.ContainerPort))
		}
	}
	if httpPort != port {
		t.Errorf("%s: container port http=%s, HOOKLINE_HTTP_ADDR port %s", name, httpPort, port)
	}
	for probe, want := range map[string]struct {
		p    *corev1.Probe
		path string
	}{
		"liveness":  {c.LivenessProbe, "/livez"},
		"readiness": {c.ReadinessProbe, "/readyz"},
	} {
		if want.p == nil || want.p.HTTPGet == nil || want.p.HTTPGet.Path != want.path {
			t.Errorf("%s: %s probe %+v, want GET %s", name, probe, want.p, want.path)
			continue
		}
		if hp := want.p.HTTPGet.Port; hp.String() != "http" && hp.String() != port {
			t.Errorf("%s: %s probe on port %s", name, probe, hp.String())
		}
	}

	// Prometheus scrapes the same port.
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: prometheus annotations %v", name, ann)
	}

	// Non-root, read-only, no capabilities.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", name, psc)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", name, csc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it has no use for", name)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("%s: service links would add HOOKLINE_*-like variables to the environment", name)
	}

	// The pod outlives the service's own shutdown.
	shutdown, err := time.ParseDuration(env["HOOKLINE_SHUTDOWN_TIMEOUT"].value)
	if err != nil {
		t.Fatalf("%s: HOOKLINE_SHUTDOWN_TIMEOUT: %v", name, err)
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if pod.TerminationGracePeriodSeconds == nil ||
		time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= shutdown+preStop {
		t.Errorf("%s: terminationGracePeriodSeconds %v must exceed preStop %s + HOOKLINE_SHUTDOWN_TIMEOUT %s",
			name, pod.TerminationGracePeriodSeconds, preStop, shutdown)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("%s: no cpu/memory requests", name)
	}
}

// envValue is a variable of a container and where its value comes from.
type envValue struct {
	value  string
	source string // "literal", "configmap", "secret", "field"
}

// containerEnv resolves env and envFrom; every ConfigMap referred to must be
// in the output (kustomize renames generated ones with a hash).
func containerEnv(t *testing.T, r *rendered, c corev1.Container) map[string]envValue {
	t.Helper()
	env := map[string]envValue{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := r.configMaps[from.ConfigMapRef.Name]
			if cm == nil {
				t.Fatalf("container %s: envFrom ConfigMap %s is not in the output", c.Name, from.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = envValue{value: v, source: "configmap"}
			}
		case from.SecretRef != nil:
			t.Errorf("container %s: envFrom Secret %s: name each secret variable instead", c.Name, from.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envValue{value: e.Value, source: "literal"}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = envValue{source: "secret"}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			cm := r.configMaps[e.ValueFrom.ConfigMapKeyRef.Name]
			if cm == nil {
				t.Fatalf("container %s: %s from missing ConfigMap %s", c.Name, e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
			}
			env[e.Name] = envValue{value: cm.Data[e.ValueFrom.ConfigMapKeyRef.Key], source: "configmap"}
		default:
			env[e.Name] = envValue{source: "field"}
		}
	}
	return env
}

// mountedFromSecret reports whether path lies in a volume mount backed by a
// Secret.
func mountedFromSecret(pod corev1.PodSpec, c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return true
			}
		}
	}
	return false
}

func checkOverlay(t *testing.T, r *rendered, namespace string, producerReplicas, delivererReplicas, minScale int32, streamReplicas string) {
	t.Helper()
	if len(r.namespaces) != 1 || !r.namespaces[namespace] {
		t.Errorf("namespaces %v, want every resource in %s", r.namespaces, namespace)
	}
	if got := replicas(r.deployments["hookline-producer"]); got != producerReplicas {
		t.Errorf("producer replicas %d, want %d", got, producerReplicas)
	}
	deliverer := r.deployments["hookline-deliverer"]
	if delivererReplicas > 0 {
		if got := replicas(deliverer); got != delivererReplicas {
			t.Errorf("deliverer replicas %d, want %d", got, delivererReplicas)
		}
	} else {
		// An autoscaler owns the count: the Deployment must not carry one
		// that every re-apply would reset it to.
		if deliverer.Spec.Replicas != nil {
			t.Errorf("deliverer has replicas %d although an autoscaler owns them", *deliverer.Spec.Replicas)
		}
		if got := autoscalerFloor(t, r, deliverer.Name); got < minScale {
			t.Errorf("deliverer autoscaler floor %d, want at least %d", got, minScale)
		}
	}
	for _, d := range r.deployments {
		env := containerEnv(t, r, d.Spec.Template.Spec.Containers[0])
		if got := env["HOOKLINE_STREAM_REPLICAS"].value; got != streamReplicas {
			t.Errorf("%s: HOOKLINE_STREAM_REPLICAS=%q, want %q", d.Name, got, streamReplicas)
		}
	}
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1 // the API's default
	}
	return *d.Spec.Replicas
}

// autoscalerFloor is the minimum of the one autoscaler targeting the
// Deployment named target.
func autoscalerFloor(t *testing.T, r *rendered, target string) int32 {
	t.Helper()
	var floors []int32
	for _, so := range r.scaledObjs {
		if so.Spec.ScaleTargetRef.Name == target && so.Spec.MinReplicaCount != nil {
			floors = append(floors, *so.Spec.MinReplicaCount)
		}
	}
	for _, h := range r.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == target && h.Spec.MinReplicas != nil {
			floors = append(floors, *h.Spec.MinReplicas)
		}
	}
	if len(floors) != 1 {
		t.Fatalf("%d autoscalers with a floor target %s, want exactly one", len(floors), target)
	}
	return floors[0]
}

func checkResources(t *testing.T, r *rendered) {
	t.Helper()
	for _, d := range r.deployments {
		res := d.Spec.Template.Spec.Containers[0].Resources
		if res.Requests.Cpu().IsZero() || res.Requests.Memory().IsZero() || res.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v: want cpu and memory requests and a memory limit", d.Name, res)
		}
		if res.Limits.Memory().Cmp(*res.Requests.Memory()) < 0 {
			t.Errorf("%s: memory limit below the request", d.Name)
		}
	}
}

func checkPDBs(t *testing.T, r *rendered) {
	t.Helper()
	for _, d := range r.deployments {
		var covered bool
		for _, p := range r.pdbs {
			sel := p.Spec.Selector
			if sel == nil || len(sel.MatchLabels) == 0 {
				continue
			}
			match := true
			for k, v := range sel.MatchLabels {
				match = match && d.Spec.Template.Labels[k] == v
			}
			if match && (p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", d.Name)
		}
	}
}

func checkNATSCreds(t *testing.T, r *rendered) {
	t.Helper()
	for _, d := range r.deployments {
		env := containerEnv(t, r, d.Spec.Template.Spec.Containers[0])
		if _, ok := env["HOOKLINE_NATS_CREDS"]; !ok {
			t.Errorf("%s: no HOOKLINE_NATS_CREDS", d.Name)
		}
	}
}

// checkRedisACL: each service logs in to Redis as its own ACL user
// (deploy/security/users.acl) with a password from a Secret.
func checkRedisACL(t *testing.T, r *rendered) {
	t.Helper()
	for _, svc := range []string{"producer", "deliverer"} {
		d := r.deployments["hookline-"+svc]
		env := containerEnv(t, r, d.Spec.Template.Spec.Containers[0])
		if env["HOOKLINE_REDIS_USERNAME"].value != svc || env["HOOKLINE_REDIS_PASSWORD"].source != "secret" {
			t.Errorf("%s: Redis user %+v password %+v", svc, env["HOOKLINE_REDIS_USERNAME"], env["HOOKLINE_REDIS_PASSWORD"])
		}
	}
}

// checkKEDA: the deliverer scales on the lag of the consumer that does the
// HTTP work, named as pkg/stream names it.
func checkKEDA(t *testing.T, r *rendered) {
	t.Helper()
	so := r.scaledObjs["hookline-deliverer"]
	if so == nil {
		t.Fatalf("no ScaledObject hookline-deliverer in %v", r.kindsAndName)
	}
	if so.APIVersion != "keda.sh/v1alpha1" || so.Spec.ScaleTargetRef.Name != "hookline-deliverer" {
		t.Errorf("ScaledObject %s targets %q", so.APIVersion, so.Spec.ScaleTargetRef.Name)
	}
	if so.Spec.MaxReplicaCount == nil || so.Spec.MinReplicaCount == nil || *so.Spec.MaxReplicaCount <= *so.Spec.MinReplicaCount {
		t.Errorf("ScaledObject min %v max %v", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	var deliver bool
	for _, tr := range so.Spec.Triggers {
		m := tr.Metadata
		if tr.Type != "nats-jetstream" {
			t.Errorf("trigger type %q", tr.Type)
			continue
		}
		if m["natsServerMonitoringEndpoint"] == "" || m["account"] == "" {
			t.Errorf("trigger %v: needs natsServerMonitoringEndpoint and account", m)
		}
		if lag, err := strconv.Atoi(m["lagThreshold"]); err != nil || lag <= 0 {
			t.Errorf("trigger %v: lagThreshold must be a positive number", m)
		}
		if m["stream"] == stream.Deliveries && m["consumer"] == stream.DeliverConsumer {
			deliver = true
		}
		if fmt.Sprint(m["stream"], "/", m["consumer"]) != stream.Deliveries+"/"+stream.DeliverConsumer &&
			fmt.Sprint(m["stream"], "/", m["consumer"]) != stream.Events+"/"+stream.DispatchConsumer {
			t.Errorf("trigger reads %s/%s, which is no Hookline consumer", m["stream"], m["consumer"])
		}
	}
	if !deliver {
		t.Errorf("no trigger reads consumer %q on stream %s", stream.DeliverConsumer, stream.Deliveries)
	}
}

// topologyInit is the deliverer's init container that ensures the topology.
func topologyInit(t *testing.T, r *rendered) corev1.Container {
	t.Helper()
	pod := r.deployments["hookline-deliverer"].Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "topology" {
		t.Fatalf("deliverer init containers %d, want one named topology (the admin step)", len(pod.InitContainers))
	}
	return pod.InitContainers[0]
}

// checkTopologyStep: the services only check the topology (their NATS
// users cannot change a stream); the deliverer's init container creates it
// with `deliverer topology`, from the same settings as the deliverer, and
// is the only container holding the admin credentials.
func checkTopologyStep(t *testing.T, r *rendered) {
	t.Helper()
	init := topologyInit(t, r)
	d := r.deployments["hookline-deliverer"].Spec.Template.Spec
	main := d.Containers[0]
	if init.Image != main.Image || !slices.Equal(init.Args, []string{"topology"}) {
		t.Errorf("topology step: image %q args %v, want the deliverer's image %q with args [topology]", init.Image, init.Args, main.Image)
	}
	ienv, menv := containerEnv(t, r, init), containerEnv(t, r, main)
	for _, k := range []string{"HOOKLINE_NATS_URL", "HOOKLINE_STREAM_REPLICAS", "HOOKLINE_ACK_WAIT", "HOOKLINE_MAX_ACK_PENDING", "HOOKLINE_EVENTS_MAX_AGE", "HOOKLINE_DUPLICATE_WINDOW", "HOOKLINE_IDEMPOTENCY_WINDOW"} {
		if ienv[k].value != menv[k].value {
			t.Errorf("topology step %s=%q, deliverer %q: the deliverer's check would fail", k, ienv[k].value, menv[k].value)
		}
	}
	if init.SecurityContext == nil || init.SecurityContext.ReadOnlyRootFilesystem == nil || !*init.SecurityContext.ReadOnlyRootFilesystem ||
		init.SecurityContext.Capabilities == nil || !slices.Contains(init.SecurityContext.Capabilities.Drop, "ALL") {
		t.Errorf("topology step: securityContext %+v", init.SecurityContext)
	}
	for _, svc := range []string{"producer", "deliverer"} {
		dep := r.deployments["hookline-"+svc]
		env := containerEnv(t, r, dep.Spec.Template.Spec.Containers[0])
		if v, ok := env["HOOKLINE_TOPOLOGY"]; ok && v.value != "check" {
			t.Errorf("%s: HOOKLINE_TOPOLOGY=%q; the shipped NATS users need check", dep.Name, v.value)
		}
		for _, c := range dep.Spec.Template.Spec.Containers {
			for _, m := range c.VolumeMounts {
				for _, v := range dep.Spec.Template.Spec.Volumes {
					if v.Name == m.Name && v.Secret != nil && strings.Contains(v.Secret.SecretName, "admin") {
						t.Errorf("%s: container %s mounts the admin Secret %s", dep.Name, c.Name, v.Secret.SecretName)
					}
				}
			}
		}
	}
	if _, ok := ienv["HOOKLINE_NATS_CREDS"]; ok {
		pod := corev1.PodSpec{Volumes: d.Volumes}
		var admin bool
		for _, m := range init.VolumeMounts {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.Secret != nil && strings.HasPrefix(ienv["HOOKLINE_NATS_CREDS"].value, m.MountPath) &&
					len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "admin.creds" {
					admin = true
				}
			}
		}
		if !admin {
			t.Errorf("topology step: HOOKLINE_NATS_CREDS=%s is not the admin's creds file", ienv["HOOKLINE_NATS_CREDS"].value)
		}
	}
}

package deploy

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestK8S01 is RELIABILITY.md K8S-01: every overlay, rendered as `kubectl
// kustomize` renders it, decodes strictly, passes Pod Security "restricted"
// and keeps the §1.10 lifecycle rules. testdata/with-migrate is the prod
// overlay with the optional migrate Job enabled; testdata/with-tracing is
// the dev overlay with the optional tracing component.
func TestK8S01(t *testing.T) {
	entries, err := os.ReadDir("k8s/overlays")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("k8s/overlays", e.Name()))
		}
	}
	for _, want := range []string{"k8s/overlays/dev", "k8s/overlays/prod"} {
		if !slices.Contains(dirs, want) {
			t.Fatalf("overlay %s is missing (found %v)", want, dirs)
		}
	}
	dirs = append(dirs, "testdata/with-migrate", "testdata/with-tracing")
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			prod := strings.HasSuffix(dir, "/prod") || strings.HasSuffix(dir, "with-migrate")
			findings, r := check(dir, checkOptions{Prod: prod})
			for _, f := range findings {
				t.Errorf("%s", f)
			}
			if len(r.Deployments) != 5 {
				t.Errorf("%d Deployments, want one per target (customer, ticket, loyalty, survey, gateway)", len(r.Deployments))
			}
			if strings.HasSuffix(dir, "with-migrate") && len(r.Jobs) != 1 {
				t.Errorf("%d Jobs, want the migrate Job", len(r.Jobs))
			}
			t.Logf("%s: %d objects, %d Deployments, %d Jobs, %d NetworkPolicies, %d findings",
				dir, r.Objects, len(r.Deployments), len(r.Jobs), len(r.Policies), len(findings))
		})
	}
}

// TestK8S01BadFixture is the negative control: the same checks on
// testdata/bad must report every break the fixture carries.
func TestK8S01BadFixture(t *testing.T) {
	t.Parallel()
	findings, _ := check("testdata/bad", checkOptions{Prod: true})
	for _, f := range findings {
		t.Logf("reported: %s", f)
	}
	want := []struct{ object, rule, detail string }{
		{"Deployment/bad", ruleStrict, `unknown field "spec.template.spec.containers[0].ports[0].protocl"`},
		{"Deployment/bad", rulePSA, "privileged"},
		{"Deployment/bad", rulePSA, "allowPrivilegeEscalation != false"},
		{"Deployment/bad", rulePSA, "unrestricted capabilities"},
		{"Deployment/bad", rulePSA, "runAsNonRoot != true"},
		{"Deployment/bad", rulePSA, "seccompProfile"},
		{"Deployment/bad container rapport", ruleLiveness, "httpGet /readyz"},
		{"Deployment/bad container rapport", ruleLivenessReady, "/readyz"},
		{"Deployment/bad container rapport", ruleReadiness, "httpGet /readyz"},
		{"Deployment/bad container rapport", ruleStartup, "no startupProbe"},
		{"Deployment/bad", ruleSAToken, "not false"},
		{"Deployment/bad container rapport", ruleReadOnlyRoot, "not true"},
		{"Deployment/bad container rapport", ruleMemoryLimit, "no memory limit"},
		{"Deployment/bad container rapport", ruleGOMEMLIMIT, "no GOMEMLIMIT"},
		{"Deployment/bad container rapport", ruleGrace, "terminationGracePeriodSeconds 10"},
		{"Deployment/bad container rapport", ruleNATSReplicas, "want 3 in prod"},
		{"Deployment/bad", rulePDB, "selected by 0"},
		{"Deployment/bad", ruleZoneSpread, "topology.kubernetes.io/zone"},
		{"Deployment/bad", ruleReplicas, "replicas 1"},
		{"Deployment/bad", ruleImage, `"rapport:latest" is not pinned`},
		{"Deployment/bad-memlimit container rapport", ruleGOMEMLIMIT, "divisor 1Mi"},
		{"Deployment/bad-memlimit container rapport", ruleLiveness, `service "", want "liveness"`},
		{"Deployment/bad-memlimit container rapport", ruleLivenessReady, "readiness status"},
		{"Deployment/bad-memlimit container rapport", ruleReadiness, `service "liveness", want ""`},
		{"Deployment/bad-memlimit container rapport", ruleProbePort, "livenessProbe grpc port 9090"},
		{"Deployment/bad-memlimit", ruleConfigRef, `"rapport-config" is not rendered`},
		{"Deployment/bad-memlimit", rulePDB, "want maxUnavailable: 1"},
		{"Deployment/bad container rapport", ruleDatabaseURL, "no RAPPORT_DATABASE_URL"},
		{"Deployment/bad-memlimit container rapport", ruleDatabaseURL, "not from a secretKeyRef"},
		{"Service/bad-selector", ruleServiceSel, "matches no Deployment"},
		{"Service/bad-port-type", ruleDecode, "cannot unmarshal string"},
		{"Secret/rapport-database", ruleNoSecrets, "Secret is rendered"},
		{"Widget/bad-kind", ruleUnknownKind, "example.com/v1"},
		{"NetworkPolicy/*", ruleDefaultDeny, "no default-deny"},
	}
	for _, w := range want {
		if !slices.ContainsFunc(findings, func(f finding) bool {
			return f.Object == w.object && f.Rule == w.rule && strings.Contains(f.Detail, w.detail)
		}) {
			t.Errorf("not reported: %s: %s: …%s…", w.object, w.rule, w.detail)
		}
	}
}

// TestK8S01NetworkFlows: with the default deny, exactly Rapport's flows are
// open, in every overlay.
func TestK8S01NetworkFlows(t *testing.T) {
	for _, dir := range []string{"k8s/overlays/dev", "k8s/overlays/prod", "testdata/with-migrate", "testdata/with-tracing"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			findings, r := check(dir, checkOptions{})
			if len(findings) > 0 {
				t.Fatalf("%s does not pass K8S-01: %v", dir, findings)
			}
			// The tracing component must reach every target; otherwise the
			// collector flows below would be checked only as closed.
			if strings.HasSuffix(dir, "with-tracing") {
				for _, d := range r.Deployments {
					if _, ok := otlpPort(r, d.Namespace, &d.Spec.Template.Spec.Containers[0]); !ok {
						t.Errorf("Deployment/%s: OTEL_EXPORTER_OTLP_ENDPOINT not set with the tracing component", d.Name)
					}
				}
			}
			for _, f := range networkFlows(r) {
				if got := allowed(r.Policies, f.src, f.dst, f.port, f.proto); got != f.want {
					t.Errorf("%s → %s:%d/%s allowed=%v, want %v", f.src.Name, f.dst.Name, f.port, f.proto, got, f.want)
				}
			}
		})
	}
}

// TestK8S01NetworkFlowsNegative: the evaluator can fail. Without the default
// deny a stray pod is open to anyone; without allow-grpc-internal the
// gateway cannot reach the customer service; without allow-postgres-egress
// it cannot reach Postgres; without allow-otlp-egress no span leaves.
func TestK8S01NetworkFlowsNegative(t *testing.T) {
	t.Parallel()
	_, r := check("k8s/overlays/prod", checkOptions{Prod: true})
	pods := podEndpoints(r)
	internet := endpoint{Name: "internet", External: true}
	without := func(name string) []*networkingv1.NetworkPolicy {
		return slices.DeleteFunc(slices.Clone(r.Policies), func(p *networkingv1.NetworkPolicy) bool { return p.Name == name })
	}
	if !allowed(r.Policies, pods["gateway"], pods["customer"], 9090, corev1.ProtocolTCP) {
		t.Fatal("gateway → customer:9090 denied with every policy")
	}
	if allowed(without("allow-grpc-internal"), pods["gateway"], pods["customer"], 9090, corev1.ProtocolTCP) {
		t.Error("gateway → customer:9090 still allowed without allow-grpc-internal")
	}
	if allowed(r.Policies, internet, pods["customer"], 9090, corev1.ProtocolTCP) {
		t.Fatal("internet → customer:9090 allowed with every policy")
	}
	postgres := endpoint{Name: "postgres", External: true}
	if !allowed(r.Policies, pods["gateway"], postgres, 5432, corev1.ProtocolTCP) {
		t.Fatal("gateway → postgres:5432 denied with every policy")
	}
	if allowed(without("allow-postgres-egress"), pods["gateway"], postgres, 5432, corev1.ProtocolTCP) {
		t.Error("gateway → postgres:5432 still allowed without allow-postgres-egress")
	}
	// Rapport's pods are each selected by some allow; the default deny is
	// what closes any other pod in the namespace.
	stray := endpoint{Name: "stray", Namespace: pods["gateway"].Namespace, Labels: map[string]string{"app": "debug"}}
	if allowed(r.Policies, internet, stray, 80, corev1.ProtocolTCP) {
		t.Fatal("internet → stray pod:80 allowed with every policy")
	}
	if !allowed(without("default-deny"), internet, stray, 80, corev1.ProtocolTCP) {
		t.Error("internet → stray pod:80 still denied without default-deny")
	}

	_, rt := check("testdata/with-tracing", checkOptions{})
	tp := podEndpoints(rt)
	collector := endpoint{Name: "otel-collector", External: true}
	if !allowed(rt.Policies, tp["gateway"], collector, 4317, corev1.ProtocolTCP) {
		t.Fatal("with tracing: gateway → collector:4317 denied with every policy")
	}
	withoutOTLP := slices.DeleteFunc(slices.Clone(rt.Policies), func(p *networkingv1.NetworkPolicy) bool { return p.Name == "allow-otlp-egress" })
	if allowed(withoutOTLP, tp["gateway"], collector, 4317, corev1.ProtocolTCP) {
		t.Error("with tracing: gateway → collector:4317 still allowed without allow-otlp-egress")
	}
}

type flow struct {
	src, dst endpoint
	port     int32
	proto    corev1.Protocol
	want     bool
}

// networkFlows lists the flows that must be open and some that must not.
func networkFlows(r *rendered) []flow {
	pods := podEndpoints(r)
	ns := pods["gateway"].Namespace
	internet := endpoint{Name: "internet", External: true}
	postgres := endpoint{Name: "postgres", External: true}
	idp := endpoint{Name: "identity-provider", External: true}
	// An OTLP collector in another namespace; pod-to-pod, so both the
	// egress and the (unrestricted) ingress side are evaluated.
	collector := endpoint{Name: "otel-collector", Namespace: "observability",
		Labels: map[string]string{"app.kubernetes.io/name": "opentelemetry-collector"}}
	ingress := endpoint{Name: "ingress-controller", Namespace: "ingress-nginx",
		Labels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
	monitoring := endpoint{Name: "prometheus", Namespace: "monitoring",
		Labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
	otherNS := endpoint{Name: "other-namespace-pod", Namespace: "other",
		Labels: map[string]string{"app.kubernetes.io/name": "customer"}}
	dns := endpoint{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}}
	nats := func(i int) endpoint {
		return endpoint{Name: fmt.Sprintf("nats-%d", i), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats"}}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	services := []string{"customer", "ticket", "loyalty", "survey"}

	fs := []flow{
		{internet, pods["gateway"], 8080, tcp, true},
		{ingress, pods["gateway"], 8080, tcp, true},
		{internet, pods["gateway"], 9090, tcp, false},
		{pods["customer"], pods["gateway"], 9090, tcp, false},
		{pods["gateway"], nats(0), 4222, tcp, false},
		{pods["gateway"], internet, 4222, tcp, false},
		{nats(0), nats(1), 6222, tcp, true},
		{nats(0), idp, 443, tcp, false},
		{monitoring, nats(0), 8222, tcp, true},
		{internet, nats(0), 4222, tcp, false},
		{pods["customer"], internet, 25, tcp, false},
		// Outreach email goes to a submission port; only customer sends.
		{pods["customer"], internet, 587, tcp, true},
		{pods["customer"], internet, 465, tcp, true},
		{pods["ticket"], internet, 587, tcp, false},
		{pods["gateway"], internet, 465, tcp, false},
	}
	for _, name := range []string{"gateway", "customer", "ticket", "loyalty", "survey"} {
		p := pods[name]
		fs = append(fs,
			flow{p, dns, 53, udp, true},
			flow{p, dns, 53, tcp, true},
			flow{p, idp, 443, tcp, true},
			// Every process verifies API keys against the "access" schema.
			flow{p, postgres, 5432, tcp, true},
			flow{monitoring, p, 8080, tcp, true},
			flow{otherNS, p, 9090, tcp, false},
		)
		// Spans reach the collector exactly when an endpoint is configured
		// (the tracing component); the default deny closes it otherwise.
		port, on := otlpPort(r, p.Namespace, deploymentContainer(r, name))
		if !on {
			port = 4317
		}
		fs = append(fs, flow{p, collector, port, tcp, on})
	}
	for _, name := range services {
		p := pods[name]
		fs = append(fs,
			flow{pods["gateway"], p, 9090, tcp, true},
			flow{p, nats(0), 4222, tcp, true},
			flow{internet, p, 9090, tcp, false},
			flow{internet, p, 8080, tcp, false},
		)
		for _, other := range services {
			if other != name {
				fs = append(fs, flow{pods[other], p, 9090, tcp, true})
			}
		}
	}
	if m, ok := pods["rapport-migrate"]; ok {
		fs = append(fs,
			flow{m, postgres, 5432, tcp, true},
			flow{m, dns, 53, udp, true},
			flow{m, nats(0), 4222, tcp, false},
			flow{m, collector, 4317, tcp, false},
			flow{internet, m, 8080, tcp, false},
		)
	}
	return fs
}

// deploymentContainer is the rapport container of Deployment name.
func deploymentContainer(r *rendered, name string) *corev1.Container {
	for _, d := range r.Deployments {
		if d.Name == name {
			return &d.Spec.Template.Spec.Containers[0]
		}
	}
	return &corev1.Container{}
}

// otlpPort is the port of the container's OTEL_EXPORTER_OTLP_ENDPOINT (4317
// when the URL names none), and whether one is set.
func otlpPort(r *rendered, ns string, c *corev1.Container) (int32, bool) {
	v := r.env(ns, c)["OTEL_EXPORTER_OTLP_ENDPOINT"].value
	if v == "" {
		return 0, false
	}
	u, err := url.Parse(v)
	if err != nil {
		return 0, false
	}
	if n, err := strconv.ParseInt(u.Port(), 10, 32); err == nil {
		return int32(n), true
	}
	return 4317, true
}

// TestNATSValues checks deploy/k8s/nats/nats-values.yaml against
// RELIABILITY.md §1.3: 3 nodes, JetStream file storage, sync_interval
// always, server ≥ 2.10.23, spread across zones. The mutated copies are its
// negative control.
func TestNATSValues(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("k8s/nats/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(data, &values); err != nil {
		t.Fatal(err)
	}
	for _, f := range natsValuesFindings(values) {
		t.Errorf("nats-values.yaml: %s", f)
	}

	bad := []struct {
		path  []string
		value any
		want  string
	}{
		{[]string{"config", "cluster", "replicas"}, 1.0, "cluster replicas"},
		{[]string{"config", "cluster", "enabled"}, false, "cluster is not enabled"},
		{[]string{"config", "jetstream", "fileStore", "enabled"}, false, "file storage"},
		{[]string{"config", "jetstream", "merge", "sync_interval"}, "2m", "sync_interval"},
		{[]string{"container", "image", "tag"}, "2.10.22-alpine", "older than 2.10.23"},
		{[]string{"podTemplate", "topologySpreadConstraints"}, map[string]any{}, "zone"},
	}
	for _, b := range bad {
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		set(v, b.path, b.value)
		fs := natsValuesFindings(v)
		if !slices.ContainsFunc(fs, func(f string) bool { return strings.Contains(f, b.want) }) {
			t.Errorf("%s=%v: not reported (%q expected, got %v)", strings.Join(b.path, "."), b.value, b.want, fs)
		}
	}
}

func natsValuesFindings(v map[string]any) []string {
	var out []string
	if get(v, "config", "cluster", "enabled") != true {
		out = append(out, "cluster is not enabled")
	}
	if get(v, "config", "cluster", "replicas") != 3.0 {
		out = append(out, fmt.Sprintf("cluster replicas %v, want 3", get(v, "config", "cluster", "replicas")))
	}
	if get(v, "config", "jetstream", "enabled") != true {
		out = append(out, "jetstream is not enabled")
	}
	if get(v, "config", "jetstream", "fileStore", "enabled") != true {
		out = append(out, "jetstream file storage is not enabled")
	}
	if get(v, "config", "jetstream", "memoryStore", "enabled") == true {
		out = append(out, "jetstream memory storage is enabled")
	}
	if s := get(v, "config", "jetstream", "merge", "sync_interval"); s != "always" {
		out = append(out, fmt.Sprintf("jetstream sync_interval %v, want always", s))
	}
	tag, _ := get(v, "container", "image", "tag").(string)
	if !versionAtLeast(tag, 2, 10, 23) {
		out = append(out, fmt.Sprintf("image tag %q is older than 2.10.23 or unpinned", tag))
	}
	if get(v, "podTemplate", "topologySpreadConstraints", "topology.kubernetes.io/zone") == nil {
		out = append(out, "no topology spread across zones")
	}
	return out
}

// versionAtLeast compares "2.14.2-alpine" and the like.
func versionAtLeast(tag string, want ...int) bool {
	core, _, _ := strings.Cut(strings.TrimPrefix(tag, "v"), "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return false
		}
		if n != want[i] {
			return n > want[i]
		}
	}
	return true
}

func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func set(v map[string]any, path []string, value any) {
	for _, k := range path[:len(path)-1] {
		v = v[k].(map[string]any)
	}
	v[path[len(path)-1]] = value
}

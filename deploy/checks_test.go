package deploy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Rule ids, one per kind of finding. The negative control asserts on them.
const (
	ruleRender        = "render"            // kustomize failed
	ruleDecode        = "decode"            // not a valid object of its kind
	ruleStrict        = "strict-decode"     // unknown or duplicate field
	ruleUnknownKind   = "unknown-kind"      // a kind outside the scheme
	rulePSA           = "pod-security"      // Pod Security "restricted"
	ruleLiveness      = "liveness-grpc"     // liveness is gRPC service "liveness"
	ruleLivenessReady = "liveness-on-ready" // liveness probes the readiness path
	ruleReadiness     = "readiness-grpc"    // readiness is gRPC service ""
	ruleStartup       = "startup-probe"     // a startupProbe exists
	ruleProbePort     = "probe-port"        // gRPC probes target a declared port
	ruleSAToken       = "sa-token"          // automountServiceAccountToken: false
	ruleReadOnlyRoot  = "read-only-root"    // readOnlyRootFilesystem: true
	ruleMemoryLimit   = "memory-limit"      // requests and a memory limit
	ruleGOMEMLIMIT    = "gomemlimit"        // GOMEMLIMIT from the memory limit
	rulePDB           = "pdb"               // a PDB maxUnavailable: 1 selects it
	ruleGrace         = "grace-period"      // grace > shutdown delay + grace
	ruleZoneSpread    = "zone-spread"       // topology spread across zones
	ruleReplicas      = "replicas"          // prod: ≥ 2 replicas
	ruleNATSReplicas  = "nats-replicas"     // prod: RAPPORT_NATS_REPLICAS=3
	ruleImage         = "image"             // one pinned image everywhere
	ruleConfigRef     = "configmap-ref"     // envFrom names a rendered ConfigMap
	ruleDatabaseURL   = "database-url"      // RAPPORT_DATABASE_URL from a Secret
	ruleDefaultDeny   = "default-deny"      // a default-deny NetworkPolicy
	ruleNoSecrets     = "no-secrets"        // no Secret values committed
	ruleServiceSel    = "service-selector"  // a Service selects pods and ports
	ruleNamespacePSA  = "namespace-psa"     // a rendered Namespace enforces restricted
)

// finding is one broken rule on one object.
type finding struct {
	Object string // Kind/name
	Rule   string
	Detail string
}

func (f finding) String() string { return f.Object + ": " + f.Rule + ": " + f.Detail }

// checkOptions select the rules that depend on the overlay.
type checkOptions struct {
	// Prod requires ≥ 2 replicas and RAPPORT_NATS_REPLICAS=3.
	Prod bool
}

// rendered is one kustomization, built and decoded.
type rendered struct {
	Deployments []*appsv1.Deployment
	Jobs        []*batchv1.Job
	PDBs        []*policyv1.PodDisruptionBudget
	HPAs        []*autoscalingv2.HorizontalPodAutoscaler
	Services    []*corev1.Service
	ConfigMaps  []*corev1.ConfigMap
	Policies    []*networkingv1.NetworkPolicy
	Namespaces  []*corev1.Namespace
	Objects     int

	findings []finding
}

func (r *rendered) fail(obj, rule, format string, args ...any) {
	r.findings = append(r.findings, finding{Object: obj, Rule: rule, Detail: fmt.Sprintf(format, args...)})
}

// scheme holds the API groups Rapport's manifests may use; anything else is
// an unknown kind (a CRD needs its types added here, or an explicit skip).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(appsv1.AddToScheme(s))
	utilruntime.Must(batchv1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(policyv1.AddToScheme(s))
	utilruntime.Must(autoscalingv2.AddToScheme(s))
	return s
}()

var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// render builds the kustomization in dir from disk, as `kubectl kustomize`
// does, and decodes every resource strictly.
func render(dir string) *rendered {
	r := &rendered{}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		r.fail(dir, ruleRender, "%v", err)
		return r
	}
	for _, res := range m.Resources() {
		r.Objects++
		name := res.GetKind() + "/" + res.GetName()
		y, err := res.AsYAML()
		if err != nil {
			r.fail(name, ruleRender, "%v", err)
			continue
		}
		obj, _, err := strictDecoder.Decode(y, nil, nil)
		switch {
		case err == nil:
		case runtime.IsNotRegisteredError(err):
			r.fail(name, ruleUnknownKind, "%s is not in the scheme (core, apps, batch, networking, policy, autoscaling/v2)", res.GetApiVersion())
			continue
		case runtime.IsStrictDecodingError(err) && obj != nil:
			r.fail(name, ruleStrict, "%v", err)
		default:
			r.fail(name, ruleDecode, "%v", err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.Deployments = append(r.Deployments, o)
		case *batchv1.Job:
			r.Jobs = append(r.Jobs, o)
		case *policyv1.PodDisruptionBudget:
			r.PDBs = append(r.PDBs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.HPAs = append(r.HPAs, o)
		case *corev1.Service:
			r.Services = append(r.Services, o)
		case *corev1.ConfigMap:
			r.ConfigMaps = append(r.ConfigMaps, o)
		case *networkingv1.NetworkPolicy:
			r.Policies = append(r.Policies, o)
		case *corev1.Namespace:
			r.Namespaces = append(r.Namespaces, o)
		case *corev1.Secret:
			r.fail(name, ruleNoSecrets, "a Secret is rendered; reference one the operator creates instead")
		}
	}
	return r
}

var psaEvaluator = func() psapolicy.Evaluator {
	e, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	utilruntime.Must(err)
	return e
}()

// check renders dir and applies every rule; it returns what broke.
func check(dir string, opts checkOptions) ([]finding, *rendered) {
	r := render(dir)
	for _, d := range r.Deployments {
		r.checkPodSecurity("Deployment/"+d.Name, &d.Spec.Template)
		r.checkDeployment(d, opts)
	}
	for _, j := range r.Jobs {
		r.checkPodSecurity("Job/"+j.Name, &j.Spec.Template)
		r.checkEnvFrom("Job/"+j.Name, j.Namespace, j.Spec.Template.Spec.Containers)
		r.checkDatabaseURL("Job/"+j.Name, j.Namespace, j.Spec.Template.Spec.Containers)
	}
	r.checkImages()
	r.checkDefaultDeny()
	r.checkServices()
	for _, ns := range r.Namespaces {
		if ns.Labels[psaapi.EnforceLevelLabel] != string(psaapi.LevelRestricted) {
			r.fail("Namespace/"+ns.Name, ruleNamespacePSA, "label %s=%q, want restricted",
				psaapi.EnforceLevelLabel, ns.Labels[psaapi.EnforceLevelLabel])
		}
	}
	return r.findings, r
}

// checkPodSecurity runs the admission controller's own checks, offline.
func (r *rendered) checkPodSecurity(obj string, t *corev1.PodTemplateSpec) {
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, res := range psaEvaluator.EvaluatePod(lv, &t.ObjectMeta, &t.Spec) {
		if !res.Allowed {
			r.fail(obj, rulePSA, "%s (%s)", res.ForbiddenReason, res.ForbiddenDetail)
		}
	}
}

func (r *rendered) checkDeployment(d *appsv1.Deployment, opts checkOptions) {
	obj := "Deployment/" + d.Name
	spec := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)

	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		r.fail(obj, ruleSAToken, "automountServiceAccountToken is not false")
	}
	for i := range spec.Containers {
		r.checkContainer(obj, d.Namespace, &spec.Containers[i], spec.TerminationGracePeriodSeconds, opts)
	}
	r.checkEnvFrom(obj, d.Namespace, spec.Containers)
	r.checkDatabaseURL(obj, d.Namespace, spec.Containers)

	// A PDB with maxUnavailable 1 selects the pods.
	var pdbs []string
	for _, p := range r.PDBs {
		if p.Namespace != d.Namespace || !selects(p.Spec.Selector, podLabels) {
			continue
		}
		pdbs = append(pdbs, p.Name)
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.String() != "1" || p.Spec.MinAvailable != nil {
			r.fail(obj, rulePDB, "PodDisruptionBudget/%s: want maxUnavailable: 1 and no minAvailable", p.Name)
		}
	}
	if len(pdbs) != 1 {
		r.fail(obj, rulePDB, "selected by %d PodDisruptionBudgets %v, want exactly 1", len(pdbs), pdbs)
	}

	// Spread across zones, counting its own pods.
	zone := false
	for _, c := range spec.TopologySpreadConstraints {
		if c.TopologyKey == "topology.kubernetes.io/zone" && c.MaxSkew >= 1 && selects(c.LabelSelector, podLabels) {
			zone = true
		}
	}
	if !zone {
		r.fail(obj, ruleZoneSpread, "no topologySpreadConstraint on topology.kubernetes.io/zone selecting its pods")
	}

	if opts.Prod {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if replicas < 2 {
			r.fail(obj, ruleReplicas, "replicas %d, want ≥ 2 in prod", replicas)
		}
		for _, h := range r.HPAs {
			ref := h.Spec.ScaleTargetRef
			if h.Namespace == d.Namespace && ref.Kind == "Deployment" && ref.Name == d.Name &&
				(h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2) {
				r.fail(obj, ruleReplicas, "HorizontalPodAutoscaler/%s minReplicas below 2", h.Name)
			}
		}
	}
}

func (r *rendered) checkContainer(obj, ns string, c *corev1.Container, gracePtr *int64, opts checkOptions) {
	obj = obj + " container " + c.Name

	// Liveness: the process only, gRPC service "liveness"; never readiness.
	switch lp := c.LivenessProbe; {
	case lp == nil:
		r.fail(obj, ruleLiveness, "no livenessProbe")
	case lp.GRPC == nil:
		r.fail(obj, ruleLiveness, "livenessProbe is %s, want grpc with service \"liveness\"", probeKind(lp))
		if lp.HTTPGet != nil && (strings.Contains(lp.HTTPGet.Path, "ready") || lp.HTTPGet.Path == "/metrics") {
			r.fail(obj, ruleLivenessReady, "livenessProbe requests %s, which follows Postgres and NATS", lp.HTTPGet.Path)
		}
	case lp.GRPC.Service == nil || *lp.GRPC.Service != "liveness":
		r.fail(obj, ruleLiveness, "livenessProbe grpc service %q, want \"liveness\"", deref(lp.GRPC.Service))
		if lp.GRPC.Service == nil || *lp.GRPC.Service == "" {
			r.fail(obj, ruleLivenessReady, "livenessProbe asks gRPC service \"\", the readiness status")
		}
	}

	// Readiness: gRPC, the overall ("") status.
	switch rp := c.ReadinessProbe; {
	case rp == nil:
		r.fail(obj, ruleReadiness, "no readinessProbe")
	case rp.GRPC == nil:
		r.fail(obj, ruleReadiness, "readinessProbe is %s, want grpc with service \"\"", probeKind(rp))
	case deref(rp.GRPC.Service) != "":
		r.fail(obj, ruleReadiness, "readinessProbe grpc service %q, want \"\"", *rp.GRPC.Service)
	}
	if c.StartupProbe == nil {
		r.fail(obj, ruleStartup, "no startupProbe")
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p != nil && p.GRPC != nil && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == p.GRPC.Port }) {
			r.fail(obj, ruleProbePort, "%sProbe grpc port %d is not a container port", name, p.GRPC.Port)
		}
	}

	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		r.fail(obj, ruleReadOnlyRoot, "readOnlyRootFilesystem is not true")
	}

	// Requests plus a memory limit, and GOMEMLIMIT derived from it.
	limit, hasLimit := c.Resources.Limits[corev1.ResourceMemory]
	if !hasLimit || limit.IsZero() {
		r.fail(obj, ruleMemoryLimit, "no memory limit")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		r.fail(obj, ruleMemoryLimit, "no memory request")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		r.fail(obj, ruleMemoryLimit, "no cpu request")
	}
	env := r.env(ns, c)
	switch v, ok := env["GOMEMLIMIT"]; {
	case !ok:
		r.fail(obj, ruleGOMEMLIMIT, "no GOMEMLIMIT")
	case v.from != nil && v.from.ResourceFieldRef != nil:
		ref := v.from.ResourceFieldRef
		if ref.Resource != "limits.memory" || (ref.ContainerName != "" && ref.ContainerName != c.Name) {
			r.fail(obj, ruleGOMEMLIMIT, "GOMEMLIMIT from %s of %q, want limits.memory of this container", ref.Resource, ref.ContainerName)
		}
		// Go reads a bare number as bytes: any other divisor shrinks the limit.
		if !ref.Divisor.IsZero() && ref.Divisor.Cmp(resource.MustParse("1")) != 0 {
			r.fail(obj, ruleGOMEMLIMIT, "GOMEMLIMIT divisor %s: Go reads the bare number as bytes, want divisor 1", ref.Divisor.String())
		}
	case v.from != nil:
		r.fail(obj, ruleGOMEMLIMIT, "GOMEMLIMIT from neither the memory limit nor a literal")
	case v.value == "":
		r.fail(obj, ruleGOMEMLIMIT, "GOMEMLIMIT is empty")
	}

	// The kubelet kills at the grace period: the app must be done by then.
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if gracePtr != nil {
		grace = *gracePtr
	}
	delay, errD := envDuration(env, "RAPPORT_SHUTDOWN_DELAY", 0)
	drain, errG := envDuration(env, "RAPPORT_SHUTDOWN_GRACE", 20*time.Second)
	if err := errors.Join(errD, errG); err != nil {
		r.fail(obj, ruleGrace, "%v", err)
	} else if time.Duration(grace)*time.Second <= delay+drain {
		r.fail(obj, ruleGrace, "terminationGracePeriodSeconds %d ≤ RAPPORT_SHUTDOWN_DELAY %s + RAPPORT_SHUTDOWN_GRACE %s", grace, delay, drain)
	}

	if v, ok := env["RAPPORT_NATS_REPLICAS"]; ok && !slices.Contains([]string{"1", "3", "5"}, v.value) {
		r.fail(obj, ruleNATSReplicas, "RAPPORT_NATS_REPLICAS %q, want 1, 3 or 5", v.value)
	}
	if opts.Prod && env["RAPPORT_NATS_REPLICAS"].value != "3" {
		r.fail(obj, ruleNATSReplicas, "RAPPORT_NATS_REPLICAS %q, want 3 in prod (R3 on a 3-node cluster)", env["RAPPORT_NATS_REPLICAS"].value)
	}
}

// checkEnvFrom: every referenced ConfigMap is rendered (a broken name
// reference leaves the generator's unhashed name behind).
func (r *rendered) checkEnvFrom(obj, ns string, cs []corev1.Container) {
	for _, c := range cs {
		for _, ef := range c.EnvFrom {
			if ref := ef.ConfigMapRef; ref != nil && !deref(ref.Optional) && r.configMap(ns, ref.Name) == nil {
				r.fail(obj, ruleConfigRef, "container %s: envFrom ConfigMap %q is not rendered", c.Name, ref.Name)
			}
		}
	}
}

// checkDatabaseURL: every process needs Postgres, the gateway included
// (each one verifies API keys against the "access" schema), and reads its URL
// from a Secret. Unset, the binary would fall back to its laptop default on
// 127.0.0.1 and fail at start, which -verify-config cannot see.
func (r *rendered) checkDatabaseURL(obj, ns string, cs []corev1.Container) {
	for i := range cs {
		c := &cs[i]
		switch v, ok := r.env(ns, c)["RAPPORT_DATABASE_URL"]; {
		case !ok:
			r.fail(obj+" container "+c.Name, ruleDatabaseURL, "no RAPPORT_DATABASE_URL; every process opens the \"access\" schema (API keys)")
		case v.from == nil || v.from.SecretKeyRef == nil:
			r.fail(obj+" container "+c.Name, ruleDatabaseURL, "RAPPORT_DATABASE_URL is not from a secretKeyRef; the URL carries the password")
		}
	}
}

// checkImages: one image, set once, pinned by tag or digest.
func (r *rendered) checkImages() {
	images := map[string][]string{}
	add := func(obj string, t *corev1.PodTemplateSpec) {
		for _, c := range t.Spec.Containers {
			images[c.Image] = append(images[c.Image], obj)
			_, tag, hasTag := strings.Cut(lastSegment(c.Image), ":")
			if !strings.Contains(c.Image, "@sha256:") && (!hasTag || tag == "latest") {
				r.fail(obj, ruleImage, "image %q is not pinned by tag or digest", c.Image)
			}
		}
	}
	for _, d := range r.Deployments {
		add("Deployment/"+d.Name, &d.Spec.Template)
	}
	for _, j := range r.Jobs {
		add("Job/"+j.Name, &j.Spec.Template)
	}
	if len(images) > 1 {
		r.fail("*", ruleImage, "%d images %v, want the one rapport image everywhere", len(images), slices.Sorted(maps.Keys(images)))
	}
}

// checkDefaultDeny: every namespace with workloads has a policy that
// selects all its pods and allows nothing, both ways.
func (r *rendered) checkDefaultDeny() {
	namespaces := map[string]bool{}
	for _, d := range r.Deployments {
		namespaces[d.Namespace] = true
	}
	for ns := range namespaces {
		found := false
		for _, p := range r.Policies {
			if p.Namespace == ns && isDefaultDeny(p) {
				found = true
			}
		}
		if !found {
			r.fail("NetworkPolicy/*", ruleDefaultDeny, "namespace %q has no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)", ns)
		}
	}
}

func isDefaultDeny(p *networkingv1.NetworkPolicy) bool {
	s := p.Spec
	return len(s.PodSelector.MatchLabels) == 0 && len(s.PodSelector.MatchExpressions) == 0 &&
		slices.Contains(s.PolicyTypes, networkingv1.PolicyTypeIngress) &&
		slices.Contains(s.PolicyTypes, networkingv1.PolicyTypeEgress) &&
		len(s.Ingress) == 0 && len(s.Egress) == 0
}

// checkServices: each Service selects a workload's pods, and each target
// port exists on them.
func (r *rendered) checkServices() {
	for _, s := range r.Services {
		obj := "Service/" + s.Name
		var pods []*corev1.PodTemplateSpec
		for _, d := range r.Deployments {
			if d.Namespace == s.Namespace && len(s.Spec.Selector) > 0 &&
				labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, &d.Spec.Template)
			}
		}
		if len(pods) == 0 {
			r.fail(obj, ruleServiceSel, "selector %v matches no Deployment's pods", s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			for _, t := range pods {
				if _, ok := containerPort(t, p.TargetPort.String(), p.TargetPort.IntVal); !ok {
					r.fail(obj, ruleServiceSel, "port %s: targetPort %s is not a container port", p.Name, p.TargetPort.String())
				}
			}
		}
	}
}

// envValue is a container variable: a value, or where it comes from.
type envValue struct {
	value string
	from  *corev1.EnvVarSource
}

// env resolves a container's environment as the kubelet does: envFrom
// ConfigMaps first, then env, later entries winning.
func (r *rendered) env(ns string, c *corev1.Container) map[string]envValue {
	out := map[string]envValue{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		if cm := r.configMap(ns, ef.ConfigMapRef.Name); cm != nil {
			for k, v := range cm.Data {
				out[ef.Prefix+k] = envValue{value: v}
			}
		}
	}
	for _, e := range c.Env {
		out[e.Name] = envValue{value: e.Value, from: e.ValueFrom}
	}
	return out
}

func (r *rendered) configMap(ns, name string) *corev1.ConfigMap {
	for _, cm := range r.ConfigMaps {
		if cm.Namespace == ns && cm.Name == name {
			return cm
		}
	}
	return nil
}

func envDuration(env map[string]envValue, name string, def time.Duration) (time.Duration, error) {
	v, ok := env[name]
	if !ok {
		return def, nil
	}
	if v.from != nil {
		return 0, fmt.Errorf("%s comes from %v; the test cannot bound the shutdown", name, v.from)
	}
	d, err := time.ParseDuration(v.value)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(set)
}

func containerPort(t *corev1.PodTemplateSpec, name string, number int32) (int32, bool) {
	for _, c := range t.Spec.Containers {
		for _, p := range c.Ports {
			if (number != 0 && p.ContainerPort == number) || (number == 0 && p.Name == name) {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func probeKind(p *corev1.Probe) string {
	switch {
	case p.HTTPGet != nil:
		return "httpGet " + p.HTTPGet.Path
	case p.TCPSocket != nil:
		return "tcpSocket"
	case p.Exec != nil:
		return "exec"
	}
	return "empty"
}

func lastSegment(image string) string {
	if i := strings.LastIndex(image, "/"); i >= 0 {
		return image[i+1:]
	}
	return image
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

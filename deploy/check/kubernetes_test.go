package check

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

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kubeDir holds the manifests: *.yaml at its top (the Secret template) and
// in common/ belong to every variant; every other directory is a variant
// (shared-fs, s3), applied together with common/.
const kubeDir = "../kubernetes"

// manifestSet is what one variant applies, decoded.
type manifestSet struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	secrets     map[string]*corev1.Secret
	configMaps  map[string]*corev1.ConfigMap
	claims      map[string]*corev1.PersistentVolumeClaim
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
}

// TestKubernetesManifests decodes every manifest strictly and checks each
// variant as a whole: container arguments against the binary, probes
// against the ops port, Secret, ConfigMap and claim references, Service,
// HPA and PDB selectors against the pods.
func TestKubernetesManifests(t *testing.T) {
	shared, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	common, _ := filepath.Glob(filepath.Join(kubeDir, "common", "*.yaml"))
	shared = append(shared, common...)
	entries, err := os.ReadDir(kubeDir)
	if err != nil {
		t.Fatal(err)
	}
	variants := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "common" {
			continue
		}
		variants++
		files, _ := filepath.Glob(filepath.Join(kubeDir, e.Name(), "*.yaml"))
		t.Run(e.Name(), func(t *testing.T) {
			set := decodeSet(t, append(slices.Clip(shared), files...))
			checkSet(t, set)
		})
	}
	if variants < 2 {
		t.Errorf("%s has %d variant directories, want shared-fs and s3", kubeDir, variants)
	}
}

// docSep splits a multi-document YAML file.
var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeSet decodes files strictly into the Kubernetes API types.
func decodeSet(t *testing.T, files []string) *manifestSet {
	t.Helper()
	set := &manifestSet{secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{},
		claims: map[string]*corev1.PersistentVolumeClaim{}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(raw), -1) {
			if err := set.add([]byte(doc)); err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
			}
		}
	}
	return set
}

// add decodes one document strictly (an unknown field is an error) into
// the type its apiVersion and kind name.
func (s *manifestSet) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	if tm.APIVersion == "" && tm.Kind == "" {
		if strings.TrimSpace(stripComments(string(doc))) == "" {
			return nil
		}
		return fmt.Errorf("no apiVersion and kind")
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		d := &appsv1.Deployment{}
		s.deployments, obj = append(s.deployments, d), d
	case "v1 Service":
		v := &corev1.Service{}
		s.services, obj = append(s.services, v), v
	case "v1 Secret":
		v := &corev1.Secret{}
		defer func() { s.secrets[v.Name] = v }()
		obj = v
	case "v1 ConfigMap":
		v := &corev1.ConfigMap{}
		defer func() { s.configMaps[v.Name] = v }()
		obj = v
	case "v1 PersistentVolumeClaim":
		v := &corev1.PersistentVolumeClaim{}
		defer func() { s.claims[v.Name] = v }()
		obj = v
	case "autoscaling/v2 HorizontalPodAutoscaler":
		v := &autoscalingv2.HorizontalPodAutoscaler{}
		s.hpas, obj = append(s.hpas, v), v
	case "policy/v1 PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		s.pdbs, obj = append(s.pdbs, v), v
	default:
		return fmt.Errorf("%s %s: not a kind this check knows (add it to manifestSet.add)", tm.APIVersion, tm.Kind)
	}
	return yaml.UnmarshalStrict(doc, obj)
}

// stripComments drops the comment lines of a YAML document.
func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// checkSet checks one variant.
func checkSet(t *testing.T, s *manifestSet) {
	roles := map[string]int{}
	for _, d := range s.deployments {
		roles[checkDeployment(t, s, d)]++
	}
	if roles["main"] != 1 || roles["proc"] != 1 {
		t.Errorf("deployments by -role = %v, want one main and one proc", roles)
	}
	for _, svc := range s.services {
		checkService(t, s, svc)
	}
	for _, h := range s.hpas {
		checkHPA(t, s, h)
	}
	if len(s.hpas) == 0 || len(s.pdbs) == 0 {
		t.Errorf("%d HPAs and %d PodDisruptionBudgets, want the workers' of each", len(s.hpas), len(s.pdbs))
	}
	for _, p := range s.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || len(s.podsSelected(sel)) == 0 {
			t.Errorf("PodDisruptionBudget %s: selector %v matches no pod template (%v)", p.Name, p.Spec.Selector, err)
		}
	}
}

// podsSelected are the deployments whose pod labels sel matches.
func (s *manifestSet) podsSelected(sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range s.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

// checkDeployment checks d and returns the -role of its container.
func checkDeployment(t *testing.T, s *manifestSet, d *appsv1.Deployment) string {
	t.Helper()
	name := "Deployment " + d.Name
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v (%v)", name, d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	pod := d.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
	}
	checkVolumes(t, s, name, pod.Volumes)
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	name += " container " + c.Name
	checkContainerSecurity(t, name, c)
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", name, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", name, r)
		}
	}
	args := expandArgs(t, s, name, c)
	for _, p := range bin.checkArgs(args) {
		t.Errorf("%s: %s", name, p)
	}
	checkListeners(t, name, c, args)
	checkProbes(t, name, c, args)
	checkFileFlags(t, s, name, pod, c, args)
	role, _ := flagValue(args, "role")
	switch role {
	case "main":
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("%s: the main worker must run as exactly one replica", name)
		}
	case "proc":
		checkWorkerAddrs(t, s, name, c)
	}
	return role
}

// checkContainerSecurity: non-root, read-only root filesystem, no
// privilege escalation, every capability dropped.
func checkContainerSecurity(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", name)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: securityContext.runAsNonRoot is not true", name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: securityContext.readOnlyRootFilesystem is not true", name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: securityContext.allowPrivilegeEscalation is not false", name)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Errorf("%s: securityContext.capabilities.drop does not hold ALL", name)
	}
}

// varRef is a Kubernetes $(NAME) reference in an argument.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandArgs checks c's environment (each variable is read by the binary
// or used in an argument; each reference exists) and returns its
// arguments with $(NAME) replaced by a sample of the value Kubernetes would
// put there.
func expandArgs(t *testing.T, s *manifestSet, name string, c corev1.Container) []string {
	t.Helper()
	values := map[string]string{}
	for _, e := range c.Env {
		values[e.Name] = envSample(t, s, name, e)
	}
	used := map[string]bool{}
	var out []string
	for _, a := range c.Args {
		out = append(out, varRef.ReplaceAllStringFunc(a, func(ref string) string {
			v := varRef.FindStringSubmatch(ref)[1]
			used[v] = true
			val, ok := values[v]
			if !ok {
				t.Errorf("%s: argument %q refers to $(%s), which is not in env", name, a, v)
			}
			return val
		}))
	}
	for _, e := range c.Env {
		if !bin.env[e.Name] && !used[e.Name] {
			t.Errorf("%s: env %s is neither read by the binary nor used in an argument", name, e.Name)
		}
	}
	if len(c.EnvFrom) > 0 {
		t.Errorf("%s: envFrom hides which variables reach the binary; name each in env", name)
	}
	return out
}

// envSample is a value of e as Kubernetes would set it, after checking
// that what it refers to exists.
func envSample(t *testing.T, s *manifestSet, name string, e corev1.EnvVar) string {
	t.Helper()
	src := e.ValueFrom
	switch {
	case src == nil:
		return e.Value
	case src.FieldRef != nil:
		samples := map[string]string{"status.podIP": "10.1.2.3", "metadata.name": "deltadb-worker-7d9f8-x2x9k",
			"metadata.namespace": "default", "spec.nodeName": "node-1"}
		v, ok := samples[src.FieldRef.FieldPath]
		if !ok {
			t.Errorf("%s: env %s: fieldRef %s is not one this check knows", name, e.Name, src.FieldRef.FieldPath)
		}
		return v
	case src.SecretKeyRef != nil:
		checkSecretKey(t, s, name, src.SecretKeyRef.Name, src.SecretKeyRef.Key)
		return "secret"
	case src.ConfigMapKeyRef != nil:
		cm, ok := s.configMaps[src.ConfigMapKeyRef.Name]
		if !ok {
			t.Errorf("%s: env %s: no ConfigMap %s", name, e.Name, src.ConfigMapKeyRef.Name)
			return ""
		}
		v, ok := cm.Data[src.ConfigMapKeyRef.Key]
		if !ok {
			t.Errorf("%s: env %s: ConfigMap %s has no key %s", name, e.Name, cm.Name, src.ConfigMapKeyRef.Key)
		}
		return v
	}
	t.Errorf("%s: env %s: a valueFrom this check does not know", name, e.Name)
	return ""
}

// checkSecretKey checks that the Secret template named secret has key.
func checkSecretKey(t *testing.T, s *manifestSet, name, secret, key string) {
	t.Helper()
	sec, ok := s.secrets[secret]
	if !ok {
		t.Errorf("%s: Secret %s is not in the template", name, secret)
		return
	}
	_, inData := sec.Data[key]
	_, inString := sec.StringData[key]
	if !inData && !inString {
		t.Errorf("%s: Secret %s has no key %s in the template", name, secret, key)
	}
}

// checkVolumes checks that every Secret key, ConfigMap and claim a volume
// names exists.
func checkVolumes(t *testing.T, s *manifestSet, name string, vols []corev1.Volume) {
	t.Helper()
	for _, v := range vols {
		switch {
		case v.Secret != nil:
			if len(v.Secret.Items) == 0 {
				t.Errorf("%s: volume %s: list the Secret's items, so that a missing key fails the pod", name, v.Name)
			}
			for _, it := range v.Secret.Items {
				checkSecretKey(t, s, name+" volume "+v.Name, v.Secret.SecretName, it.Key)
			}
		case v.PersistentVolumeClaim != nil:
			if _, ok := s.claims[v.PersistentVolumeClaim.ClaimName]; !ok {
				t.Errorf("%s: volume %s: no PersistentVolumeClaim %s", name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.ConfigMap != nil:
			if _, ok := s.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("%s: volume %s: no ConfigMap %s", name, v.Name, v.ConfigMap.Name)
			}
		}
	}
}

// listenFlags are the binary's listen addresses.
var listenFlags = []string{"rest-addr", "grpc-addr", "cluster-addr", "ops-addr"}

// checkListeners: every port the binary listens on is a declared
// containerPort, and every declared containerPort is listened on.
func checkListeners(t *testing.T, name string, c corev1.Container, args []string) {
	t.Helper()
	listening := map[int32]bool{}
	for _, f := range listenFlags {
		v, ok := flagValue(args, f)
		if !ok {
			continue
		}
		p := portOf(t, name, f, v)
		listening[p] = true
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == p }) {
			t.Errorf("%s: -%s=%s listens on %d, which is not a containerPort", name, f, v, p)
		}
	}
	for _, cp := range c.Ports {
		if !listening[cp.ContainerPort] {
			t.Errorf("%s: containerPort %s (%d) is not a port the arguments listen on", name, cp.Name, cp.ContainerPort)
		}
	}
}

// portOf is the port of host:port value v of flag f.
func portOf(t *testing.T, name, f, v string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(v)
	n, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || n == 0 {
		t.Errorf("%s: -%s=%s is not host:port with a fixed port", name, f, v)
	}
	return int32(n)
}

// checkProbes: readiness and liveness are HTTP GETs on the -ops-addr port
// at paths the binary's ops port serves.
func checkProbes(t *testing.T, name string, c corev1.Container, args []string) {
	t.Helper()
	v, ok := flagValue(args, "ops-addr")
	if !ok {
		t.Errorf("%s: no -ops-addr, so nothing for the probes", name)
		return
	}
	opsPort := portOf(t, name, "ops-addr", v)
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet", name, p.kind)
			continue
		}
		g := p.probe.HTTPGet
		if port := resolvePort(c, g.Port); port != opsPort {
			t.Errorf("%s: %s port %s is %d, want the -ops-addr port %d", name, p.kind, g.Port.String(), port, opsPort)
		}
		if code := ops.status(t, g.Path); code != 200 && code != 503 {
			t.Errorf("%s: %s path %s: the binary's ops port answers %d, want 200 or 503", name, p.kind, g.Path, code)
		}
	}
	if r, l := c.ReadinessProbe, c.LivenessProbe; r != nil && l != nil && r.HTTPGet != nil && l.HTTPGet != nil {
		if r.HTTPGet.Path != "/readyz" || l.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: readiness probes %s and liveness %s, want /readyz and /healthz", name, r.HTTPGet.Path, l.HTTPGet.Path)
		}
	}
}

// resolvePort is the container port p names (by number or name); 0 if
// none.
func resolvePort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkFileFlags: the file of every -*-file flag is in a mounted volume;
// in a Secret volume it is one of the items it projects.
func checkFileFlags(t *testing.T, s *manifestSet, name string, pod corev1.PodSpec, c corev1.Container, args []string) {
	t.Helper()
	for _, a := range args {
		f, path, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasSuffix(f, "-file") {
			continue
		}
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		})
		if i < 0 {
			t.Errorf("%s: -%s=%s is in no mounted volume", name, f, path)
			continue
		}
		m := c.VolumeMounts[i]
		rel := strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		vi := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if vi < 0 {
			t.Errorf("%s: volumeMount %s names no volume", name, m.Name)
			continue
		}
		if sec := pod.Volumes[vi].Secret; sec != nil &&
			!slices.ContainsFunc(sec.Items, func(it corev1.KeyToPath) bool { return it.Path == rel }) {
			t.Errorf("%s: -%s=%s: Secret volume %s projects no item %s", name, f, path, m.Name, rel)
		}
	}
}

// checkWorkerAddrs: a worker advertises its pod IP from the downward API
// and subscribes at a Service of the set, on one of its ports.
func checkWorkerAddrs(t *testing.T, s *manifestSet, name string, c corev1.Container) {
	t.Helper()
	adv, _ := flagValue(c.Args, "advertise-addr")
	m := varRef.FindStringSubmatch(adv)
	if m == nil || !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == m[1] && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP"
	}) {
		t.Errorf("%s: -advertise-addr=%s is not the pod IP from the downward API", name, adv)
	}
	mainAddr, _ := flagValue(c.Args, "main-addr")
	host, port, _ := net.SplitHostPort(mainAddr)
	i := slices.IndexFunc(s.services, func(svc *corev1.Service) bool { return svc.Name == host })
	if i < 0 {
		t.Errorf("%s: -main-addr=%s: no Service %s", name, mainAddr, host)
		return
	}
	if !slices.ContainsFunc(s.services[i].Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("%s: -main-addr=%s: Service %s has no port %s", name, mainAddr, host, port)
	}
}

// checkService: the selector matches pods, and each targetPort is a port
// of those pods' container.
func checkService(t *testing.T, s *manifestSet, svc *corev1.Service) {
	t.Helper()
	name := "Service " + svc.Name
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("%s: no selector", name)
		return
	}
	pods := s.podsSelected(labels.SelectorFromSet(svc.Spec.Selector))
	if len(pods) == 0 {
		t.Errorf("%s: selector %v matches no pod template", name, svc.Spec.Selector)
	}
	for _, d := range pods {
		for _, p := range svc.Spec.Ports {
			if resolvePort(d.Spec.Template.Spec.Containers[0], p.TargetPort) == 0 {
				t.Errorf("%s: port %s: targetPort %s is not a port of Deployment %s", name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
}

// checkHPA: the target Deployment exists and requests CPU (utilization is
// measured against the request).
func checkHPA(t *testing.T, s *manifestSet, h *autoscalingv2.HorizontalPodAutoscaler) {
	t.Helper()
	ref := h.Spec.ScaleTargetRef
	i := slices.IndexFunc(s.deployments, func(d *appsv1.Deployment) bool { return d.Name == ref.Name })
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || i < 0 {
		t.Errorf("HPA %s: target %s %s %s is no Deployment of the set", h.Name, ref.APIVersion, ref.Kind, ref.Name)
		return
	}
	for _, c := range s.deployments[i].Spec.Template.Spec.Containers {
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Errorf("HPA %s: container %s of %s requests no CPU", h.Name, c.Name, ref.Name)
		}
	}
}

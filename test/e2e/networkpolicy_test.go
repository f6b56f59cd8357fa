//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestNetworkPolicyManagerPorts: with the chart's NetworkPolicy
// (networkPolicy.enabled, the default) enforced by the cluster's
// NetworkPolicy implementation (hack/cluster runs kube-router's), a pod
// outside the activators cannot connect to the manager's autoscaler report
// port (8083) nor to its git webhook port (8082), while it reaches the
// manager's probe port (8081), which the policy leaves open, so the refusal
// is the policy's and not a broken pod network; nor to NATS's client port
// (4222), which the chart's NATS policy keeps to the activators and the
// manager, while NATS's monitoring port answers. The activators still
// report: a Function at zero scales up on a request and answers 200.
func TestNetworkPolicyManagerPorts(t *testing.T) {
	ctx := context.Background()

	// The chart's policy selects the manager's pods.
	var policies networkingv1.NetworkPolicyList
	if err := k.List(ctx, &policies, client.InNamespace(systemNS)); err != nil {
		t.Fatalf("list NetworkPolicies in %s: %v", systemNS, err)
	}
	var policy *networkingv1.NetworkPolicy
	for i, p := range policies.Items {
		if p.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] == "manager" {
			policy = &policies.Items[i]
		}
	}
	if policy == nil {
		t.Fatalf("no NetworkPolicy in %s selects the manager (networkPolicy.enabled is the chart's default)", systemNS)
	}
	t.Logf("NetworkPolicy %s/%s selects %v", systemNS, policy.Name, policy.Spec.PodSelector.MatchLabels)

	managerIP := podIP(t, systemNS, client.MatchingLabels{"app.kubernetes.io/component": "manager"})
	t.Logf("manager pod at %s", managerIP)
	// And the chart's NATS (eventQueue): its client port is the activators'
	// and the manager's alone, its monitoring port open.
	natsIP := podIP(t, systemNS, client.MatchingLabels{"app.kubernetes.io/component": "nats"})
	t.Logf("NATS pod at %s", natsIP)

	// A client pod in a namespace of its own: neither an activator nor
	// the ingress controller. It runs curl from the bash+curl image of
	// make dev.
	clientNS := restrictedNamespace(t, "netpol")
	got, out := probeFromPod(t, clientNS, "netpol-client",
		"probes http://"+managerIP+":8081/healthz",
		"autoscaler http://"+managerIP+":8083/v1/stats -X POST -H 'Content-Type: application/json' -d '{}'",
		"webhook http://"+managerIP+":8082/hooks/ -X POST -d '{}'",
		"nats-monitor http://"+natsIP+":8222/healthz",
		"nats http://"+natsIP+":4222/")
	if r := got["probes"]; !strings.HasPrefix(r, "exit=0 ") {
		t.Fatalf("the client pod cannot reach the manager's probe port 8081, which the policy leaves open (%q): the pod network is broken, so the other results prove nothing\n%s", r, out)
	}
	if r := got["nats-monitor"]; !strings.HasPrefix(r, "exit=0 ") {
		t.Errorf("the client pod cannot reach NATS's monitoring port 8222, which its policy leaves open (%q)\n%s", r, out)
	}
	// (the manager's report and webhook ports, NATS's client port)
	for _, port := range []string{"autoscaler", "webhook", "nats"} {
		if r := got[port]; !noConnection(r) {
			t.Errorf("the client pod reached the %s port (%q), want no connection: is a NetworkPolicy implementation running (hack/cluster/up.sh: kube-router)?", port, r)
		} else {
			t.Logf("%s port from %s: %s (no connection)", port, clientNS, r)
		}
	}

	// The activators' reports still reach the autoscaler: a Function at
	// zero scales up on a request, which only a report makes happen.
	fn := newFunction(t, "netpol", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.MinReplicas = 0
	})
	if all, _ := pods(t, ns, fn.Name); all != 0 {
		t.Logf("fn/%s has %d pods before the first request; waiting for zero", fn.Name, all)
		waitPods(t, ns, fn.Name, 0, 2*time.Minute)
	}
	path := fmt.Sprintf("/%s/%s/netpol?name=netpol", ns, fn.Name)
	a := getKnown(t, path)
	t.Logf("GET %s from zero: HTTP %d in %s", path, a.status, a.elapsed.Round(time.Millisecond))
	if want := helloBody("netpol", "/netpol", fn.Name); a.status != 200 || a.body != want {
		dump(t, fn.Name)
		t.Fatalf("GET %s: %d %q, want 200 %q", path, a.status, a.body, want)
	}
	if all, _ := pods(t, ns, fn.Name); all < 1 {
		t.Errorf("fn/%s answered but has no pod", fn.Name)
	}
}

// TestNetworkPolicyFunctionPods: with NetworkPolicies enforced, a pod
// outside the activators cannot even connect to a function pod's runtime
// sidecar (:8080), which the NetworkPolicy the manager gives every
// Function keeps to the activators, while invocations through the
// activator answer 200 and the node (the kubelet's probes, this test on
// the host) still reaches the sidecar.
func TestNetworkPolicyFunctionPods(t *testing.T) {
	ctx := context.Background()
	fn := newFunction(t, "netpol-fn", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.MinReplicas = 1
	})
	// the Function's NetworkPolicy, of its name
	var policy networkingv1.NetworkPolicy
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: fn.Name}, &policy)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			dump(t, fn.Name)
			t.Fatalf("fn/%s has no NetworkPolicy %s/%s 30s after Ready: %v", fn.Name, ns, fn.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("NetworkPolicy %s/%s selects %v", ns, policy.Name, policy.Spec.PodSelector.MatchLabels)
	deadline = time.Now().Add(2 * time.Minute)
	for _, ready := pods(t, ns, fn.Name); ready < 1; _, ready = pods(t, ns, fn.Name) {
		if time.Now().After(deadline) {
			dump(t, fn.Name)
			t.Fatalf("fn/%s (minReplicas 1) has no ready pod", fn.Name)
		}
		time.Sleep(500 * time.Millisecond)
	}
	fnIP := podIP(t, ns, client.MatchingLabels{"lambdapod.io/function": fn.Name})
	managerIP := podIP(t, systemNS, client.MatchingLabels{"app.kubernetes.io/component": "manager"})
	t.Logf("function pod at %s, manager pod at %s", fnIP, managerIP)

	// from the node: the kubelet probes the sidecar from here
	if a, err := tryGet(fmt.Sprintf("http://%s:8080/readyz", fnIP)); err != nil || a.status != 200 {
		t.Errorf("GET the sidecar's /readyz from the node: %d %v, want 200 (the kubelet probes it from the node)", a.status, err)
	}

	clientNS := restrictedNamespace(t, "netpol-fn")
	got, out := probeFromPod(t, clientNS, "netpol-fn-client",
		"control http://"+managerIP+":8081/healthz",
		"readyz http://"+fnIP+":8080/readyz",
		"invoke http://"+fnIP+":8080/2015-03-31/functions/"+fn.Name+"/invocations -X POST -d '{}'")
	if r := got["control"]; !strings.HasPrefix(r, "exit=0 ") {
		t.Fatalf("the client pod cannot reach the manager's probe port 8081, which its policy leaves open (%q): the pod network is broken, so the other results prove nothing\n%s", r, out)
	}
	for _, what := range []string{"readyz", "invoke"} {
		if r := got[what]; !noConnection(r) {
			t.Errorf("the client pod connected to the function pod's :8080 (%s: %q), want no connection: is a NetworkPolicy implementation running (hack/cluster/up.sh: kube-router)?", what, r)
		} else {
			t.Logf("function pod :8080 (%s) from %s: %s (no connection)", what, clientNS, r)
		}
	}

	// The second wall: a policy that lets the client's namespace in (a
	// mistake, or a team's own policy: policies add up) lets it connect,
	// and the sidecar still refuses an invocation without the activators'
	// token. From the node too, which policies never restrict.
	before := invocations(t, fn.Name)
	tcp := corev1.ProtocolTCP
	open := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "let-netpol-client-in", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"lambdapod.io/function": fn.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": clientNS}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp}},
			}},
		},
	}
	if err := k.Create(ctx, open); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Delete(context.Background(), open) })
	// curl retries until the policy is enforced (refused or timed out
	// until then)
	script := fmt.Sprintf(`
echo "readyz $(curl -s -o /dev/null -w '%%{http_code}' --connect-timeout 1 --retry 60 --retry-delay 1 --retry-connrefused http://%[1]s:8080/readyz)"
echo "invoke $(curl -s -o /dev/null -w '%%{http_code} %%header{x-amzn-errortype}' --max-time 10 -X POST -d '{}' http://%[1]s:8080/2015-03-31/functions/%[2]s/invocations)"
`, fnIP, fn.Name)
	out = runClientPod(t, clientNS, "netpol-fn-client-let-in", script)
	for _, want := range []string{"readyz 200", "invoke 403 AccessDeniedException"} {
		if !strings.Contains(out, want) {
			t.Errorf("a pod a policy lets in: output lacks %q, want it to connect and be refused by the sidecar:\n%s", want, out)
		}
	}
	direct, err := tryPost(fmt.Sprintf("http://%s:8080/2015-03-31/functions/%s/invocations", fnIP, fn.Name), `{}`)
	if err != nil || direct.status != 403 || direct.header.Get("X-Amzn-Errortype") != "AccessDeniedException" {
		t.Errorf("an invocation from the node straight to the pod: %d %v %q, want 403 AccessDeniedException", direct.status, err, direct.body)
	}
	if n := invocations(t, fn.Name) - before; n != 0 {
		t.Errorf("the function ran %d times for callers past the activators, want 0", n)
	}

	// through the activator
	path := fmt.Sprintf("/%s/%s/netpol-fn?name=activator", ns, fn.Name)
	a := getKnown(t, path)
	t.Logf("GET %s: HTTP %d in %s", path, a.status, a.elapsed.Round(time.Millisecond))
	if want := helloBody("activator", "/netpol-fn", fn.Name); a.status != 200 || a.body != want {
		dump(t, fn.Name)
		t.Fatalf("GET %s: %d %q, want 200 %q", path, a.status, a.body, want)
	}
}

// probeFromPod runs curl in a client pod of namespace for each probe, "name
// url [curl args]", and returns each name's "exit=<curl's exit> code=<HTTP
// status>", and the pod's output.
func probeFromPod(t *testing.T, namespace, pod string, probes ...string) (map[string]string, string) {
	t.Helper()
	script := `
probe() { # name url [curl args]
  local name=$1 url=$2; shift 2
  code=$(curl -sS -o /dev/null -w '%{http_code}' --connect-timeout 5 --max-time 10 "$@" "$url" 2>/dev/null)
  echo "$name exit=$? code=$code"
}
`
	for _, p := range probes {
		script += "probe " + p + "\n"
	}
	out := runClientPod(t, namespace, pod, script)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, rest, ok := strings.Cut(line, " "); ok {
			got[name] = rest
		}
	}
	return got, out
}

// noConnection reports whether a probe got no connection: curl exits 7
// (refused: a REJECT) or 28 (timed out: a DROP), with no HTTP answer.
func noConnection(r string) bool {
	return (strings.HasPrefix(r, "exit=7 ") || strings.HasPrefix(r, "exit=28 ")) && strings.HasSuffix(r, "code=000")
}

// podIP is the IP of a running pod in namespace that matches sel.
func podIP(t *testing.T, namespace string, sel client.MatchingLabels) string {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(namespace), sel); err != nil {
		t.Fatalf("list pods %v in %s: %v", sel, namespace, err)
	}
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			return p.Status.PodIP
		}
	}
	t.Fatalf("no running pod %v in %s", sel, namespace)
	return ""
}

// runClientPod runs script with bash in a pod of namespace, from the
// bash+curl image that make dev pushes (confined as the restricted Pod
// Security Standard asks), waits until it ends and returns its output.
func runClientPod(t *testing.T, namespace, name, script string) string {
	t.Helper()
	pod := startBashPod(t, namespace, name, script)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		if err := k.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatalf("pod %s/%s: %v", namespace, name, err)
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			break
		}
		select {
		case <-ctx.Done():
			out, errOut, _ := kubectl(t, "", "-n", namespace, "describe", "pod", name)
			t.Fatalf("pod %s/%s still %s after 3m:\n%s%s", namespace, name, pod.Status.Phase, out, errOut)
		case <-time.After(time.Second):
		}
	}
	out, errOut, err := kubectl(t, "", "-n", namespace, "logs", name)
	if err != nil {
		t.Fatalf("kubectl logs %s/%s: %v\n%s", namespace, name, err, errOut)
	}
	t.Logf("pod %s/%s %s:\n%s", namespace, name, pod.Status.Phase, out)
	return out
}

// startBashPod creates a restricted pod of the bash+curl image that make
// dev pushes, running script.
func startBashPod(t *testing.T, namespace, name, script string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(devDir, "bash-image.txt"))
	if err != nil {
		t.Fatalf("the bash+curl image that make dev pushes: %v (run make dev)", err)
	}
	yes, no, uid := true, false, int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				RunAsUser:      &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:    "client",
				Image:   strings.TrimSpace(string(b)),
				Command: []string{"/bin/bash", "-c", script},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					ReadOnlyRootFilesystem:   &yes,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if err := k.Create(context.Background(), pod); err != nil {
		t.Fatalf("create pod %s/%s: %v", namespace, name, err)
	}
	return pod
}

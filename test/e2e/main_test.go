//go:build e2e

// Package e2e is lambdapod's end-to-end suite: it runs against the local
// cluster that `make dev` brings up (hack/dev/up.sh: lambdapod installed with
// its Helm chart, the Go function default/hello built from git) and asserts
// what a caller of the activator receives. Run it with `make e2e`, or with
//
//	KUBECONFIG=$PWD/bin/cluster/kubeconfig go test -tags e2e ./test/e2e/... -count=1 -v -timeout 30m -parallel 4
//
// The suite creates its Functions in a namespace of its own, most from the
// image that hello's build produced (no rebuild), the git cases from bare
// repositories of their own next to hello's (bin/dev/git), the bash+curl
// case from the image hack/dev/bashimage pushed; it deletes the namespace
// at the end (E2E_KEEP=1 keeps it).
//
// Environment: KUBECONFIG (default bin/cluster/kubeconfig),
// LAMBDAPOD_NAMESPACE (lambdapod-system), DEV_FUNCTION and
// DEV_FUNCTION_NAMESPACE (hello, default), DEV_DIR (bin/dev), E2E_KEEP.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/devcluster"
)

var (
	// k is a client of the cluster's API server (admin kubeconfig).
	k client.Client
	// activator is the activator's base URL, http://<ClusterIP>:<port>.
	activator string
	// ns is the namespace of the suite's own Functions.
	ns string

	systemNS  = envOr("LAMBDAPOD_NAMESPACE", "lambdapod-system")
	devFn     = envOr("DEV_FUNCTION", "hello")
	devFnNS   = envOr("DEV_FUNCTION_NAMESPACE", "default")
	repoRoot  = findRepoRoot()
	kubectlSh = kubectlCmd()
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func findRepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// kubectlCmd is kubectl as hack/cluster/lib.sh picks it: the one on PATH,
// else the one built under bin/k8s.
func kubectlCmd() string {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	if m, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "k8s", "v*", "kubectl")); len(m) > 0 {
		return m[len(m)-1]
	}
	return "kubectl"
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBECONFIG") == "" {
		os.Setenv("KUBECONFIG", filepath.Join(repoRoot, "bin", "cluster", "kubeconfig"))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: kubeconfig %s: %v (run make dev first)\n", os.Getenv("KUBECONFIG"), err)
		return 1
	}
	scheme := clientgoscheme.Scheme
	if err := lambdapodv1alpha1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if k, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if activator, err = devcluster.ActivatorURL(ctx, k, systemNS); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v (run make dev first)\n", err)
		return 1
	}
	fmt.Printf("e2e: activator at %s, kubectl %s\n", activator, kubectlSh)

	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	ns = "lambdapod-e2e-" + hex.EncodeToString(suffix)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "lambdapod-e2e"}}}
	if err := k.Create(ctx, nsObj); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: create namespace:", err)
		return 1
	}
	fmt.Printf("e2e: namespace %s\n", ns)
	code := m.Run()
	if os.Getenv("E2E_KEEP") != "" {
		fmt.Printf("e2e: E2E_KEEP set: namespace %s kept\n", ns)
		return code
	}
	if err := deleteNamespace(nsObj); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// deleteNamespace deletes a namespace of the suite and waits until it is
// gone, so that no function pod outlives the suite.
func deleteNamespace(nsObj *corev1.Namespace) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := k.Delete(ctx, nsObj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", nsObj.Name, err)
	}
	for {
		err := k.Get(ctx, client.ObjectKey{Name: nsObj.Name}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			fmt.Printf("e2e: namespace %s deleted in %s\n", nsObj.Name, time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still there after %s", nsObj.Name, time.Since(start).Round(time.Second))
		case <-time.After(time.Second):
		}
	}
}

// restrictedNamespace creates a namespace of the test's own that enforces
// the restricted Pod Security Standard, deleted (and waited for) when the
// test ends unless E2E_KEEP is set.
func restrictedNamespace(t *testing.T, purpose string) string {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "lambdapod-e2e-" + purpose + "-" + hex.EncodeToString(suffix),
		Labels: map[string]string{
			"app.kubernetes.io/part-of":                  "lambdapod-e2e",
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		},
	}}
	if err := k.Create(context.Background(), nsObj); err != nil {
		t.Fatalf("create namespace %s: %v", nsObj.Name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") != "" {
			t.Logf("E2E_KEEP set: namespace %s kept", nsObj.Name)
			return
		}
		if err := deleteNamespace(nsObj); err != nil {
			t.Error(err)
		}
	})
	return nsObj.Name
}

// kubectl runs kubectl with the suite's kubeconfig and returns its stdout,
// its stderr and its error.
func kubectl(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlSh, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

var (
	imageOnce sync.Once
	image     string
	imageErr  error
)

// builtImage is the image that the build of make dev's function produced
// (its status.image): the suite's Functions run it as an image source.
func builtImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		var fn lambdapodv1alpha1.Function
		if imageErr = k.Get(context.Background(), client.ObjectKey{Namespace: devFnNS, Name: devFn}, &fn); imageErr != nil {
			return
		}
		if image = fn.Status.Image; image == "" {
			imageErr = fmt.Errorf("fn/%s in %s has no status.image (did make dev finish?)", devFn, devFnNS)
		}
	})
	if imageErr != nil {
		t.Fatalf("the built image: %v", imageErr)
	}
	return image
}

// newFunction creates a Function of the suite's namespace that runs the
// built hello image, with the given changes, and waits until it is Ready.
// It is public (authType None) unless change says otherwise: the cases
// that are not about who may invoke call it without credentials.
func newFunction(t *testing.T, name string, change func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	t.Helper()
	return newFunctionIn(t, ns, name, change)
}

// newFunctionIn is newFunction in another namespace; the caller deletes it.
func newFunctionIn(t *testing.T, namespace, name string, change func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	t.Helper()
	fn := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Image: builtImage(t)},
			Scale: lambdapodv1alpha1.ScaleSpec{
				MinReplicas:      0,
				MaxReplicas:      3,
				ScaleToZeroAfter: &metav1.Duration{Duration: 30 * time.Second},
			},
			AuthType: lambdapodv1alpha1.AuthNone,
		},
	}
	if change != nil {
		change(fn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := k.Create(ctx, fn); err != nil {
		t.Fatalf("create fn/%s: %v", name, err)
	}
	start := time.Now()
	if out, errOut, err := kubectl(t, "", "-n", namespace, "wait", "--for=condition=Ready", "fn/"+name, "--timeout=180s"); err != nil {
		dumpIn(t, namespace, name)
		t.Fatalf("kubectl wait fn/%s: %v\n%s%s", name, err, out, errOut)
	}
	if err := k.Get(ctx, client.ObjectKeyFromObject(fn), fn); err != nil {
		t.Fatal(err)
	}
	t.Logf("fn/%s Ready %s after create, url %s", name, time.Since(start).Round(time.Millisecond), fn.Status.URL)
	return fn
}

// dump logs a Function's status, its pods and the events of the suite's
// namespace.
func dump(t *testing.T, name string) { dumpIn(t, ns, name) }

// dumpIn logs a Function's status, its Deployment, ReplicaSets (where a
// PodSecurity refusal shows), pods and endpoints, and the events of
// namespace.
func dumpIn(t *testing.T, namespace, name string) {
	t.Helper()
	for _, args := range [][]string{
		{"-n", namespace, "get", "fn", name, "-o", "yaml"},
		{"-n", namespace, "get", "deploy,rs,pods,endpointslices", "-l", "lambdapod.io/function=" + name, "-o", "wide"},
		{"-n", namespace, "describe", "rs", "-l", "lambdapod.io/function=" + name},
		{"-n", namespace, "get", "events", "--sort-by=.lastTimestamp"},
	} {
		out, errOut, _ := kubectl(t, "", args...)
		t.Logf("kubectl %s:\n%s%s", strings.Join(args, " "), out, errOut)
	}
}

// pods counts the function's pods, terminating ones included, and those
// that are ready.
func pods(t *testing.T, namespace, name string) (all, ready int) {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(namespace), client.MatchingLabels{"lambdapod.io/function": name}); err != nil {
		t.Fatalf("list pods of %s/%s: %v", namespace, name, err)
	}
	for _, p := range list.Items {
		if _, build := p.Labels["tekton.dev/taskRun"]; build {
			continue
		}
		all++
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				ready++
			}
		}
	}
	return all, ready
}

// waitPods waits until the function has exactly n pods (terminating ones
// count) and returns how long that took.
func waitPods(t *testing.T, namespace, name string, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all, _ := pods(t, namespace, name)
		if all == n {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			dump(t, name)
			t.Fatalf("%s/%s has %d pods after %s, want %d", namespace, name, all, timeout, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// answer is what a caller of the activator received.
type answer struct {
	status  int
	header  http.Header
	body    string
	elapsed time.Duration
}

var httpClient = &http.Client{
	Timeout: 3 * time.Minute,
	Transport: &http.Transport{
		MaxIdleConns:        500,
		MaxIdleConnsPerHost: 500,
	},
}

// get sends GET activator+path and returns what came back.
func get(t *testing.T, path string) answer {
	t.Helper()
	a, err := tryGet(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return a
}

// getKnown GETs path from the activator, again while it answers 404 for up
// to 30 s: the activator may learn of a function a moment after it turns
// Ready.
func getKnown(t *testing.T, path string) answer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := get(t, path)
		if a.status != 404 || time.Now().After(deadline) {
			return a
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tryPost posts body as JSON to url (a full URL).
func tryPost(url, body string) (answer, error) {
	start := time.Now()
	resp, err := httpClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), elapsed: time.Since(start)}, err
}

func tryGet(path string) (answer, error) {
	u := path
	if !strings.HasPrefix(u, "http") {
		u = activator + path
	}
	start := time.Now()
	resp, err := httpClient.Get(u)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), elapsed: time.Since(start)}, nil
}

// sent is what one of many concurrent requests got back.
type sent struct {
	a   answer
	err error
}

// checkAll reports the requests that did not get 200 with the body want(i)
// (the first five of them), and returns how many failed and the latencies
// of the others, sorted.
func checkAll(t *testing.T, results []sent, want func(i int) string) (failed int, lat []time.Duration) {
	t.Helper()
	for i, r := range results {
		switch w := want(i); {
		case r.err != nil:
			failed++
			if failed <= 5 {
				t.Errorf("request %d: %v", i, r.err)
			}
		case r.a.status != 200 || r.a.body != w:
			failed++
			if failed <= 5 {
				t.Errorf("request %d: %d %q, want 200 %q", i, r.a.status, r.a.body, w)
			}
		default:
			lat = append(lat, r.a.elapsed)
		}
	}
	slices.Sort(lat)
	return failed, lat
}

// helloBody is the body examples/hello-go answers a GET with.
func helloBody(who, rawPath, function string) string {
	return fmt.Sprintf("Hello from lambdapod, %s! (GET %s, function %s)\n", who, rawPath, function)
}

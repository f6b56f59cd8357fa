//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestDevFunctionReady: kubectl wait works on make dev's Function, whose
// status names the commit it was built from, the image by digest and its
// URL through the Ingress, which answers.
func TestDevFunctionReady(t *testing.T) {
	out, errOut, err := kubectl(t, "", "-n", devFnNS, "wait", "--for=condition=Ready", "fn/"+devFn, "--timeout=60s")
	if err != nil {
		t.Fatalf("kubectl wait --for=condition=Ready fn/%s: %v\n%s%s", devFn, err, out, errOut)
	}
	if want := "function.lambdapod.io/" + devFn + " condition met"; strings.TrimSpace(out) != want {
		t.Errorf("kubectl wait printed %q, want %q", strings.TrimSpace(out), want)
	}

	var fn lambdapodv1alpha1.Function
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: devFnNS, Name: devFn}, &fn); err != nil {
		t.Fatal(err)
	}
	t.Logf("status: commit %s image %s url %s", fn.Status.Commit, fn.Status.Image, fn.Status.URL)
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(fn.Status.Commit) {
		t.Errorf("status.commit = %q, want a 40-hex git commit", fn.Status.Commit)
	}
	// the commit make dev pushed, when its work tree is here
	if head, err := exec.Command("git", "-C", repoRoot+"/bin/dev/src/hello-go", "rev-parse", "HEAD").Output(); err == nil {
		if h := strings.TrimSpace(string(head)); fn.Status.Commit != h {
			t.Errorf("status.commit = %s, want bin/dev/src/hello-go's HEAD %s", fn.Status.Commit, h)
		}
	}
	if fn.Spec.Build != nil && !strings.HasPrefix(fn.Status.Image, fn.Spec.Build.Image+"@sha256:") {
		t.Errorf("status.image = %q, want %s@sha256:<digest>", fn.Status.Image, fn.Spec.Build.Image)
	}
	if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(fn.Status.Image) {
		t.Errorf("status.image = %q, want a reference by digest", fn.Status.Image)
	}
	// make dev installs the chart with its Ingress (TLS, host routing):
	// status.url is where a client outside the cluster calls.
	in := ingress(t)
	if want := "https://" + in.domainHost(devFnNS, devFn) + "/"; fn.Status.URL != want {
		t.Errorf("status.url = %q, want %q", fn.Status.URL, want)
	}
	if fn.Status.ObservedGeneration != fn.Generation {
		t.Errorf("status.observedGeneration = %d, generation %d", fn.Status.ObservedGeneration, fn.Generation)
	}

	resp, err := in.client.Get(fn.Status.URL + "ready?name=e2e")
	if err != nil {
		t.Fatalf("GET %sready: %v", fn.Status.URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if a.status != 200 || a.body != helloBody("e2e", "/ready", devFn) {
		t.Errorf("GET %sready: %d %q, want 200 %q", fn.Status.URL, a.status, a.body, helloBody("e2e", "/ready", devFn))
	}
	if ct := a.header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

// TestScaleFromZero: a function at zero pods answers its first request
// (a cold start), then with no traffic for scaleToZeroAfter it goes back to
// zero pods.
func TestScaleFromZero(t *testing.T) {
	const idle = 15 * time.Second
	fn := newFunction(t, "scale", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.ScaleToZeroAfter = &metav1.Duration{Duration: idle}
	})
	waitPods(t, ns, fn.Name, 0, 2*time.Minute)
	if all, _ := pods(t, ns, fn.Name); all != 0 {
		t.Fatalf("%d pods before the first request, want 0", all)
	}

	a := get(t, fmt.Sprintf("/%s/%s/cold/start?name=zero", ns, fn.Name))
	last := time.Now()
	t.Logf("cold start: HTTP %d in %s", a.status, a.elapsed.Round(time.Millisecond))
	if want := helloBody("zero", "/cold/start", fn.Name); a.status != 200 || a.body != want {
		t.Fatalf("first request: %d %q, want 200 %q", a.status, a.body, want)
	}
	if ct := a.header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	// The activator probes the new pod's sidecar itself, so the answer can
	// come before the kubelet's next readiness probe marks the pod Ready.
	if all, _ := pods(t, ns, fn.Name); all != 1 {
		t.Errorf("after the first request: %d pods, want 1", all)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, ready := pods(t, ns, fn.Name); ready != 1; _, ready = pods(t, ns, fn.Name) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod that answered is not Ready 10s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a warm request
	if a := get(t, fmt.Sprintf("/%s/%s/?name=warm", ns, fn.Name)); a.status != 200 || a.body != helloBody("warm", "/", fn.Name) {
		t.Errorf("warm request: %d %q", a.status, a.body)
	} else {
		last = time.Now()
		t.Logf("warm: HTTP %d in %s", a.status, a.elapsed.Round(time.Millisecond))
	}

	waitPods(t, ns, fn.Name, 0, idle+2*time.Minute)
	gone := time.Since(last)
	t.Logf("back to 0 pods %s after the last request (scaleToZeroAfter %s)", gone.Round(time.Millisecond), idle)
	if gone < idle {
		t.Errorf("scaled to zero %s after the last request, before scaleToZeroAfter %s", gone.Round(time.Millisecond), idle)
	}
}

// TestBurstAtZero: 200 concurrent requests to a function at zero all get
// 200 and the function's answer, and the autoscaler starts the pods the
// queue needs at once, up to maxReplicas and never more: its Deployment's
// spec.replicas, watched through the burst, peaks at
// min(⌈200 queued / target 2⌉, maxReplicas 3) = 3.
func TestBurstAtZero(t *testing.T) {
	const n = 200
	fn := newFunction(t, "burst", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.MaxReplicas = 3
		fn.Spec.Runtime.Concurrency = 2
	})
	waitPods(t, ns, fn.Name, 0, 2*time.Minute)

	stop := watchReplicas(t, fn.Name)
	t0 := time.Now()
	results := spread([]string{activator}, n, func(i int) string { return fmt.Sprintf("/%s/%s/burst/%d?name=b%d", ns, fn.Name, i, i) })
	total := time.Since(t0)
	seen := stop()

	failed, lat := checkAll(t, results, func(i int) string {
		return helloBody(fmt.Sprintf("b%d", i), fmt.Sprintf("/burst/%d", i), fn.Name)
	})
	all, ready := pods(t, ns, fn.Name)
	t.Logf("%d requests at zero: %d ok, %d failed in %s; pods now %d (%d ready)", n, len(lat), failed, total.Round(time.Millisecond), all, ready)
	if len(lat) > 0 {
		t.Logf("latency: min %s median %s p90 %s max %s", lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond),
			lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	t.Logf("spec.replicas through the burst: %v", seen)
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, n)
	}
	// Nothing is served until a pod is ready, seconds after the burst
	// began. Meanwhile the activators report their queues at once (a
	// request at zero pokes the reporter) and every second, and the
	// autoscaler decides at once on a report with queued requests: any
	// report of 5 or more queued asks for 3 pods.
	maxReplicas := fn.Spec.Scale.MaxReplicas
	if peak := slices.Max(seen); peak > maxReplicas {
		t.Errorf("spec.replicas reached %d during the burst, above maxReplicas %d", peak, maxReplicas)
	} else if peak < maxReplicas {
		t.Errorf("spec.replicas peaked at %d during the burst, want maxReplicas %d (⌈%d queued / target 2⌉ capped)", peak, maxReplicas, n)
	}
}

// watchReplicas watches the function's Deployment from now on and records
// every spec.replicas it has; the returned function stops the watch once it
// has seen the Deployment's current state, and returns them in order.
func watchReplicas(t *testing.T, name string) (stop func() []int32) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	key := client.ObjectKey{Namespace: ns, Name: name}
	var d appsv1.Deployment
	if err := k.Get(ctx, key, &d); err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// A RetryWatcher resumes from the last version seen if the API server
	// ends the watch, so no change is missed.
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, d.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return cs.AppsV1().Deployments(ns).Watch(ctx, o)
		}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := []int32{ptr.Deref(d.Spec.Replicas, 1)}
	lastVersion := d.ResourceVersion
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range rw.ResultChan() {
			if dep, ok := ev.Object.(*appsv1.Deployment); ok {
				mu.Lock()
				if r := ptr.Deref(dep.Spec.Replicas, 1); r != seen[len(seen)-1] {
					seen = append(seen, r)
				}
				lastVersion = dep.ResourceVersion
				mu.Unlock()
			}
		}
	}()
	return func() []int32 {
		t.Helper()
		defer func() { cancel(); rw.Stop(); <-done }()
		// Caught up when the last version seen is the Deployment's now.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if err := k.Get(context.Background(), key, &d); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			caughtUp := lastVersion == d.ResourceVersion
			mu.Unlock()
			if caughtUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the watch of deploy/%s has not seen version %s 30 s on", name, d.ResourceVersion)
			}
			time.Sleep(100 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestFunctionTimeout: an invocation that outlives spec.runtime.timeout
// gets the activator's 504 in time, and the function serves again.
func TestFunctionTimeout(t *testing.T) {
	fn := newFunction(t, "slow", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Timeout = &metav1.Duration{Duration: time.Second}
	})
	path := fmt.Sprintf("/%s/%s/", ns, fn.Name)
	// warm it, so the timed request measures the invocation alone
	if a := get(t, path+"?name=warm"); a.status != 200 || a.body != helloBody("warm", "/", fn.Name) {
		t.Fatalf("warm-up: %d %q", a.status, a.body)
	}
	// under the timeout: served
	if a := get(t, path+"?name=quick&sleep=200ms"); a.status != 200 || a.body != helloBody("quick", "/", fn.Name) {
		t.Errorf("a 200ms invocation with a 1s timeout: %d %q, want 200", a.status, a.body)
	}

	a := get(t, path+"?name=late&sleep=5s")
	t.Logf("sleep=5s with timeout 1s: HTTP %d in %s: %s", a.status, a.elapsed.Round(time.Millisecond), strings.TrimSpace(a.body))
	if a.status != 504 {
		t.Errorf("status %d, want 504", a.status)
	}
	var msg struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(a.body), &msg); err != nil {
		t.Errorf("body %q: %v", a.body, err)
	}
	if want := fmt.Sprintf("Gateway Timeout: function %s/%s timed out after 1s", ns, fn.Name); msg.Message != want {
		t.Errorf("message %q, want %q", msg.Message, want)
	}
	if a.header.Get("Apigw-Requestid") == "" {
		t.Errorf("no Apigw-Requestid header: %v", a.header)
	}
	// the timeout (1s) plus the activator's grace (1s) and some slack, well
	// before the 5s the function would have taken
	if a.elapsed < time.Second || a.elapsed > 3500*time.Millisecond {
		t.Errorf("answered after %s, want between 1s and 3.5s", a.elapsed.Round(time.Millisecond))
	}

	// and it serves again
	for i := range 3 {
		a := get(t, fmt.Sprintf("%s?name=again%d", path, i))
		t.Logf("after the timeout: HTTP %d in %s", a.status, a.elapsed.Round(time.Millisecond))
		if want := helloBody(fmt.Sprintf("again%d", i), "/", fn.Name); a.status != 200 || a.body != want {
			t.Errorf("request %d after the timeout: %d %q, want 200 %q", i, a.status, a.body, want)
		}
	}
}

// TestLambdaSDKInvoke: the AWS SDK for Go v2's Lambda client invokes a
// function through the activator's Invoke API.
func TestLambdaSDKInvoke(t *testing.T) {
	fn := newFunction(t, "sdk", nil)
	cl := sdkClient()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	event := `{"version":"2.0","rawPath":"/sdk","queryStringParameters":{"name":"sdk"},"requestContext":{"http":{"method":"POST","path":"/sdk"}}}`
	for _, name := range []string{ns + "." + fn.Name, ns + "." + fn.Name + ":$LATEST", ns + "/" + fn.Name} {
		start := time.Now()
		out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(event)})
		if err != nil {
			t.Fatalf("Invoke %s: %v", name, err)
		}
		t.Logf("Invoke %s: status %d, version %s, in %s: %s", name, out.StatusCode, aws.ToString(out.ExecutedVersion), time.Since(start).Round(time.Millisecond), out.Payload)
		if out.StatusCode != 200 {
			t.Errorf("Invoke %s: StatusCode %d, want 200", name, out.StatusCode)
		}
		if out.FunctionError != nil {
			t.Errorf("Invoke %s: FunctionError %q", name, aws.ToString(out.FunctionError))
		}
		if v := aws.ToString(out.ExecutedVersion); v != "$LATEST" {
			t.Errorf("Invoke %s: ExecutedVersion %q, want $LATEST", name, v)
		}
		var resp struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Body       string            `json:"body"`
		}
		if err := json.Unmarshal(out.Payload, &resp); err != nil {
			t.Fatalf("Invoke %s: payload %q: %v", name, out.Payload, err)
		}
		want := strings.Replace(helloBody("sdk", "/sdk", fn.Name), "GET", "POST", 1)
		if resp.StatusCode != 200 || resp.Body != want || resp.Headers["Content-Type"] != "text/plain" {
			t.Errorf("Invoke %s: payload %+v, want statusCode 200, text/plain, body %q", name, resp, want)
		}
	}

	// an unknown function is the SDK's ResourceNotFoundException
	_, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + ".nope"), Payload: []byte(`{}`)})
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("Invoke %s.nope: %v, want ResourceNotFoundException", ns, err)
	}
}

// TestBadSpecRefused: kubectl apply of an invalid Function fails and names
// the field; nothing is created.
func TestBadSpecRefused(t *testing.T) {
	img := builtImage(t)
	cases := []struct {
		name, spec, field string
	}{
		{"bad-timeout", "source: {image: " + img + "}\n  runtime: {timeout: 500ms}", "spec.runtime.timeout"},
		{"bad-idle", "source: {image: " + img + "}\n  scale: {scaleToZeroAfter: 1s}", "spec.scale.scaleToZeroAfter"},
		{"bad-source", "source: {image: " + img + ", git: {url: 'http://x/y.git'}}", "spec.source"},
		{"bad-memory", "source: {image: " + img + "}\n  runtime: {memory: 64Mi}", "spec.runtime.memory"},
		{"bad-format", "source: {image: " + img + "}\n  http: {eventFormat: SOAP}", "spec.http.eventFormat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := fmt.Sprintf("apiVersion: lambdapod.io/v1alpha1\nkind: Function\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  %s\n", c.name, ns, c.spec)
			out, errOut, err := kubectl(t, y, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply succeeded:\n%s\n%s", y, out)
			}
			t.Logf("refused: %s", strings.TrimSpace(errOut))
			if !strings.Contains(errOut, c.field) {
				t.Errorf("stderr does not name %s: %s", c.field, errOut)
			}
			var fn lambdapodv1alpha1.Function
			if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: c.name}, &fn); err == nil {
				t.Errorf("fn/%s exists after a refused apply", c.name)
			}
		})
	}
}

//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// extensionName is the external extension in the image bash-ext-image.txt
// names (hack/dev/bashimage/extension, at /opt/extensions/event-printer):
// it registers under its file name and prints a line per event it gets.
const extensionName = "event-printer"

// bashExtImage is the bash+curl runtime image with the extension, which
// make dev pushed.
func bashExtImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(devDir, "bash-ext-image.txt"))
	if err != nil {
		t.Fatalf("the bash+curl image with an extension that make dev pushes: %v (run make dev)", err)
	}
	return strings.TrimSpace(string(b))
}

// TestExtensionEvents: an image that carries an external extension in
// /opt/extensions, as a Lambda layer puts it there, runs it beside the
// bootstrap on the cluster: it registers before the first invocation
// starts, gets one INVOKE event with the request id the caller's SDK got
// for each invocation through the activator, and when the function scales
// to zero a SHUTDOWN event with the reason spindown, before its container
// ends. All of it is in the function container's log, with each
// invocation's START, END and REPORT lines.
func TestExtensionEvents(t *testing.T) {
	t.Parallel()
	fn := newFunction(t, "ext-events", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = bashExtImage(t)
		// one pod sees every invocation, and is gone soon after the last
		fn.Spec.Scale.MaxReplicas = 1
		fn.Spec.Scale.ScaleToZeroAfter = &metav1.Duration{Duration: 10 * time.Second}
	})
	const n = 5
	ids := make([]string, 0, n)
	ids = append(ids, invokeEcho(t, fn, 0)) // from zero: makes the pod
	pod := onlyPod(t, fn.Name)
	logs := followLog(t, pod, contract.FunctionContainer)
	for i := 1; i < n; i++ {
		ids = append(ids, invokeEcho(t, fn, i))
	}

	took := waitPods(t, ns, fn.Name, 0, 3*time.Minute)
	t.Logf("scaled to zero %s after the last invocation", took.Round(time.Second))
	log := logs.wait(t, time.Minute)
	t.Logf("the function container's log:\n%s", log)

	prefix := "EXTENSION " + extensionName + " "
	registered := strings.Index(log, prefix+"REGISTERED "+fn.Name+"\n")
	firstStart := strings.Index(log, "START RequestId: ")
	if registered < 0 || firstStart < registered {
		t.Errorf("the extension registered at %d, the first START at %d: want the registration, with the function's name, before the first invocation", registered, firstStart)
	}
	if got := strings.Count(log, prefix+"INVOKE "); got != n {
		t.Errorf("%d INVOKE events, want %d, one per invocation", got, n)
	}
	lastReport := -1
	for _, id := range ids {
		if c := strings.Count(log, prefix+"INVOKE "+id+"\n"); c != 1 {
			t.Errorf("request %s: %d INVOKE events with its id, want 1", id, c)
		}
		start, end, report := strings.Index(log, "START RequestId: "+id), strings.Index(log, "END RequestId: "+id), strings.Index(log, "REPORT RequestId: "+id)
		if start < 0 || end < start || report < end {
			t.Errorf("request %s: START at %d, END at %d, REPORT at %d, want all three in that order", id, start, end, report)
		}
		lastReport = max(lastReport, report)
	}
	shutdown := strings.Index(log, prefix+"SHUTDOWN spindown\n")
	if shutdown < 0 || shutdown < lastReport {
		t.Errorf("SHUTDOWN spindown at %d, the last REPORT at %d: want the extension told of the spin-down after the last invocation", shutdown, lastReport)
	}
	if c := strings.Count(log, prefix+"SHUTDOWN "); c != 1 {
		t.Errorf("%d SHUTDOWN events, want 1", c)
	}
}

// TestExtensionTelemetryOnSandboxHost: an extension that subscribes to the
// Telemetry API with the destination http://sandbox.localdomain:PORT, as
// Lambda's samples do, gets the platform's events there: the name resolves
// to the pod itself (its host alias), and every invocation's
// platform.start and platform.report reach the extension's listener.
func TestExtensionTelemetryOnSandboxHost(t *testing.T) {
	t.Parallel()
	fn := newFunction(t, "ext-telemetry", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = bashExtImage(t)
		fn.Spec.Scale.MaxReplicas = 1
		fn.Spec.Runtime.Env = []corev1.EnvVar{{Name: "EXTENSION_TELEMETRY_PORT", Value: "4243"}}
	})
	var ids []string
	for i := range 3 {
		ids = append(ids, invokeEcho(t, fn, i))
	}
	prefix := "EXTENSION " + extensionName + " "
	var log string
	// Telemetry is buffered for up to 25 ms (the extension's timeoutMs),
	// then delivered: wait for the last invocation's report.
	deadline := time.Now().Add(30 * time.Second)
	for {
		log = containerLog(t, onlyPod(t, fn.Name), contract.FunctionContainer)
		if strings.Contains(log, prefix+"TELEMETRY platform.report "+ids[len(ids)-1]+"\n") || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("the function container's log:\n%s", log)
	if !strings.Contains(log, prefix+"SUBSCRIBED "+contract.SandboxHost+":4243\n") {
		t.Errorf("the extension did not subscribe to the Telemetry API with a destination on %s", contract.SandboxHost)
	}
	for _, id := range ids {
		for _, typ := range []string{"platform.start", "platform.report"} {
			if c := strings.Count(log, prefix+"TELEMETRY "+typ+" "+id+"\n"); c != 1 {
				t.Errorf("request %s: the extension received %d %s events for it, want 1", id, c, typ)
			}
		}
	}
}

// invokeEcho invokes fn (the bash runtime's echo handler) through the
// activator with the SDK and returns the request id the SDK got; the
// answer must be the event.
func invokeEcho(t *testing.T, fn *lambdapodv1alpha1.Function, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	event := fmt.Sprintf(`{"invocation":%d}`, i)
	out, err := sdkClient().Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + "." + fn.Name), Payload: []byte(event),
		InvocationType: types.InvocationTypeRequestResponse})
	if err != nil {
		t.Fatalf("Invoke %d: %v", i, err)
	}
	if out.FunctionError != nil || strings.TrimSpace(string(out.Payload)) != event {
		t.Fatalf("Invoke %d: function error %q, payload %q, want the event back", i, aws.ToString(out.FunctionError), out.Payload)
	}
	id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if !ok || id == "" {
		t.Fatalf("Invoke %d: no request id in the answer", i)
	}
	return id
}

// onlyPod is the function's one pod that is not terminating.
func onlyPod(t *testing.T, name string) string {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{contract.LabelFunction: name}); err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p.Name)
		}
	}
	if len(pods) != 1 {
		dump(t, name)
		t.Fatalf("fn/%s has pods %v, want one", name, pods)
	}
	return pods[0]
}

// containerLog is the log of a container of pod so far.
func containerLog(t *testing.T, pod, container string) string {
	t.Helper()
	out, errOut, err := kubectl(t, "", "-n", ns, "logs", pod, "-c", container)
	if err != nil {
		t.Fatalf("kubectl logs %s -c %s: %v: %s", pod, container, err, errOut)
	}
	return out
}

// followedLog is a container's log read as it is written, from its
// beginning until the container ends.
type followedLog struct {
	mu   sync.Mutex
	b    strings.Builder
	err  error
	done chan struct{}
}

// followLog follows the log of a container of pod (kubectl logs -f): the
// stream ends when the container does, so it keeps what the container
// wrote while it was stopped, after the pod was deleted.
func followLog(t *testing.T, pod, container string) *followedLog {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatalf("following the log of %s -c %s: %v", pod, container, err)
	}
	l := &followedLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer stream.Close()
		sc := bufio.NewScanner(stream)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.b.WriteString(sc.Text())
			l.b.WriteByte('\n')
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.err = sc.Err()
		l.mu.Unlock()
	}()
	return l
}

// wait waits for the end of the stream and returns the log.
func (l *followedLog) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("the log stream has not ended %s on; so far:\n%s", timeout, l.b.String())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		t.Errorf("reading the log: %v", l.err)
	}
	return l.b.String()
}

// Package integration tests the activator and the autoscaler against a real
// kube-apiserver (envtest), with real runtime sidecars running real
// aws-lambda-go bootstraps as local processes, each in a network namespace
// of the test's own (the API server refuses loopback EndpointSlice
// addresses). The tests publish the EndpointSlices themselves, as the
// endpointslice controller would, since envtest runs no controllers.
//
// They need root and iproute2 for the network namespaces: without them they
// are skipped on a developer's machine and fail under CI.
package integration

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/testproc"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/server"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/autoscaler"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

var bin struct{ sidecar, bootstrap, activator string }

var skipReason string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		skipReason = "needs root for network namespaces"
	} else if _, err := exec.LookPath("ip"); err != nil {
		skipReason = "needs the ip command (iproute2)"
	}
	if skipReason != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "lambdapod-activator-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.sidecar = filepath.Join(dir, "runtime-sidecar")
	bin.bootstrap = filepath.Join(dir, "bootstrap")
	bin.activator = filepath.Join(dir, "activator")
	for _, b := range []struct{ out, pkg string }{
		{bin.sidecar, "../../runtime-sidecar/cmd"},
		{bin.bootstrap, "./testdata/bootstrap"},
		{bin.activator, "../cmd"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// --- network namespaces and sidecars ---------------------------------------

var podSeq atomic.Int32

// pod is a runtime sidecar with its bootstrap in a network namespace of its
// own, reachable from the host at IP:8080.
//
// The namespace is held by a process (unshare), not named with `ip netns
// add`: that makes /run/netns a bind mount of its own, and the network
// namespaces a container runtime made there before can then no longer be
// removed, so a cluster running beside the tests could not delete its pods.
type pod struct {
	t      *testing.T
	holder *exec.Cmd // sleeps in the pod's network namespace
	netns  string    // /proc/<holder>/ns/net
	veth   string
	IP     string
	cmd    *exec.Cmd
	logs   *testproc.Buffer
	exited chan struct{}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startPod starts a sidecar for function fn (concurrency conc, timeout) in a
// fresh network namespace, with env added to its environment, and waits
// until it is ready.
func startPod(t *testing.T, fn string, conc int, timeout time.Duration, id string, env ...string) *pod {
	t.Helper()
	i := int(podSeq.Add(1))
	if i > 60 {
		t.Fatal("too many pods for one /24")
	}
	pid := os.Getpid() % 100000
	p := &pod{t: t, veth: fmt.Sprintf("lpa%dh%d", pid, i), logs: &testproc.Buffer{}, exited: make(chan struct{})}
	peer := fmt.Sprintf("lpa%dp%d", pid, i)
	// One /30 per pod out of 10.77.<pid%250>.0/24: host .4i+1, pod .4i+2.
	net := fmt.Sprintf("10.77.%d.", os.Getpid()%250)
	hostIP, podIP := fmt.Sprintf("%s%d", net, 4*i+1), fmt.Sprintf("%s%d", net, 4*i+2)
	p.IP = podIP
	t.Cleanup(p.cleanup)
	p.holder = exec.Command("unshare", "--net", "sleep", "infinity")
	if err := p.holder.Start(); err != nil {
		t.Fatal(err)
	}
	holder := strconv.Itoa(p.holder.Process.Pid)
	p.netns = "/proc/" + holder + "/ns/net"
	// unshare has made the namespace once the holder's link differs from ours.
	eventually(t, 5*time.Second, "the pod's network namespace", func() bool {
		mine, _ := os.Readlink("/proc/self/ns/net")
		its, err := os.Readlink(p.netns)
		return err == nil && its != mine
	})
	in := func(args ...string) { run(t, append([]string{"nsenter", "--net=" + p.netns}, args...)...) }
	run(t, "ip", "link", "add", p.veth, "type", "veth", "peer", "name", peer)
	run(t, "ip", "link", "set", peer, "netns", holder)
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", p.veth)
	run(t, "ip", "link", "set", p.veth, "up")
	in("ip", "addr", "add", podIP+"/30", "dev", peer)
	in("ip", "link", "set", peer, "up")
	in("ip", "link", "set", "lo", "up")

	p.cmd = exec.Command("nsenter", "--net="+p.netns, bin.sidecar,
		"--invoke-addr", podIP+":8080", "--runtime-api", "127.0.0.1:9001",
		"--function-name", fn, "--timeout", timeout.String(), "--concurrency", fmt.Sprint(conc),
		"--max-inflight", fmt.Sprint(conc), // as the manager renders it
		"--drain-timeout", "30s", "--", bin.bootstrap)
	p.cmd.Env = append([]string{"POD_ID=" + id, "PATH=" + os.Getenv("PATH"), "HOME=/tmp"}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + podIP + ":8080/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("sidecar exited before it was ready:\n%s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar at %s not ready after 20s (last error %v):\n%s", podIP, err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM (the sidecar drains) and waits for the exit.
func (p *pod) terminate(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		t.Errorf("sidecar did not exit after SIGTERM:\n%s", p.logs.String())
	}
}

func (p *pod) cleanup() {
	if p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.holder != nil && p.holder.Process != nil {
		_ = p.holder.Process.Kill()
		_ = p.holder.Wait()
	}
	_ = exec.Command("ip", "link", "del", p.veth).Run()
	if p.t.Failed() {
		p.t.Logf("sidecar %s logs:\n%s", p.IP, p.logs.String())
	}
}

// --- Kubernetes objects -----------------------------------------------------

type endpoint struct {
	ip                          string
	ready, serving, terminating bool
}

func ready(ip string) endpoint { return endpoint{ip: ip, ready: true, serving: true} }

// starting is a pod whose readiness the kubelet has not seen yet.
func starting(ip string) endpoint { return endpoint{ip: ip} }

// terminating is a pod that got SIGTERM: not ready, still serving.
func terminating(ip string) endpoint {
	return endpoint{ip: ip, ready: false, serving: true, terminating: true}
}

// publish writes the function's EndpointSlice as the endpointslice
// controller would (with the Service's labels copied).
func publish(t *testing.T, c client.Client, ns, fn string, eps ...endpoint) {
	t.Helper()
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: fn + "-x1", Namespace: ns}}
	ctx := context.Background()
	err := c.Get(ctx, client.ObjectKeyFromObject(s), s)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	s.Labels = map[string]string{
		discoveryv1.LabelServiceName:     fn,
		discoveryv1.LabelManagedBy:       "endpointslice-controller.k8s.io",
		"app.kubernetes.io/managed-by":   "lambdapod",
		contract.LabelFunction:           fn,
		"service.kubernetes.io/headless": "",
	}
	s.AddressType = discoveryv1.AddressTypeIPv4
	s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}}
	s.Endpoints = nil
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating),
			},
		})
	}
	if apierrors.IsNotFound(err) {
		err = c.Create(ctx, s)
	} else {
		err = c.Update(ctx, s)
	}
	if err != nil {
		t.Fatal(err)
	}
}

type fnOpts struct {
	conc             int32
	timeout          time.Duration
	scaleToZeroAfter time.Duration
	replicas         int32
	maxReplicas      int32
	// public makes the Function's authType None (else RBAC, the default).
	public bool
	// async is the Function's spec.async.
	async *lambdapodv1alpha1.AsyncSpec
}

// makeFunction creates a Function and the Deployment the controller would
// make for it.
func makeFunction(t *testing.T, c client.Client, ns, name string, o fnOpts) {
	t.Helper()
	ctx := context.Background()
	if o.conc == 0 {
		o.conc = 1
	}
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	f := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source:  lambdapodv1alpha1.Source{Image: "example.com/fn:1"},
			Runtime: lambdapodv1alpha1.RuntimeSpec{Concurrency: o.conc, Timeout: &metav1.Duration{Duration: o.timeout}},
		},
	}
	f.Spec.Scale.MaxReplicas = o.maxReplicas
	if o.scaleToZeroAfter > 0 {
		f.Spec.Scale.ScaleToZeroAfter = &metav1.Duration{Duration: o.scaleToZeroAfter}
	}
	if o.public {
		f.Spec.AuthType = lambdapodv1alpha1.AuthNone
	}
	f.Spec.Async = o.async
	if err := c.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "lambdapod", contract.LabelFunction: name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{contract.LabelFunction: name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "example.com/fn:1"}}},
			},
		},
	}
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func replicas(t *testing.T, c client.Client, ns, name string) int32 {
	t.Helper()
	var d appsv1.Deployment
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(d.Spec.Replicas, 1)
}

func namespace(t *testing.T, c client.Client, name string) string {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// --- the activator and the autoscaler ----------------------------------------

func startActivator(t *testing.T, e *testenv.Env, cfg server.Config) *server.Activator {
	t.Helper()
	a, _ := startActivatorCtl(t, e, cfg)
	return a
}

// startActivatorCtl also returns a function that stops the activator (as
// SIGTERM does) and returns Run's result.
func startActivatorCtl(t *testing.T, e *testenv.Env, cfg server.Config) (*server.Activator, func() error) {
	t.Helper()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.EndpointSliceSelector = server.DefaultEndpointSliceSelector
	cfg.Handler.Route.DefaultNamespace = "default"
	if cfg.ActivatorID == "" {
		cfg.ActivatorID = "activator-" + t.Name()
	}
	a, err := server.New(cfg, e.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("activator: %v", err)
		}
	})
	select {
	case <-a.Listening():
	case err := <-done:
		t.Fatalf("activator: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("activator not listening after 30s")
	}
	return a, stop
}

func startAutoscaler(t *testing.T, e *testenv.Env) string {
	t.Helper()
	as := autoscaler.New(e.Client, autoscaler.Options{Interval: 250 * time.Millisecond})
	srv := httptest.NewServer(as.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = as.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.URL + stats.Path
}

type answer struct {
	code   int
	header http.Header
	body   string
	err    error
}

func get(url string) answer {
	resp, err := http.Get(url)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func post(url, body string) answer {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- the tests ----------------------------------------------------------------

// needRoot skips the test where it cannot run (no root for network
// namespaces); CI must not count that as passed, so there it fails.
func needRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(skipReason)
		}
		t.Skip(skipReason)
	}
}

func TestActivator(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	statsURL := startAutoscaler(t, e)
	a := startActivator(t, e, server.Config{
		AutoscalerURL: statsURL,
		Handler:       handler.Options{ActivationTimeout: 60 * time.Second, TimeoutGrace: time.Second},
		MaxQueue:      1000,
		DrainDelay:    10 * time.Millisecond,
	})
	base := "http://" + a.Addr()

	t.Run("BurstAtZeroAllSucceedOnceReady", func(t *testing.T) {
		ns := namespace(t, e.Client, "burst")
		// maxReplicas above what the burst needs, so that the need shows.
		makeFunction(t, e.Client, ns, "hello", fnOpts{conc: 2, replicas: 0, maxReplicas: 30})
		publish(t, e.Client, ns, "hello") // the Service exists, no endpoint yet
		const n = 40
		answers := make(chan answer, n)
		for i := 0; i < n; i++ {
			go func(i int) {
				answers <- post(fmt.Sprintf("%s/%s/hello/items/%d?x=1", base, ns, i), fmt.Sprintf("payload-%d", i))
			}(i)
		}
		// The cold requests poke the autoscaler, which starts the pods the
		// queue needs at once: ⌈40 queued / target 2⌉ = 20.
		start := time.Now()
		eventually(t, 3*time.Second, "the autoscaler starts ⌈40 queued / target 2⌉ = 20 pods", func() bool {
			return replicas(t, e.Client, ns, "hello") == 20
		})
		t.Logf("0 -> %d replicas %v after the burst began", replicas(t, e.Client, ns, "hello"), time.Since(start).Round(time.Millisecond))
		select {
		case a := <-answers:
			t.Fatalf("a request was answered before any pod was ready: %+v", a)
		case <-time.After(200 * time.Millisecond):
		}
		if got := replicas(t, e.Client, ns, "hello"); got != 20 {
			t.Fatalf("replicas %d while the 40 are held, want ⌈40 / 2⌉ = 20", got)
		}
		p := startPod(t, "hello", 2, 5*time.Second, "pod-a")
		publish(t, e.Client, ns, "hello", ready(p.IP))
		for i := 0; i < n; i++ {
			select {
			case got := <-answers:
				if got.err != nil || got.code != 200 || got.header.Get("X-Pod") != "pod-a" || got.header.Get("Content-Type") != "text/plain" ||
					got.header.Get("Set-Cookie") != "seen=1; Path=/" || !strings.HasPrefix(got.body, "POST /items/") || !strings.Contains(got.body, " payload-") {
					t.Fatalf("request answered %+v", got)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("only %d of %d held requests were answered", i, n)
			}
		}
		m := get("http://" + a.AdminAddr() + "/metrics")
		for _, want := range []string{
			`lambdapod_activator_cold_starts_total{function="hello",namespace="burst"} 40`,
			`lambdapod_activator_requests_total{code="200",function="hello",namespace="burst"} 40`,
			`lambdapod_activator_hold_seconds_count{function="hello",namespace="burst"} 40`,
			`lambdapod_activator_ready_pods{function="hello",namespace="burst"} 1`,
			`lambdapod_activator_queued_requests{function="hello",namespace="burst"} 0`,
		} {
			if !strings.Contains(m.body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("HeldRequestServedByProbeBeforeTheSliceSaysReady", func(t *testing.T) {
		ns := namespace(t, e.Client, "probe")
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 0})
		publish(t, e.Client, ns, "fn")
		answers := make(chan answer, 1)
		go func() { answers <- post(base+"/"+ns+"/fn/x", "held") }()
		select {
		case a := <-answers:
			t.Fatalf("answered with no pod: %+v", a)
		case <-time.After(200 * time.Millisecond):
		}
		p := startPod(t, "fn", 1, 5*time.Second, "pod-p")
		// The slice lists the pod, not ready, and never says more: only
		// the activator's own /readyz probe can put it in rotation.
		publish(t, e.Client, ns, "fn", starting(p.IP))
		published := time.Now()
		select {
		case got := <-answers:
			if got.err != nil || got.code != 200 || got.header.Get("X-Pod") != "pod-p" {
				t.Fatalf("request answered %+v", got)
			}
			t.Logf("held request answered %v after the not-ready slice was published", time.Since(published).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatal("held request not answered though the pod's /readyz says ready")
		}
		m := get("http://" + a.AdminAddr() + "/metrics")
		if want := `lambdapod_activator_probe_ready_pods_total{function="fn",namespace="probe"} 1`; !strings.Contains(m.body, want) {
			t.Errorf("metrics lack %s", want)
		}
		// Terminating: out of rotation at once, never probed back in.
		publish(t, e.Client, ns, "fn", terminating(p.IP))
		eventually(t, 5*time.Second, "the terminating pod leaves the rotation", func() bool {
			return a.Pools().Get(keyOf(ns, "fn")).Ready() == 0
		})
	})

	t.Run("ReadinessFailsFirstAndInFlightRequestsFinishAtShutdown", func(t *testing.T) {
		ns := namespace(t, e.Client, "shutdown")
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 1})
		p := startPod(t, "fn", 1, 5*time.Second, "pod-s")
		publish(t, e.Client, ns, "fn", ready(p.IP))
		b, stop := startActivatorCtl(t, e, server.Config{DrainDelay: 500 * time.Millisecond})
		if got := get("http://" + b.AdminAddr() + "/readyz"); got.code != 200 {
			t.Fatalf("readyz before the stop: %+v", got)
		}
		eventually(t, 5*time.Second, "the pod in rotation", func() bool { return b.Pools().Get(keyOf(ns, "fn")).Ready() == 1 })
		long := make(chan answer, 1)
		go func() { long <- get("http://" + b.Addr() + "/" + ns + "/fn/slow?sleepMs=1500") }()
		eventually(t, 5*time.Second, "the request in flight", func() bool {
			in, _, _ := b.Pools().Get(keyOf(ns, "fn")).Counts()
			return in == 1
		})
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		eventually(t, 400*time.Millisecond, "readyz fails at once", func() bool {
			return get("http://"+b.AdminAddr()+"/readyz").code == 503
		})
		if got := get("http://" + b.Addr() + "/" + ns + "/fn/during-drain-delay"); got.code != 200 {
			t.Fatalf("a request during the drain delay: %+v", got)
		}
		got := <-long
		if got.code != 200 || got.body != "GET /slow " {
			t.Fatalf("the in-flight request: %+v", got)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("AWSSDKInvokesThroughTheActivator", func(t *testing.T) {
		ns := namespace(t, e.Client, "sdk")
		makeFunction(t, e.Client, ns, "echo", fnOpts{replicas: 1})
		p := startPod(t, "echo", 1, 5*time.Second, "pod-sdk")
		publish(t, e.Client, ns, "echo", ready(p.IP))
		cl := lambda.New(lambda.Options{
			BaseEndpoint: aws.String(base),
			Region:       "us-east-1",
			Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		})
		ctx := context.Background()
		out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk.echo"), Payload: []byte(`{"hello":"world"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" ||
			string(out.Payload) != `{"event":{"hello":"world"},"inflight":1,"pod":"pod-sdk"}` {
			t.Fatalf("Invoke: status %d error %v version %v payload %s", out.StatusCode, aws.ToString(out.FunctionError), aws.ToString(out.ExecutedVersion), out.Payload)
		}
		// X-Amz-Log-Type: Tail reaches the sidecar, and the log tail it
		// answers with comes back.
		out, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk.echo"), Payload: []byte(`{}`), LogType: lambdatypes.LogTypeTail})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		if !strings.HasPrefix(string(tail), "START RequestId: "+id+" Version: $LATEST\n") || !strings.Contains(string(tail), "\nEND RequestId: "+id+"\nREPORT RequestId: "+id+"\tDuration: ") {
			t.Fatalf("Invoke with LogType Tail: request id %s, LogResult %q", id, tail)
		}
		arn := "arn:aws:lambda:us-east-1:123456789012:function:sdk.echo:$LATEST"
		out, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn), Payload: []byte(`{"fail":true}`)})
		if err != nil {
			t.Fatal(err)
		}
		if out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "requested failure") {
			t.Fatalf("Invoke of a failing function: %d %v %s", out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
		}
		out, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk.echo"), InvocationType: lambdatypes.InvocationTypeDryRun})
		if err != nil || out.StatusCode != 204 {
			t.Fatalf("DryRun: %v %+v", err, out)
		}
		_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdk.missing"), Payload: []byte(`{}`)})
		var nf *lambdatypes.ResourceNotFoundException
		if !errors.As(err, &nf) || !strings.Contains(nf.ErrorMessage(), "Function not found: arn:aws:lambda:us-east-1:000000000000:function:sdk.missing") {
			t.Fatalf("unknown function: %v", err)
		}
	})

	t.Run("QueueOverflowAndActivationTimeout", func(t *testing.T) {
		ns := namespace(t, e.Client, "overflow")
		makeFunction(t, e.Client, ns, "cold", fnOpts{})
		small := startActivator(t, e, server.Config{
			Handler:    handler.Options{ActivationTimeout: 1500 * time.Millisecond, RetryAfter: 2 * time.Second, OverflowStatus: 429},
			MaxQueue:   2,
			DrainDelay: 10 * time.Millisecond,
		})
		sbase := "http://" + small.Addr()
		held := make(chan answer, 2)
		start := time.Now()
		for i := 0; i < 2; i++ {
			go func() { held <- get(sbase + "/" + ns + "/cold/") }()
		}
		eventually(t, 2*time.Second, "two requests held", func() bool {
			_, q, _ := small.Pools().Get(keyOf(ns, "cold")).Counts()
			return q == 2
		})
		got := get(sbase + "/" + ns + "/cold/")
		if got.code != 429 || got.header.Get("Retry-After") != "2" || !strings.Contains(got.body, "too many requests are waiting for function overflow/cold") {
			t.Fatalf("overflow on an HTTP route: %+v", got)
		}
		got = post(sbase+"/2015-03-31/functions/overflow.cold/invocations", `{}`)
		if got.code != 429 || got.header.Get("X-Amzn-ErrorType") != "TooManyRequestsException" || got.header.Get("Retry-After") != "2" ||
			!strings.Contains(got.body, `"Type":"User"`) || !strings.Contains(got.body, "Rate Exceeded") {
			t.Fatalf("overflow on the Invoke API: %+v", got)
		}
		for i := 0; i < 2; i++ {
			got := <-held
			if got.code != 504 || !strings.Contains(got.body, "activation timed out: function overflow/cold had no ready pod after 1.5s") {
				t.Fatalf("held request: %+v", got)
			}
		}
		if d := time.Since(start); d < 1500*time.Millisecond || d > 5*time.Second {
			t.Fatalf("activation timeout after %v, want about 1.5s", d)
		}
		got = post(sbase+"/2015-03-31/functions/overflow.cold/invocations", `{}`)
		if got.code != 504 || got.header.Get("X-Amzn-ErrorType") != "ServiceException" || !strings.Contains(got.body, "activation timed out") {
			t.Fatalf("activation timeout on the Invoke API: %+v", got)
		}
	})

	t.Run("NoRequestFailsWhileAPodIsRemoved", func(t *testing.T) {
		ns := namespace(t, e.Client, "drain")
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 2})
		pa := startPod(t, "fn", 1, 10*time.Second, "pod-a")
		pb := startPod(t, "fn", 1, 10*time.Second, "pod-b")
		publish(t, e.Client, ns, "fn", ready(pa.IP), ready(pb.IP))
		eventually(t, 5*time.Second, "both pods in rotation", func() bool {
			_, _, pods := a.Pools().Get(keyOf(ns, "fn")).Counts()
			return pods == 2
		})
		// Two long requests: one on each pod (concurrency 1).
		long := make(chan answer, 2)
		for i := 0; i < 2; i++ {
			go func() { long <- get(base + "/" + ns + "/fn/long?sleepMs=1500") }()
		}
		eventually(t, 5*time.Second, "both long requests in flight", func() bool {
			in, _, _ := a.Pools().Get(keyOf(ns, "fn")).Counts()
			return in == 2
		})
		// Pod a starts terminating: it leaves the rotation and gets SIGTERM.
		publish(t, e.Client, ns, "fn", terminating(pa.IP), ready(pb.IP))
		eventually(t, 5*time.Second, "pod a out of rotation", func() bool {
			_, _, pods := a.Pools().Get(keyOf(ns, "fn")).Counts()
			return pods == 1
		})
		stopped := make(chan struct{})
		go func() { pa.terminate(t); close(stopped) }()
		// New requests wait for pod b's slot and go to pod b only.
		var wg sync.WaitGroup
		short := make(chan answer, 6)
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); short <- get(fmt.Sprintf("%s/%s/fn/short/%d", base, ns, i)) }(i)
		}
		for i := 0; i < 2; i++ {
			got := <-long
			if got.err != nil || got.code != 200 || !strings.HasPrefix(got.body, "GET /long ") {
				t.Fatalf("in-flight request during the removal: %+v", got)
			}
		}
		wg.Wait()
		close(short)
		for got := range short {
			if got.err != nil || got.code != 200 || got.header.Get("X-Pod") != "pod-b" || !strings.HasPrefix(got.body, "GET /short/") {
				t.Fatalf("request after the removal: %+v", got)
			}
		}
		<-stopped
		publish(t, e.Client, ns, "fn", ready(pb.IP))
	})

	t.Run("ScaleToZeroAfterTheIdleWindowAndNotBefore", func(t *testing.T) {
		ns := namespace(t, e.Client, "idle")
		const idle = 10 * time.Second // the API's minimum
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 1, scaleToZeroAfter: idle})
		p := startPod(t, "fn", 1, 5*time.Second, "pod-idle")
		publish(t, e.Client, ns, "fn", ready(p.IP))
		// Traffic for 4 s: one request a second keeps the pod.
		var last time.Time
		for i := 0; i < 4; i++ {
			got := get(base + "/" + ns + "/fn/ping")
			if got.code != 200 || got.body != "GET /ping " {
				t.Fatalf("request: %+v", got)
			}
			last = time.Now()
			if r := replicas(t, e.Client, ns, "fn"); r != 1 {
				t.Fatalf("replicas %d during traffic", r)
			}
			time.Sleep(time.Second)
		}
		// Idle: still 1 until scaleToZeroAfter has passed since the last
		// request (the activator reports once a second)...
		for time.Since(last) < idle-1500*time.Millisecond {
			if r := replicas(t, e.Client, ns, "fn"); r != 1 {
				t.Fatalf("replicas %d only %v after the last request", r, time.Since(last).Round(time.Millisecond))
			}
			time.Sleep(250 * time.Millisecond)
		}
		// ...then 0.
		eventually(t, idle, "scale to zero after the idle window", func() bool { return replicas(t, e.Client, ns, "fn") == 0 })
		gone := time.Since(last)
		t.Logf("scaled to zero %v after the last request (scaleToZeroAfter %v)", gone.Round(time.Millisecond), idle)
		if gone > idle+4*time.Second {
			t.Fatalf("scaled to zero only %v after the last request", gone)
		}
		// The autoscaler owns spec.replicas under its field manager.
		var d appsv1.Deployment
		_ = e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "fn"}, &d)
		owned := false
		for _, mf := range d.ManagedFields {
			if mf.Manager == contract.AutoscalerFieldManager && strings.Contains(string(mf.FieldsV1.Raw), "f:replicas") {
				owned = true
			}
		}
		if !owned {
			t.Fatalf("spec.replicas not owned by %s: %+v", contract.AutoscalerFieldManager, d.ManagedFields)
		}
	})
}

func keyOf(ns, name string) queue.Key { return queue.Key{Namespace: ns, Name: name} }

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// activatorPods returns the base URLs of the running activator pods: the
// chart installs two, and these tests send to each of them in turn, so that
// both activators certainly hold requests for the same pod.
func activatorPods(t *testing.T) []string {
	t.Helper()
	var pods corev1.PodList
	if err := k.List(context.Background(), &pods, client.InNamespace(systemNS),
		client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			urls = append(urls, "http://"+net.JoinHostPort(p.Status.PodIP, "8080"))
		}
	}
	if len(urls) < 2 {
		t.Fatalf("%d activator pods running, want the chart's default of 2", len(urls))
	}
	sort.Strings(urls)
	return urls
}

// spread sends n GETs of path(i) at once, the i-th to activator i%len, and
// returns what came back in the order sent.
func spread(acts []string, n int, path func(i int) string) []sent {
	results := make([]sent, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := tryGet(acts[i%len(acts)] + path(i))
			results[i] = sent{a, err}
		}()
	}
	close(start)
	wg.Wait()
	return results
}

// inFlight is what the function saw: the invocations its process ran at
// once, from the answer's header.
func inFlight(a answer) int {
	n, err := strconv.Atoi(a.header.Get("X-Invocations-In-Flight"))
	if err != nil {
		return -1
	}
	return n
}

// TestTwoActivatorsOneSlot: a function of concurrency 1, one pod at most,
// a 2s timeout; six parallel requests through both activators, each running
// 1.5s. Every one gets 200 and the function's answer, in turn (one at a
// time on the pod), and none is told the function timed out while it only
// waited.
func TestTwoActivatorsOneSlot(t *testing.T) {
	acts := activatorPods(t)
	fn := newFunction(t, "oneslot", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Timeout = &metav1.Duration{Duration: 2 * time.Second}
		fn.Spec.Runtime.Concurrency = 1
		fn.Spec.Scale.MaxReplicas = 1
	})
	// Warm through each activator, so that the six measure the sharing of
	// one slot and not the cold start.
	for _, a := range acts {
		if got, err := tryGet(fmt.Sprintf("%s/%s/%s/?name=warm", a, ns, fn.Name)); err != nil || got.status != 200 {
			t.Fatalf("warm-up through %s: %+v %v", a, got, err)
		}
	}
	t0 := time.Now()
	results := spread(acts, 6, func(i int) string { return fmt.Sprintf("/%s/%s/six/%d?name=s%d&sleep=1500ms", ns, fn.Name, i, i) })
	failed, lat := checkAll(t, results, func(i int) string { return helloBody(fmt.Sprintf("s%d", i), fmt.Sprintf("/six/%d", i), fn.Name) })
	t.Logf("six requests of 1.5s through %d activators: answered at %v (total %s)", len(acts), lat, time.Since(t0).Round(time.Millisecond))
	if failed > 0 {
		t.Fatalf("%d of 6 failed", failed)
	}
	for i, d := range lat {
		// In turn: the i-th answer needs i+1 runs of 1.5s.
		if min := time.Duration(i+1) * 1500 * time.Millisecond; d < min-100*time.Millisecond {
			t.Errorf("answer %d after %s, before %d runs of 1.5s could end: two ran at once", i, d, i+1)
		}
	}
	for i, r := range results {
		if n := inFlight(r.a); n != 1 {
			t.Errorf("request %d: the function ran %d invocations at once", i, n)
		}
	}
}

// TestBurstOneSlotPerPod: 200 requests at once at zero, through both
// activators, to a function of concurrency 1 with up to 3 pods: all get
// 200 and the function's answer, no process runs two invocations at once,
// and no more than 3 pods ever serve.
func TestBurstOneSlotPerPod(t *testing.T) {
	const n = 200
	acts := activatorPods(t)
	fn := newFunction(t, "oneslotburst", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Concurrency = 1
		fn.Spec.Scale.MaxReplicas = 3
	})
	waitPods(t, ns, fn.Name, 0, 2*time.Minute)
	t0 := time.Now()
	results := spread(acts, n, func(i int) string { return fmt.Sprintf("/%s/%s/b/%d?name=b%d", ns, fn.Name, i, i) })
	total := time.Since(t0)
	failed, lat := checkAll(t, results, func(i int) string { return helloBody(fmt.Sprintf("b%d", i), fmt.Sprintf("/b/%d", i), fn.Name) })
	podsSeen := map[string]int{}
	for i, r := range results {
		if r.err != nil {
			continue
		}
		podsSeen[r.a.header.Get("X-Pod")]++
		if m := inFlight(r.a); m != 1 {
			t.Errorf("request %d: a process ran %d invocations at once", i, m)
		}
	}
	t.Logf("%d requests at zero through %d activators: %d ok, %d failed in %s; answers by pod %v", n, len(acts), len(lat), failed, total.Round(time.Millisecond), podsSeen)
	if len(lat) > 0 {
		t.Logf("latency: median %s p90 %s max %s", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, n)
	}
	if len(podsSeen) > 3 {
		t.Errorf("%d pods answered, want at most maxReplicas 3", len(podsSeen))
	}
}

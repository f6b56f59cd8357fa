//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// activatorRestarts sums the restarts of the activator pods' containers
// and lists the pods.
func activatorRestarts(t *testing.T) (restarts int32, pods []string) {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(systemNS),
		client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		pods = append(pods, p.Name)
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
	}
	return restarts, pods
}

// TestFloodDoesNotReachBystanders: while one client floods the activators
// with 6 MB bodies, for a function that does not exist and for one that
// is busy sleeping, another function's callers all get their answers, and
// no activator is restarted (out of memory or otherwise).
func TestFloodDoesNotReachBystanders(t *testing.T) {
	sleeper := newFunction(t, "sleeper", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Concurrency = 1
		fn.Spec.Scale.MaxReplicas = 1
	})
	bystander := newFunction(t, "bystander", nil)
	if a := get(t, fmt.Sprintf("/%s/%s/?name=warm", ns, bystander.Name)); a.status != 200 {
		t.Fatalf("warm-up: %d %q", a.status, a.body)
	}
	restartsBefore, podsBefore := activatorRestarts(t)

	const flooders, floodFor = 8, 15 * time.Second
	big := strings.Repeat("x", 6<<20-64)
	targets := []string{
		fmt.Sprintf("%s/%s/nope/", activator, ns),
		fmt.Sprintf("%s/%s/%s/?sleep=5s", activator, ns, sleeper.Name),
	}
	var posted, refused atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), floodFor)
	defer cancel()
	floodClient := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	for i := range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, targets[(i+n)%len(targets)], strings.NewReader(big))
				resp, err := floodClient.Do(req)
				posted.Add(1)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 429 || resp.StatusCode == 503 {
					refused.Add(1)
				}
			}
		}()
	}

	// The bystander's callers, meanwhile: one request every 100 ms.
	var results []sent
	for i := 0; ctx.Err() == nil; i++ {
		a, err := tryGet(fmt.Sprintf("/%s/%s/calm/%d?name=c%d", ns, bystander.Name, i, i))
		results = append(results, sent{a, err})
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	failed, lat := checkAll(t, results, func(i int) string {
		return helloBody(fmt.Sprintf("c%d", i), fmt.Sprintf("/calm/%d", i), bystander.Name)
	})
	t.Logf("flood: %d bodies of 6 MB sent in %s (%d refused at the door); bystander: %d ok, %d failed", posted.Load(), floodFor, refused.Load(), len(lat), failed)
	if len(lat) > 0 {
		t.Logf("bystander latency: median %s p90 %s max %s", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	if failed > 0 {
		t.Errorf("%d of the bystander's %d requests failed during the flood", failed, len(results))
	}
	restartsAfter, podsAfter := activatorRestarts(t)
	if restartsAfter != restartsBefore || strings.Join(podsAfter, ",") != strings.Join(podsBefore, ",") {
		t.Errorf("activators restarted during the flood: restarts %d -> %d, pods %v -> %v", restartsBefore, restartsAfter, podsBefore, podsAfter)
	}
}

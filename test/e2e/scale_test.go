//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestScaleDownUnderLoad: a function at 2 pods is scaled down to 1
// (minReplicas lowered to 0; the load needs one pod) while a client sends a
// steady 20 requests a second: every request gets 200 and its own answer,
// and a pod did go away during the load.
func TestScaleDownUnderLoad(t *testing.T) {
	const (
		rps      = 20
		duration = 25 * time.Second
		lowerAt  = 5 * time.Second
	)
	fn := newFunction(t, "shrink", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.MinReplicas = 2
		fn.Spec.Scale.MaxReplicas = 3
		fn.Spec.Scale.ScaleToZeroAfter = &metav1.Duration{Duration: 10 * time.Second}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for all, ready := pods(t, ns, fn.Name); all != 2 || ready != 2; all, ready = pods(t, ns, fn.Name) {
		if time.Now().After(deadline) {
			dump(t, fn.Name)
			t.Fatalf("%d pods (%d ready), want 2 ready", all, ready)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var before corev1.PodList
	if err := k.List(context.Background(), &before, client.InNamespace(ns), client.MatchingLabels{"lambdapod.io/function": fn.Name}); err != nil {
		t.Fatal(err)
	}

	n := int(duration / time.Second * rps)
	results := make([]sent, n)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rps)
	defer tick.Stop()
	t0 := time.Now()
	lowered := false
	// a watcher: when did one of the two pods start to go (terminating or
	// gone)?
	var terminatingAt time.Duration
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, p := range before.Items {
				var now corev1.Pod
				err := k.Get(context.Background(), client.ObjectKeyFromObject(&p), &now)
				if apierrors.IsNotFound(err) || (err == nil && now.DeletionTimestamp != nil) {
					terminatingAt = time.Since(t0)
					return
				}
			}
		}
	}()
	for i := range n {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			// a short invocation, so that requests are in flight when a
			// pod goes
			a, err := tryGet(fmt.Sprintf("/%s/%s/load/%d?name=l%d&sleep=20ms", ns, fn.Name, i, i))
			results[i] = sent{a, err}
		}()
		el := time.Since(t0)
		if !lowered && el >= lowerAt {
			lowered = true
			patch := client.MergeFrom(fn.DeepCopy())
			fn.Spec.Scale.MinReplicas = 0
			if err := k.Patch(context.Background(), fn, patch); err != nil {
				t.Errorf("lower minReplicas: %v", err)
			}
			t.Logf("+%s minReplicas 2 -> 0", el.Round(time.Millisecond))
		}
	}
	close(stop)
	<-watched
	if terminatingAt > 0 {
		t.Logf("+%s a pod began to go (terminating)", terminatingAt.Round(time.Millisecond))
	}
	wg.Wait()
	total := time.Since(t0)

	failed, lat := checkAll(t, results, func(i int) string {
		return helloBody(fmt.Sprintf("l%d", i), fmt.Sprintf("/load/%d", i), fn.Name)
	})
	var slowest time.Duration
	if len(lat) > 0 {
		slowest = lat[len(lat)-1]
	}
	all, ready := pods(t, ns, fn.Name)
	t.Logf("%d requests at %d/s over %s: %d failed, slowest %s; pods now %d (%d ready)", n, rps, total.Round(time.Millisecond), failed, slowest.Round(time.Millisecond), all, ready)
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, n)
	}
	if terminatingAt == 0 {
		dump(t, fn.Name)
		t.Errorf("no pod went away while the requests were sent (pods now %d): nothing was scaled down under load", all)
	}
}

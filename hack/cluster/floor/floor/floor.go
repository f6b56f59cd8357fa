// Package floor measures the cold-start floor of a cluster: the time for a
// bare Deployment with one trivial container (no probes) to go from 0 to 1
// ready pod, from the scale request to the pod's Ready condition as seen by
// a watch (client-side arrival time). hack/cluster/floor and
// hack/bench/coldstart both use it.
package floor

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// DefaultImage is the trivial container's image on the make dev cluster.
const DefaultImage = "localhost:5000/lambdapod/pause:dev"

// Measure creates Deployment name in ns (deleting one left over), scales it
// 0->1 once as a warm-up (the image is pulled then), then n times, and
// returns each sample; each is reported to sample as it is taken (may be
// nil). The Deployment is deleted at the end. Failures are fatal (log.Fatal).
func Measure(ctx context.Context, cs *kubernetes.Clientset, ns, name, image string, n int, sample func(i int, d time.Duration)) []time.Duration {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					DNSPolicy:                     corev1.DNSDefault,
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					EnableServiceLinks:            ptr.To(false),
					AutomountServiceAccountToken:  ptr.To(false),
					Containers: []corev1.Container{{
						Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
					}},
				},
			},
		},
	}
	_ = cs.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	waitNoPods(ctx, cs, ns, name)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		log.Fatal(err)
	}
	defer cs.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})

	// warm-up: pulls the image once, so every sample starts with it present
	scale(ctx, cs, ns, name, 1)
	waitReady(ctx, cs, ns, name)
	scale(ctx, cs, ns, name, 0)
	waitNoPods(ctx, cs, ns, name)

	var samples []time.Duration
	for i := 0; i < n; i++ {
		w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		scale(ctx, cs, ns, name, 1)
		d := readyFrom(w, start)
		w.Stop()
		samples = append(samples, d)
		if sample != nil {
			sample(i, d)
		}
		scale(ctx, cs, ns, name, 0)
		waitNoPods(ctx, cs, ns, name)
	}
	return samples
}

func scale(ctx context.Context, cs *kubernetes.Clientset, ns, name string, r int32) {
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: r}}
	for {
		cur, err := cs.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			log.Fatal(err)
		}
		s.ResourceVersion = cur.ResourceVersion
		if _, err = cs.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			log.Fatal(err)
		}
	}
}

func readyFrom(w watch.Interface, start time.Time) time.Duration {
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				log.Fatal("watch closed")
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && p.DeletionTimestamp == nil {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						return time.Since(start)
					}
				}
			}
		case <-timeout:
			log.Fatal("no ready pod after 2m")
		}
	}
}

func waitReady(ctx context.Context, cs *kubernetes.Clientset, ns, name string) {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && d.Status.ReadyReplicas >= 1 {
			return
		}
	}
	log.Fatal("warm-up pod not ready after 2m")
}

func waitNoPods(ctx context.Context, cs *kubernetes.Clientset, ns, name string) {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err == nil && len(l.Items) == 0 {
			return
		}
	}
	fmt.Fprintln(os.Stderr, "pods still present after 2m")
}

// Command floor measures the cold-start floor of a cluster: the time for a
// bare Deployment with one trivial container (the pause image, no probes) to
// go from 0 to 1 ready pod, from the scale request to the pod's Ready
// condition as seen by a watch. It repeats -n times and prints each sample,
// the median and the 90th percentile. Uses KUBECONFIG. The measurement is
// package floor (./floor), shared with hack/bench/coldstart.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sort"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lambdapod/lambdapod/hack/cluster/floor/floor"
)

func main() {
	n := flag.Int("n", 10, "cold starts to measure")
	image := flag.String("image", floor.DefaultImage, "the trivial container's image")
	ns := flag.String("namespace", "default", "namespace")
	name := flag.String("name", "floor", "Deployment name (created and deleted)")
	flag.Parse()
	log.SetFlags(0)

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		log.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	cs := kubernetes.NewForConfigOrDie(cfg)
	samples := floor.Measure(context.Background(), cs, *ns, *name, *image, *n, func(i int, d time.Duration) {
		fmt.Printf("cold start %2d: %v\n", i+1, d.Round(time.Millisecond))
	})
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	q := func(p float64) time.Duration { return samples[int(p*float64(len(samples)-1)+0.5)] }
	fmt.Printf("deployment 0->1 ready pod (n=%d): median %v, p90 %v, min %v, max %v\n", len(samples),
		q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond), samples[0].Round(time.Millisecond), samples[len(samples)-1].Round(time.Millisecond))
}

// Package devcluster finds lambdapod's parts on the make dev cluster for
// the programs that drive it from the node (the end-to-end suite, the
// cold-start benchmark).
package devcluster

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ActivatorURL is http://<ClusterIP>:<port> of the release's activator
// Service in namespace ns, as hack/dev/up.sh finds it: the node reaches
// ClusterIPs through kube-proxy's rules (there is no cluster DNS).
func ActivatorURL(ctx context.Context, c client.Reader, ns string) (string, error) {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
		return "", fmt.Errorf("list Services in %s: %w", ns, err)
	}
	for _, s := range svcs.Items {
		if !strings.HasSuffix(s.Name, "-activator") || s.Spec.ClusterIP == "" || s.Spec.ClusterIP == "None" {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.Name == "http" {
				return fmt.Sprintf("http://%s:%d", s.Spec.ClusterIP, p.Port), nil
			}
		}
	}
	return "", fmt.Errorf("no *-activator Service with an http port in namespace %s", ns)
}

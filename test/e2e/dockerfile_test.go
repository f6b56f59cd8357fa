//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// TestDockerfileFunction: a Function built with the Dockerfile strategy.
// A commit adds a Dockerfile to a repository of its own: FROM the bash+curl
// runtime image that make dev pushed (pulled by kaniko from the node's
// plain-HTTP registry), with a handler of its own copied over the sample's.
// Tekton builds it with kaniko, and the build's supervisor step adds the
// supervisor to the image, so the Function's pods need no volume; the
// Function turns Ready on that commit, and a request through the activator
// gets the handler's answer: an HTTP API 2.0 result with a status code, a
// header and a body naming the path.
func TestDockerfileFunction(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(devDir, "bash-image.txt"))
	if err != nil {
		t.Fatalf("the bash+curl image that make dev pushes: %v (run make dev)", err)
	}
	base := strings.TrimSpace(string(b))
	r := newGitRepo(t, ns+"-dockerfile")
	commit := r.commit(t, "a Dockerfile function on the bash+curl runtime", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nCOPY function.sh /var/task/function.sh\n", base),
		// the event is one line of JSON; its rawPath is cut out with bash alone
		"function.sh": `function handler () {
  local path=${1#*\"rawPath\":\"}
  path=${path%%\"*}
  printf '{"statusCode":201,"headers":{"content-type":"text/plain","x-built-by":"kaniko"},"body":"built from a Dockerfile, path %s"}' "$path"
}
`,
	})
	fn := newGitFunction(t, "dockerfile", r, commit, func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Build.Strategy = lambdapodv1alpha1.BuildStrategyDockerfile
	})
	if !strings.Contains(fn.Status.Image, "@sha256:") {
		t.Errorf("status.image %q is not pinned by digest", fn.Status.Image)
	}
	assertSupervisorInImage(t, fn)

	a := get(t, fmt.Sprintf("/%s/%s/from/kaniko", ns, fn.Name))
	t.Logf("GET: HTTP %d %q in %s", a.status, a.body, a.elapsed.Round(1e6))
	if a.status != 201 || a.body != "built from a Dockerfile, path /from/kaniko" {
		t.Fatalf("got %d %q, want 201 %q", a.status, a.body, "built from a Dockerfile, path /from/kaniko")
	}
	if got := a.header.Get("X-Built-By"); got != "kaniko" {
		t.Errorf("X-Built-By %q, want kaniko", got)
	}
}

// assertSupervisorInImage: fn's image carries the supervisor (the build
// added it, with the lambdapod.io/supervisor label), so its Deployment runs
// it from the image and its pods have no volume at all.
func assertSupervisorInImage(t *testing.T, fn *lambdapodv1alpha1.Function) {
	t.Helper()
	var d appsv1.Deployment
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: fn.Name}, &d); err != nil {
		t.Fatalf("deployment/%s: %v", fn.Name, err)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Volumes) != 0 {
		t.Errorf("deployment/%s has volumes %v, want none: its image should carry the supervisor", fn.Name, pod.Volumes)
	}
	i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == contract.FunctionContainer })
	if i < 0 {
		t.Fatalf("deployment/%s has no container %q", fn.Name, contract.FunctionContainer)
	}
	c := pod.Containers[i]
	if c.Image != fn.Status.Image {
		t.Errorf("deployment/%s runs %s, want status.image %s", fn.Name, c.Image, fn.Status.Image)
	}
	if want := []string{"/lambdapod/supervisor"}; !slices.Equal(c.Command, want) {
		t.Errorf("deployment/%s: container %s runs %q, want %q (the supervisor in the image)", fn.Name, c.Name, c.Command, want)
	}
}

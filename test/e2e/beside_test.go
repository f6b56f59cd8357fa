//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestTestsBesideTheClusterLeavePodsDeletable: make test may run on a
// machine where make dev is up. The activator's integration tests give
// their pods network namespaces of their own; made the wrong way (ip
// netns add turns /run/netns into a mount of its own), the kubelet can no
// longer remove the namespaces of pods that existed before, and those pods
// stay Terminating. So: a pod from before, the integration test that makes
// the most namespaces, then the pod is deleted as a user would.
func TestTestsBesideTheClusterLeavePodsDeletable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root, as the activator's integration tests do (run the e2e suite as make e2e does)")
	}
	// The image has bash and curl only: bash waits on a pipe of its own.
	pod := startBashPod(t, ns, "before-make-test", "exec 3<> <(:); read -t 600 -u 3")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for pod.Status.Phase != corev1.PodRunning {
		select {
		case <-ctx.Done():
			out, errOut, _ := kubectl(t, "", "-n", ns, "describe", "pod", pod.Name)
			t.Fatalf("pod %s not running after 3m:\n%s%s", pod.Name, out, errOut)
		case <-time.After(500 * time.Millisecond):
		}
		if err := k.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
	}

	assets, err := exec.Command(filepath.Join(repoRoot, "hack", "envtest-binaries.sh")).Output()
	if err != nil {
		t.Fatalf("hack/envtest-binaries.sh: %v", err)
	}
	test := exec.Command("go", "test", "./activator/integration/", "-run", "TestAPodGoneBeforeItsSliceSaysSo|TestAPodStoppingBeforeItsSliceSaysSo", "-count=1")
	test.Dir = repoRoot
	test.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+strings.TrimSpace(string(assets)))
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("the activator's integration tests: %v\n%s", err, out)
	}

	// A pod the kubelet can tear down is gone a few seconds after its
	// grace period; one whose sandbox it cannot remove stays for minutes.
	start := time.Now()
	if err := k.Delete(ctx, pod, client.GracePeriodSeconds(1)); err != nil {
		t.Fatal(err)
	}
	for {
		err := k.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			t.Logf("pod deleted in %s", time.Since(start).Round(time.Second))
			return
		}
		if time.Since(start) > time.Minute {
			out, errOut, _ := kubectl(t, "", "-n", ns, "describe", "pod", pod.Name)
			t.Fatalf("pod %s still there %s after its deletion (the kubelet could not remove its sandbox?):\n%s%s",
				pod.Name, time.Since(start).Round(time.Second), out, errOut)
		}
		time.Sleep(time.Second)
	}
}

package resources_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers/resources"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// containers are the function's container and the runtime sidecar of the
// Deployment made for fn, from an image whose USER is user.
func containers(t *testing.T, fn *lambdapodv1alpha1.Function, user string) (function, sidecar *corev1ac.ContainerApplyConfiguration) {
	t.Helper()
	d := resources.Deployment(cfg, fn, "example/hello@sha256:0123", resources.ImageRun{User: user}, nil)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || *pod.Containers[0].Name != contract.FunctionContainer ||
		len(pod.InitContainers) != 1 || *pod.InitContainers[0].Name != contract.SidecarContainer {
		t.Fatalf("pod has containers %d and init containers %d, want the function and the sidecar", len(pod.Containers), len(pod.InitContainers))
	}
	return &pod.Containers[0], &pod.InitContainers[0]
}

func TestFunctionContainerIsConfined(t *testing.T) {
	const def = lambdapodv1alpha1.DefaultRunAsUser
	specUID := int64(4242)
	cases := []struct {
		name      string
		imageUser string
		runAsUser *int64
		uid       int64
		gid       int64 // -1: not set
	}{
		{"an image without USER runs as sbx_user1051's uid", "", nil, def, def},
		{"an image of root", "root", nil, def, def},
		{"an image of uid 0", "0", nil, def, def},
		{"an image of 0:0", "0:0", nil, def, def},
		{"an image of a named user", "sbx_user1051", nil, def, def},
		{"an image of a named user and group", "app:app", nil, def, def},
		{"an image of a named user and a gid", "app:1000", nil, def, def},
		{"an image uid is kept", "1000", nil, 1000, -1},
		{"an image uid:gid is kept", "65532:65532", nil, 65532, 65532},
		{"an image uid with a named group keeps the uid", "1000:staff", nil, 1000, -1},
		{"an image uid out of range", "4294967296", nil, def, def},
		{"a negative image uid", "-5", nil, def, def},
		{"spec.runtime.runAsUser wins over the image's uid", "1000:1000", &specUID, specUID, -1},
		{"spec.runtime.runAsUser wins over root", "root", &specUID, specUID, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fn := base()
			fn.Spec.Runtime.RunAsUser = tc.runAsUser
			function, _ := containers(t, fn, tc.imageUser)
			sc := function.SecurityContext
			if sc == nil {
				t.Fatal("the function container has no securityContext")
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != tc.uid {
				t.Errorf("runAsUser = %v, want %d", deref(sc.RunAsUser), tc.uid)
			}
			switch {
			case tc.gid < 0 && sc.RunAsGroup != nil:
				t.Errorf("runAsGroup = %d, want none (the runtime's choice)", *sc.RunAsGroup)
			case tc.gid >= 0 && (sc.RunAsGroup == nil || *sc.RunAsGroup != tc.gid):
				t.Errorf("runAsGroup = %v, want %d", deref(sc.RunAsGroup), tc.gid)
			}
			checkRestricted(t, "function", sc)
			if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
				t.Error("the function container's root file system is read-only; functions write to it, as on Lambda")
			}
		})
	}
}

// checkRestricted fails unless sc passes the restricted Pod Security
// Standard on its own.
func checkRestricted(t *testing.T, container string, sc *corev1ac.SecurityContextApplyConfiguration) {
	t.Helper()
	if sc == nil {
		t.Fatalf("%s: no securityContext", container)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot = %v, want true", container, sc.RunAsNonRoot)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation = %v, want false", container, sc.AllowPrivilegeEscalation)
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: capabilities = %+v, want drop ALL and nothing added", container, sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type == nil || *sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile = %+v, want RuntimeDefault", container, sc.SeccompProfile)
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		t.Errorf("%s: runAsUser 0", container)
	}
}

func TestRunAsRootOptsOut(t *testing.T) {
	fn := base()
	fn.Spec.Runtime.RunAsRoot = true
	for _, user := range []string{"", "root", "1000:1000"} {
		function, sidecar := containers(t, fn, user)
		if function.SecurityContext != nil {
			t.Errorf("image user %q, runAsRoot: the function container has securityContext %+v, want none", user, function.SecurityContext)
		}
		// the sidecar stays confined whatever the function does
		checkRestricted(t, "sidecar", sidecar.SecurityContext)
		if sc := sidecar.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("sidecar: readOnlyRootFilesystem is not true")
		}
		// the resources do not depend on the opt-out
		if got := (*function.Resources.Limits)[corev1.ResourceEphemeralStorage]; got.Cmp(resource.MustParse("512Mi")) != 0 {
			t.Errorf("runAsRoot: ephemeral-storage limit %s, want 512Mi", got.String())
		}
	}
}

func TestEphemeralStorage(t *testing.T) {
	for _, tc := range []struct {
		spec  string // "": not set
		limit string
	}{
		{"", "512Mi"}, // Lambda's default /tmp
		{"512Mi", "512Mi"},
		{"2Gi", "2Gi"},
		{"10Gi", "10Gi"},
	} {
		fn := base()
		if tc.spec != "" {
			q := resource.MustParse(tc.spec)
			fn.Spec.Runtime.EphemeralStorage = &q
		}
		function, _ := containers(t, fn, "")
		res := function.Resources
		if got, ok := (*res.Limits)[corev1.ResourceEphemeralStorage]; !ok || got.Cmp(resource.MustParse(tc.limit)) != 0 {
			t.Errorf("ephemeralStorage %q: ephemeral-storage limit %s, want %s", tc.spec, got.String(), tc.limit)
		}
		// a small fixed request: the scheduler does not reserve the whole
		// limit (see ephemeralRequest)
		if got, ok := (*res.Requests)[corev1.ResourceEphemeralStorage]; !ok || got.Cmp(resource.MustParse("64Mi")) != 0 {
			t.Errorf("ephemeralStorage %q: ephemeral-storage request %s, want 64Mi", tc.spec, got.String())
		}
	}
}

func TestCPURequestFollowsMemory(t *testing.T) {
	for _, tc := range []struct {
		memory string
		cpu    string
		// the sidecar's threads: the function's vCPUs, rounded up
		procs string
	}{
		{"128Mi", "73m", "1"},     // 128000/1769 = 72.4, rounded up
		{"1769Mi", "1", "1"},      // one vCPU, Lambda's figure
		{"1770Mi", "1001m", "2"},  // a little over one
		{"3538Mi", "2", "2"},      // two
		{"10240Mi", "5789m", "6"}, // 10240000/1769 = 5788.6
	} {
		fn := base()
		q := resource.MustParse(tc.memory)
		fn.Spec.Runtime.Memory = &q
		function, sidecar := containers(t, fn, "")
		if got := envValue(sidecar, "GOMAXPROCS"); got != tc.procs {
			t.Errorf("memory %s: sidecar GOMAXPROCS %q, want %q", tc.memory, got, tc.procs)
		}
		res := function.Resources
		if got, ok := (*res.Requests)[corev1.ResourceCPU]; !ok || got.Cmp(resource.MustParse(tc.cpu)) != 0 {
			t.Errorf("memory %s: cpu request %s, want %s", tc.memory, got.String(), tc.cpu)
		}
		if got, ok := (*res.Limits)[corev1.ResourceCPU]; ok {
			t.Errorf("memory %s: cpu limit %s, want none", tc.memory, got.String())
		}
		// memory stays requested and limited at spec.runtime.memory
		if got := (*res.Requests)[corev1.ResourceMemory]; got.Cmp(q) != 0 {
			t.Errorf("memory %s: memory request %s", tc.memory, got.String())
		}
		if got := (*res.Limits)[corev1.ResourceMemory]; got.Cmp(q) != 0 {
			t.Errorf("memory %s: memory limit %s", tc.memory, got.String())
		}
	}
	if got := resources.CPUMillis(1770); got != 1001 {
		t.Errorf("CPUMillis(1770) = %d, want 1001 (rounded up)", got)
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func envValue(c *corev1ac.ContainerApplyConfiguration, name string) string {
	for _, e := range c.Env {
		if e.Name != nil && *e.Name == name && e.Value != nil {
			return *e.Value
		}
	}
	return ""
}

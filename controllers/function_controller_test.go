package controllers_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/controllers/imageconfig"
	"github.com/lambdapod/lambdapod/controllers/resources"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

var cfg = resources.Config{
	SidecarImage: "lambdapod/runtime-sidecar:test",
	Region:       "us-east-1",
	ActivatorURL: "http://activator.test",
	InvokeKey:    "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
	Ingress: &resources.IngressPolicy{ActivatorNamespace: "lambdapod-system",
		ActivatorLabels: map[string]string{"app.kubernetes.io/component": "activator"}},
}

// TestFunctionController runs the manager's Function controller against a
// real kube-apiserver and etcd, with kube-controller-manager's deployment,
// replicaset and garbage collector controllers, so Deployment status and
// owner-based deletion are what a cluster does.
func TestFunctionController(t *testing.T) {
	env := testenv.Start(t, testenv.WithControllers("deployment", "replicaset", "garbagecollector", "serviceaccount"))
	ctx := context.Background()
	reg := startRegistry(t)
	// AWS's Lambda base images run /lambda-entrypoint.sh with the handler
	// as CMD; the supervisor must be told so, since the pod's command
	// replaces the image's.
	hello1 := pushImage(t, reg, "example/hello:1", []string{"/lambda-entrypoint.sh"}, []string{"app.handler"}, nil)
	hello2 := pushImage(t, reg, "example/hello:2", []string{"/var/task/bootstrap"}, nil, nil)
	// what a Go build makes: the supervisor in the image, and the label
	built := pushImage(t, reg, "example/built:1", []string{"/var/task/bootstrap"}, nil,
		map[string]string{contract.SupervisorLabel: "/lambdapod/supervisor"})
	startManager(t, env, func(r *controllers.FunctionReconciler) { r.Images = imageconfig.New() })
	c := env.Client

	t.Run("an image that carries the supervisor gets pods without a volume", func(t *testing.T) {
		fn := newFunction("built", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = built
			fn.Spec.Runtime.Command = []string{"/var/task/bootstrap", "--from-spec"}
		})
		create(t, c, fn)
		d := &appsv1.Deployment{}
		eventually(t, func() error { return c.Get(ctx, key(fn), d) })
		pod := d.Spec.Template.Spec
		if len(pod.Volumes) != 0 || len(pod.InitContainers) != 1 || pod.InitContainers[0].Lifecycle != nil ||
			len(pod.InitContainers[0].VolumeMounts) != 0 || len(pod.Containers[0].VolumeMounts) != 0 {
			t.Errorf("pod has volumes %v, sidecar mounts %v and lifecycle %v, function mounts %v; want none",
				pod.Volumes, pod.InitContainers[0].VolumeMounts, pod.InitContainers[0].Lifecycle, pod.Containers[0].VolumeMounts)
		}
		fc := pod.Containers[0]
		if !slices.Equal(fc.Command, []string{"/lambdapod/supervisor"}) || !slices.Equal(fc.Args, []string{"--", "/var/task/bootstrap", "--from-spec"}) {
			t.Errorf("function container runs %q %q, want the image's supervisor with spec.runtime.command", fc.Command, fc.Args)
		}
		for _, e := range append(fc.Env, pod.InitContainers[0].Env...) {
			if e.Name == "LAMBDAPOD_CONTROL_SOCKET" && e.Value != "@lambdapod/control.sock" {
				t.Errorf("control socket %q, want the abstract @lambdapod/control.sock", e.Value)
			}
		}
	})

	t.Run("an image function gets its Deployment and Service and turns Ready", func(t *testing.T) {
		fn := newFunction("echo", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = hello1
			fn.Spec.Runtime.Handler = "hello.handler"
			fn.Spec.Runtime.Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
		})
		create(t, c, fn)

		d := &appsv1.Deployment{}
		eventually(t, func() error { return c.Get(ctx, key(fn), d) })
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
			t.Errorf("replicas = %v, want minReplicas 0", d.Spec.Replicas)
		}
		checkPod(t, &d.Spec.Template.Spec, hello1, map[string]string{
			"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
			"AWS_LAMBDA_FUNCTION_NAME":        "echo",
			"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
			"LAMBDA_TASK_ROOT":                "/var/task",
			"TZ":                              ":UTC",
			"_HANDLER":                        "hello.handler",
			"GREETING":                        "hi",
		})
		if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, []string{"--", "/lambda-entrypoint.sh", "app.handler"}) {
			t.Errorf("supervisor args = %q, want the image's ENTRYPOINT and CMD after --", args)
		}
		if !metav1.IsControlledBy(d, getFunction(t, c, fn)) {
			t.Errorf("Deployment is not controlled by the Function: %+v", d.OwnerReferences)
		}

		svc := &corev1.Service{}
		eventually(t, func() error { return c.Get(ctx, key(fn), svc) })
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[contract.LabelFunction] != "echo" ||
			len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 8080 {
			t.Errorf("Service spec = %+v, want a headless Service selecting the function's pods on port http 8080", svc.Spec)
		}

		// Only the activators reach the pods, with a token the sidecar
		// checks against the public key it is given.
		np := &networkingv1.NetworkPolicy{}
		eventually(t, func() error { return c.Get(ctx, key(fn), np) })
		if !metav1.IsControlledBy(np, getFunction(t, c, fn)) || np.Spec.PodSelector.MatchLabels[contract.LabelFunction] != "echo" ||
			len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 ||
			np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "lambdapod-system" ||
			np.Spec.Ingress[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/component"] != "activator" {
			t.Errorf("NetworkPolicy %+v (owners %+v), want the function's pods open to the activators only", np.Spec, np.OwnerReferences)
		}
		sidecarEnv := map[string]string{}
		for _, e := range d.Spec.Template.Spec.InitContainers[0].Env {
			sidecarEnv[e.Name] = e.Value
		}
		if sidecarEnv["LAMBDAPOD_INVOKE_KEY"] != cfg.InvokeKey || sidecarEnv["LAMBDAPOD_FUNCTION_NAMESPACE"] != "default" {
			t.Errorf("sidecar env %v, want the activators' public key and the namespace", sidecarEnv)
		}

		got := waitReady(t, c, fn)
		if got.Status.URL != "http://activator.test/default/echo/" {
			t.Errorf("status.url = %q", got.Status.URL)
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, lambdapodv1alpha1.ConditionDeployed) {
			t.Errorf("Deployed is not True: %+v", got.Status.Conditions)
		}
		for _, absent := range []string{lambdapodv1alpha1.ConditionReconciling, lambdapodv1alpha1.ConditionStalled} {
			if meta.FindStatusCondition(got.Status.Conditions, absent) != nil {
				t.Errorf("%s is present on a ready Function: %+v", absent, got.Status.Conditions)
			}
		}
		if got.Status.Image != hello1 {
			t.Errorf("status.image = %q", got.Status.Image)
		}
		eventually(t, func() error { return hasEvent(ctx, c, fn, "Ready") })
	})

	t.Run("kubectl wait and get read the Function's status", func(t *testing.T) {
		kubeconfig := env.Kubeconfig(t)
		out, err := kubectl(env, kubeconfig, "wait", "--for=condition=Ready", "fn/echo", "--timeout=30s")
		if err != nil || !strings.Contains(out, "condition met") {
			t.Fatalf("kubectl wait: %v: %s", err, out)
		}
		out, err = kubectl(env, kubeconfig, "get", "fn", "echo")
		if err != nil {
			t.Fatal(err, out)
		}
		for _, want := range []string{"READY", "REASON", "URL", "REPLICAS", "True", "Ready", "http://activator.test/default/echo/"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get fn output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("a spec change rolls the Deployment and keeps the autoscaler's replicas", func(t *testing.T) {
		fn := getFunction(t, c, newFunction("echo", nil))
		setReplicas(t, c, fn, 2)
		eventually(t, func() error { return c.Get(ctx, key(fn), fn) })
		fn.Spec.Source.Image = hello2
		if err := c.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
		d := &appsv1.Deployment{}
		eventually(t, func() error {
			if err := c.Get(ctx, key(fn), d); err != nil {
				return err
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != hello2 {
				return fmt.Errorf("function image is %s", img)
			}
			if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, []string{"--", "/var/task/bootstrap"}) {
				return fmt.Errorf("supervisor args %q", args)
			}
			return nil
		})
		if *d.Spec.Replicas != 2 {
			t.Errorf("replicas = %d after a spec change, want the autoscaler's 2", *d.Spec.Replicas)
		}
		// No node runs the new pods, so the rollout cannot finish: the
		// Function must say it is progressing, not claim Ready.
		eventually(t, func() error {
			got := getFunction(t, c, fn)
			rc := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReconciling)
			ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
			if rc == nil || rc.Status != metav1.ConditionTrue || ready.Status != metav1.ConditionFalse ||
				ready.Reason != "Progressing" || ready.ObservedGeneration != got.Generation {
				return fmt.Errorf("conditions %+v", got.Status.Conditions)
			}
			return nil
		})
		// Back at zero the rollout completes, and so does readiness.
		setReplicas(t, c, fn, 0)
		got := waitReady(t, c, fn)
		if got.Status.Image != hello2 {
			t.Errorf("status.image = %q", got.Status.Image)
		}
	})

	t.Run("spec.runtime.command wins over the image's entrypoint", func(t *testing.T) {
		fn := newFunction("explicit", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = hello1
			fn.Spec.Runtime.Command = []string{"/opt/custom", "--flag"}
		})
		create(t, c, fn)
		d := &appsv1.Deployment{}
		eventually(t, func() error { return c.Get(ctx, key(fn), d) })
		if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, []string{"--", "/opt/custom", "--flag"}) {
			t.Errorf("supervisor args = %q", args)
		}
	})

	t.Run("an image whose config cannot be read runs the Lambda locations, with a warning", func(t *testing.T) {
		fn := newFunction("unreadable", func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Image = reg + "/example/missing:1" })
		create(t, c, fn)
		d := &appsv1.Deployment{}
		eventually(t, func() error { return c.Get(ctx, key(fn), d) })
		if args := d.Spec.Template.Spec.Containers[0].Args; len(args) != 0 {
			t.Errorf("supervisor args = %q, want none", args)
		}
		eventually(t, func() error { return hasEvent(ctx, c, fn, "ImageConfigUnavailable") })
		waitReady(t, c, fn)
	})

	t.Run("minReplicas is the starting replica count", func(t *testing.T) {
		fn := newFunction("warm", func(fn *lambdapodv1alpha1.Function) { fn.Spec.Scale.MinReplicas = 2 })
		create(t, c, fn)
		d := &appsv1.Deployment{}
		eventually(t, func() error { return c.Get(ctx, key(fn), d) })
		if *d.Spec.Replicas != 2 {
			t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
		}
		eventually(t, func() error {
			got := getFunction(t, c, fn)
			if got.Status.DesiredReplicas != 2 || got.Status.Replicas != 2 {
				return fmt.Errorf("status replicas %d/%d", got.Status.Replicas, got.Status.DesiredReplicas)
			}
			return nil
		})
	})

	t.Run("a Deployment someone else owns stalls the Function and is left alone", func(t *testing.T) {
		theirs := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr(int32(0)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "theirs"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "theirs:1"}}},
				},
			},
		}
		create(t, c, theirs)
		fn := newFunction("taken", nil)
		create(t, c, fn)
		eventually(t, func() error {
			got := getFunction(t, c, fn)
			st := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled)
			ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
			if st == nil || st.Status != metav1.ConditionTrue || st.Reason != "OwnershipConflict" ||
				ready == nil || ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "Deployment default/taken exists") {
				return fmt.Errorf("conditions %+v", got.Status.Conditions)
			}
			return nil
		})
		if err := c.Get(ctx, key(theirs), theirs); err != nil {
			t.Fatal(err)
		}
		if img := theirs.Spec.Template.Spec.Containers[0].Image; img != "theirs:1" || len(theirs.OwnerReferences) != 0 {
			t.Errorf("the other Deployment was changed: image %s, owners %+v", img, theirs.OwnerReferences)
		}
	})

	t.Run("deleting the Function removes what it owned", func(t *testing.T) {
		fn := getFunction(t, c, newFunction("warm", nil))
		if err := c.Delete(ctx, fn); err != nil {
			t.Fatal(err)
		}
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &networkingv1.NetworkPolicy{}} {
			eventually(t, func() error {
				err := c.Get(ctx, key(fn), obj)
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("%T still there (err %v)", obj, err)
			})
		}
	})

	t.Run("a git source without Tekton installed says so and waits", func(t *testing.T) {
		fn := newFunction("from-git", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{URL: "https://git.example/org/fn.git"}}
			fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "example/fn"}
		})
		create(t, c, fn)
		eventually(t, func() error {
			got := getFunction(t, c, fn)
			ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
			built := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionBuilt)
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != "TektonNotInstalled" ||
				built == nil || built.Status != metav1.ConditionFalse || built.Reason != "TektonNotInstalled" ||
				!meta.IsStatusConditionTrue(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled) {
				return fmt.Errorf("conditions %+v", got.Status.Conditions)
			}
			return nil
		})
		if err := c.Get(ctx, key(fn), &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("a Deployment exists before any image was built (err %v)", err)
		}
	})

	t.Run("kubectl apply of the samples gives a Deployment with both containers and the Lambda environment", func(t *testing.T) {
		kubeconfig := env.Kubeconfig(t)
		out, err := kubectl(env, kubeconfig, "apply", "-f", filepath.Join(env.Root, "config", "samples")+"/")
		if err != nil {
			t.Fatalf("kubectl apply: %v: %s", err, out)
		}
		samples, _ := filepath.Glob(filepath.Join(env.Root, "config", "samples", "*.yaml"))
		if len(samples) == 0 {
			t.Fatal("no samples")
		}
		list := &lambdapodv1alpha1.FunctionList{}
		if err := c.List(ctx, list, client.MatchingLabels{"app.kubernetes.io/part-of": "lambdapod-samples"}); err != nil || len(list.Items) == 0 {
			t.Fatalf("no sample Functions (err %v)", err)
		}
		for _, fn := range list.Items {
			d := &appsv1.Deployment{}
			eventually(t, func() error { return c.Get(ctx, key(&fn), d) })
			checkPod(t, &d.Spec.Template.Spec, fn.Spec.Source.Image, map[string]string{
				"AWS_LAMBDA_RUNTIME_API":   "127.0.0.1:9001",
				"AWS_LAMBDA_FUNCTION_NAME": fn.Name,
			})
			waitReady(t, c, &fn)
		}
	})
}

// startManager runs the Function controller the way the manager does, with
// the reconciler's settings that configure makes, until the test ends.
func startManager(t *testing.T, env *testenv.Env, configure func(*controllers.FunctionReconciler)) (ctrl.Manager, *controllers.FunctionReconciler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctrl.SetLogger(zap.New(zap.WriteTo(testWriter{t}), zap.UseDevMode(true)))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(),
		// Each test runs its own manager in this process.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.FunctionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Config: cfg, Recorder: mgr.GetEventRecorder("lambdapod"),
	}
	configure(r)
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return mgr, r
}

// checkPod asserts the pod shape a function needs: the runtime sidecar as a
// native sidecar that installs the supervisor in its postStart hook, and the
// function's container running its bootstrap under the supervisor with the
// Lambda environment.
func checkPod(t *testing.T, pod *corev1.PodSpec, image string, env map[string]string) {
	t.Helper()
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("want 1 init container (the sidecar) and 1 container, got %d and %d", len(pod.InitContainers), len(pod.Containers))
	}
	sidecar, fn := pod.InitContainers[0], pod.Containers[0]
	if sidecar.Name != "runtime-sidecar" || sidecar.Image != cfg.SidecarImage ||
		sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("runtime-sidecar is not a native sidecar: %s %s %v", sidecar.Name, sidecar.Image, sidecar.RestartPolicy)
	}
	if l := sidecar.Lifecycle; l == nil || l.PostStart == nil || l.PostStart.Exec == nil ||
		strings.Join(l.PostStart.Exec.Command, " ") != "/supervisor install /lambdapod/supervisor" {
		t.Errorf("runtime-sidecar postStart %+v, want exec /supervisor install /lambdapod/supervisor", sidecar.Lifecycle)
	}
	if sidecar.ReadinessProbe == nil || sidecar.ReadinessProbe.HTTPGet == nil || sidecar.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("runtime-sidecar readiness probe %+v", sidecar.ReadinessProbe)
	}
	if fn.Image != image || len(fn.Command) != 1 || fn.Command[0] != "/lambdapod/supervisor" {
		t.Errorf("function container image %s command %v", fn.Image, fn.Command)
	}
	got := map[string]string{}
	for _, e := range fn.Env {
		got[e.Name] = e.Value
	}
	for name, want := range env {
		if got[name] != want {
			t.Errorf("function env %s = %q, want %q", name, got[name], want)
		}
	}
}

// startRegistry serves an OCI registry on loopback for the test and returns
// its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage pushes a small random image with the given ENTRYPOINT and CMD
// and returns its reference.
func pushImage(t *testing.T, reg, repoTag string, entrypoint, cmd []string, labels map[string]string) string {
	return pushConfig(t, reg, repoTag, func(c *v1.Config) { c.Entrypoint, c.Cmd, c.Labels = entrypoint, cmd, labels })
}

// pushConfig pushes a small random image whose config set sets, and returns
// its reference.
func pushConfig(t *testing.T, reg, repoTag string, set func(*v1.Config)) string {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	set(&cf.Config)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// newFunction is a Function on an image that no registry serves, unless
// mutate points it at one.
func newFunction(name string, mutate func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	fn := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Image: "127.0.0.1:1/example/hello:1"}},
	}
	if mutate != nil {
		mutate(fn)
	}
	return fn
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func getFunction(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) *lambdapodv1alpha1.Function {
	t.Helper()
	got := &lambdapodv1alpha1.Function{}
	if err := c.Get(context.Background(), key(fn), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// waitReady waits as `kubectl wait --for=condition=Ready` does, and also
// insists the condition describes the current generation.
func waitReady(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) *lambdapodv1alpha1.Function {
	t.Helper()
	var got *lambdapodv1alpha1.Function
	eventually(t, func() error {
		got = getFunction(t, c, fn)
		ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != got.Generation ||
			got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("not ready at generation %d: %+v", got.Generation, got.Status.Conditions)
		}
		return nil
	})
	return got
}

// setReplicas writes replicas as the autoscaler does.
func setReplicas(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, n int32) {
	t.Helper()
	ac := appsv1ac.Deployment(fn.Name, fn.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(n))
	if err := c.Apply(context.Background(), ac, client.FieldOwner(contract.AutoscalerFieldManager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func hasEvent(ctx context.Context, c client.Client, fn *lambdapodv1alpha1.Function, reason string) error {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(fn.Namespace)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Name == fn.Name && e.Regarding.Kind == "Function" && e.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no %s event for %s among %d", reason, fn.Name, len(list.Items))
}

func kubectl(env *testenv.Env, kubeconfig string, args ...string) (string, error) {
	cmd := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func key(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }

func ptr[T any](v T) *T { return &v }

func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

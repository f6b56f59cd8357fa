package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/internal/argohealth"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/git/gittest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestHealthInArgoCD drives Functions through the real reconcilers into
// each state Argo CD must tell apart, and runs the chart's Argo CD health
// script on each Function as the API server returns it, as Argo CD's
// cluster cache holds it. The API server, and kube-controller-manager's
// Deployment and ReplicaSet controllers, are real; the test plays Tekton's
// part (PipelineRun status) and the kubelet's (pod readiness).
func TestHealthInArgoCD(t *testing.T) {
	env := testenv.Start(t, testenv.WithTektonCRDs(), testenv.WithControllers("deployment", "replicaset"))
	ctx := context.Background()
	c := env.Client
	startManager(t, env, func(*controllers.FunctionReconciler) {})
	script, err := argohealth.Script(env.Root)
	if err != nil {
		t.Fatal(err)
	}
	repo := gittest.New(t)
	commit := repo.Commit(t, map[string]string{"Dockerfile": "FROM public.ecr.aws/lambda/provided:al2023\n"}, "A")
	gitFunction := func(name, url string) *lambdapodv1alpha1.Function {
		return newFunction(name, func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{URL: url}}
			fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "registry.test/team/" + name}
		})
	}
	serving := func(fn *lambdapodv1alpha1.Function) string {
		return "serving at http://activator.test/default/" + fn.Name + "/"
	}
	ready := func(fn *lambdapodv1alpha1.Function) string {
		return meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady).Message
	}

	idle := newFunction("idle", func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Image = "example/idle:1" })
	t.Run("a Function the manager has not reconciled yet is Progressing", func(t *testing.T) {
		u := toUnstructured(t, idle)
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		// The API server's answer to the create: no pass has run on it.
		expectHealth(t, argoHealth(t, script, u), "Progressing", "Waiting for the lambdapod manager to reconcile the Function")
	})

	t.Run("a Function scaled to zero is Healthy", func(t *testing.T) {
		h, _ := waitHealth(t, c, script, idle, func(fn *lambdapodv1alpha1.Function) error {
			if fn.Status.Replicas != 0 || fn.Status.DesiredReplicas != 0 {
				return fmt.Errorf("replicas %d of %d", fn.Status.Replicas, fn.Status.DesiredReplicas)
			}
			return nil
		}, isReady...)
		expectHealth(t, h, "Healthy", serving(idle))
	})

	warm := newFunction("warm", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = "example/warm:1"
		fn.Spec.Scale.MinReplicas = 1
	})
	t.Run("a Function with a ready pod is Healthy", func(t *testing.T) {
		create(t, c, warm)
		markReady(t, c, waitPod(t, c, warm, ""))
		h, _ := waitHealth(t, c, script, warm, readyReplicas(1, 1), isReady...)
		expectHealth(t, h, "Healthy", serving(warm))
	})

	t.Run("a spec change the manager has not observed yet is Progressing", func(t *testing.T) {
		var u *unstructured.Unstructured
		eventually(t, func() error {
			u = getUnstructured(t, c, warm)
			if err := unstructured.SetNestedField(u.Object, "example/warm:2", "spec", "source", "image"); err != nil {
				t.Fatal(err)
			}
			return c.Update(ctx, u)
		})
		// The API server's answer to the update: the status is still the
		// one the manager wrote for the generation before.
		if u.GetGeneration() != 2 {
			t.Fatalf("generation %d after one spec change", u.GetGeneration())
		}
		expectHealth(t, argoHealth(t, script, u), "Progressing", "Waiting for the lambdapod manager to observe generation 2")
	})

	t.Run("a rollout whose new pod is not ready yet is Progressing", func(t *testing.T) {
		// The old pod goes on serving: maxUnavailable is 0.
		h, got := waitHealth(t, c, script, warm, readyReplicas(2, 1),
			is{lambdapodv1alpha1.ConditionReady, "False", "Progressing", "Deployment warm is rolling out: 1 of 2 pods run the current template"},
			is{lambdapodv1alpha1.ConditionDeployed, "False", "Progressing", "rolling out"},
			is{lambdapodv1alpha1.ConditionReconciling, "True", "Progressing", "rolling out"},
			absent(lambdapodv1alpha1.ConditionStalled))
		expectHealth(t, h, "Progressing", ready(got))
	})

	t.Run("a rollout past its progress deadline stalls the Function: Degraded", func(t *testing.T) {
		// As a user lowers it, so the Deployment controller gives up on the
		// new pod, which never turns ready, within seconds.
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: warm.Name, Namespace: warm.Namespace}}
		if err := c.Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"progressDeadlineSeconds":1}}`))); err != nil {
			t.Fatal(err)
		}
		h, got := waitHealth(t, c, script, warm, nil,
			is{lambdapodv1alpha1.ConditionReady, "False", "ProgressDeadlineExceeded", "Deployment warm made no progress: "},
			is{lambdapodv1alpha1.ConditionStalled, "True", "ProgressDeadlineExceeded", "has timed out progressing"},
			is{lambdapodv1alpha1.ConditionDeployed, "False", "ProgressDeadlineExceeded", "has timed out progressing"},
			absent(lambdapodv1alpha1.ConditionReconciling))
		expectHealth(t, h, "Degraded", ready(got), "has timed out progressing", "kubectl describe deployment warm")
		if err := c.Get(ctx, key(d), d); err != nil {
			t.Fatal(err)
		}
		// The Deployment controller's verdict, not a test's.
		if p := deploymentCondition(d, appsv1.DeploymentProgressing); p == nil || p.Reason != "ProgressDeadlineExceeded" {
			t.Errorf("Deployment's Progressing condition %+v, want ProgressDeadlineExceeded", p)
		}
	})

	failing := gitFunction("failing", repo.URL)
	var failingRun *tektonv1.PipelineRun
	t.Run("a git Function building its first image is Progressing", func(t *testing.T) {
		create(t, c, failing)
		failingRun = waitRun(t, c, failing, commit)
		h, got := waitHealth(t, c, script, failing, nil, building(failingRun)...)
		expectHealth(t, h, "Progressing", ready(got), failingRun.Name, "tkn pipelinerun logs -n default "+failingRun.Name)
	})

	t.Run("a git Function whose first build failed is Degraded", func(t *testing.T) {
		fail(t, c, failingRun, "build", 1)
		h, got := waitHealth(t, c, script, failing, nil, buildFailed(failingRun)...)
		expectHealth(t, h, "Degraded", ready(got), `failed at step "build" (exit code 1)`,
			"kubectl logs -n default "+failingRun.Name+"-build-pod -c step-build")
	})

	rebuilt := gitFunction("rebuilt", repo.URL)
	digest := "sha256:" + strings.Repeat("b2", 32)
	image := "registry.test/team/rebuilt@" + digest
	t.Run("a git Function built and scaled to zero is Healthy", func(t *testing.T) {
		create(t, c, rebuilt)
		succeed(t, c, waitRun(t, c, rebuilt, commit), digest)
		h, _ := waitHealth(t, c, script, rebuilt, func(fn *lambdapodv1alpha1.Function) error {
			if fn.Status.Image != image {
				return fmt.Errorf("status.image %q", fn.Status.Image)
			}
			return nil
		}, append(isReady, is{lambdapodv1alpha1.ConditionBuilt, "True", "Built", image})...)
		expectHealth(t, h, "Healthy", serving(rebuilt))
	})

	var rebuild *tektonv1.PipelineRun
	t.Run("a git Function rebuilding while its last image serves is Progressing", func(t *testing.T) {
		// A new build spec builds the same commit again.
		var fn *lambdapodv1alpha1.Function
		eventually(t, func() error {
			fn = getFunction(t, c, rebuilt)
			fn.Spec.Build.Timeout = &metav1.Duration{Duration: 20 * time.Minute}
			return c.Update(ctx, fn)
		})
		rebuild = waitRunOfSpec(t, c, fn)
		h, got := waitHealth(t, c, script, rebuilt, nil, building(rebuild)...)
		if got.Status.Image != image {
			t.Errorf("status.image %q while rebuilding, want the last image %s", got.Status.Image, image)
		}
		expectHealth(t, h, "Progressing", ready(got), rebuild.Name)
	})

	t.Run("a git Function whose rebuild failed while its last image serves is Degraded", func(t *testing.T) {
		fail(t, c, rebuild, "build", 2)
		h, got := waitHealth(t, c, script, rebuilt, nil, buildFailed(rebuild)...)
		expectHealth(t, h, "Degraded", ready(got), `failed at step "build" (exit code 2)`, "the function keeps running "+image)
	})

	t.Run("a git server that cannot be reached is Degraded, though the manager retries it", func(t *testing.T) {
		// docs/install.md: Degraded when a build failed, which is Built=False
		// with any reason but a build under way.
		fn := gitFunction("unreachable", "http://127.0.0.1:1/team/unreachable.git")
		create(t, c, fn)
		h, got := waitHealth(t, c, script, fn, nil,
			is{lambdapodv1alpha1.ConditionBuilt, "False", "GitUnreachable", "127.0.0.1:1"},
			is{lambdapodv1alpha1.ConditionReady, "False", "GitUnreachable", "127.0.0.1:1"},
			is{lambdapodv1alpha1.ConditionReconciling, "True", "GitUnreachable", ""},
			absent(lambdapodv1alpha1.ConditionStalled))
		expectHealth(t, h, "Degraded", ready(got), "127.0.0.1:1")
	})
}

// is is what one of a Function's conditions must say: its status, reason,
// and part of its message. status "" means the condition is absent.
type is struct{ typ, status, reason, says string }

func absent(typ string) is { return is{typ: typ} }

// isReady is a Function ready for its current generation, as kstatus has
// it: Ready, and neither Reconciling nor Stalled.
var isReady = []is{
	{lambdapodv1alpha1.ConditionReady, "True", "Ready", "serving at http://activator.test/default/"},
	{lambdapodv1alpha1.ConditionDeployed, "True", "RolledOut", ""},
	absent(lambdapodv1alpha1.ConditionReconciling),
	absent(lambdapodv1alpha1.ConditionStalled),
}

// building is a Function whose source is being built by run.
func building(run *tektonv1.PipelineRun) []is {
	return []is{
		{lambdapodv1alpha1.ConditionBuilt, "Unknown", "Building", run.Name},
		{lambdapodv1alpha1.ConditionReady, "False", "Building", run.Name},
		{lambdapodv1alpha1.ConditionReconciling, "True", "Building", run.Name},
		absent(lambdapodv1alpha1.ConditionStalled),
	}
}

// buildFailed is a Function whose build by run failed: only a push or a
// spec change can help, so it is stalled.
func buildFailed(run *tektonv1.PipelineRun) []is {
	return []is{
		{lambdapodv1alpha1.ConditionBuilt, "False", "BuildFailed", run.Name},
		{lambdapodv1alpha1.ConditionReady, "False", "BuildFailed", run.Name},
		{lambdapodv1alpha1.ConditionStalled, "True", "BuildFailed", run.Name},
		absent(lambdapodv1alpha1.ConditionReconciling),
	}
}

func readyReplicas(replicas, ready int32) func(*lambdapodv1alpha1.Function) error {
	return func(fn *lambdapodv1alpha1.Function) error {
		if fn.Status.Replicas != replicas || fn.Status.ReadyReplicas != ready {
			return fmt.Errorf("%d replicas, %d ready; want %d, %d ready", fn.Status.Replicas, fn.Status.ReadyReplicas, replicas, ready)
		}
		return nil
	}
}

// waitHealth waits until the manager has observed fn's generation and its
// conditions are as want says, each about that generation, and check (if
// any) passes; it returns the health Argo CD shows for the Function as the
// API server returned it then, and the Function as read.
func waitHealth(t *testing.T, c client.Client, script string, fn *lambdapodv1alpha1.Function, check func(*lambdapodv1alpha1.Function) error, want ...is) (argohealth.Health, *lambdapodv1alpha1.Function) {
	t.Helper()
	var u *unstructured.Unstructured
	got := &lambdapodv1alpha1.Function{}
	eventually(t, func() error {
		u = getUnstructured(t, c, fn)
		got = &lambdapodv1alpha1.Function{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, got); err != nil {
			t.Fatal(err)
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observed generation %d of %d", got.Status.ObservedGeneration, got.Generation)
		}
		for _, w := range want {
			cond := meta.FindStatusCondition(got.Status.Conditions, w.typ)
			switch {
			case w.status == "" && cond != nil:
				return fmt.Errorf("%s is present: %+v", w.typ, cond)
			case w.status == "":
			case cond == nil || string(cond.Status) != w.status || cond.Reason != w.reason ||
				!strings.Contains(cond.Message, w.says) || cond.ObservedGeneration != got.Generation:
				return fmt.Errorf("%s is %+v, want %s %s saying %q at generation %d", w.typ, cond, w.status, w.reason, w.says, got.Generation)
			}
		}
		if check != nil {
			return check(got)
		}
		return nil
	})
	return argoHealth(t, script, u), got
}

// argoHealth is the health Argo CD shows for u.
func argoHealth(t *testing.T, script string, u *unstructured.Unstructured) argohealth.Health {
	t.Helper()
	h, err := argohealth.Check(script, u)
	if err != nil {
		status, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
		t.Fatalf("%v\nstatus: %v", err, status)
	}
	return h
}

// expectHealth checks the health's status and message, and that the
// message says what a user needs to act on.
func expectHealth(t *testing.T, h argohealth.Health, status, message string, says ...string) {
	t.Helper()
	t.Logf("Argo CD shows %v", h)
	if h.Status != status || h.Message != message {
		t.Errorf("Argo CD shows %v, want %s %q", h, status, message)
	}
	for _, s := range says {
		if !strings.Contains(h.Message, s) {
			t.Errorf("Argo CD's message %q does not say %q", h.Message, s)
		}
	}
}

func getUnstructured(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(lambdapodv1alpha1.GroupVersion.WithKind("Function"))
	if err := c.Get(context.Background(), key(fn), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func toUnstructured(t *testing.T, fn *lambdapodv1alpha1.Function) *unstructured.Unstructured {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(fn)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(lambdapodv1alpha1.GroupVersion.WithKind("Function"))
	return u
}

// waitRunOfSpec waits for the PipelineRun of fn's current build spec.
func waitRunOfSpec(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) *tektonv1.PipelineRun {
	t.Helper()
	hash := build.SpecHash(fn)
	var found *tektonv1.PipelineRun
	eventually(t, func() error {
		for _, pr := range runs(t, c, fn) {
			if pr.Labels[contract.LabelBuildSpec] == hash {
				found = &pr
				return nil
			}
		}
		return fmt.Errorf("no PipelineRun of build spec %s", hash)
	})
	return found
}

func deploymentCondition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

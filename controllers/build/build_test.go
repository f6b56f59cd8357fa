package build_test

import (
	"context"
	"strings"
	"testing"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/golden"
)

const commit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// gitFunction is a git-sourced Function as the API server returns it after
// defaulting.
func gitFunction(mutate func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	fn := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "team-a", UID: "0b9d5c1e-6f2c-4a41-9d0c-1f1e7b9a2c3d"},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: "https://github.com/example/hello.git", Revision: "main",
				PollInterval: &metav1.Duration{Duration: 60e9},
			}},
			Build: &lambdapodv1alpha1.BuildSpec{
				Strategy: lambdapodv1alpha1.BuildStrategyDockerfile, Dockerfile: "Dockerfile",
				Image: "registry.example/team-a/hello", Timeout: &metav1.Duration{Duration: 600e9},
			},
		},
	}
	if mutate != nil {
		mutate(fn)
	}
	return fn
}

func TestPipelineRunGolden(t *testing.T) {
	buildah := build.DefaultConfig()
	buildah.DockerfileBuilder = build.BuilderBuildah
	buildah.InsecureRegistries = []string{"registry.example"}
	insecureKaniko := build.DefaultConfig()
	insecureKaniko.InsecureRegistries = []string{"registry.example", "10.0.0.1:5000"}
	cases := []struct {
		golden string
		cfg    build.Config
		fn     *lambdapodv1alpha1.Function
	}{
		{"pipelinerun-kaniko.yaml", build.DefaultConfig(), gitFunction(nil)},
		{"pipelinerun-kaniko-private.yaml", build.DefaultConfig(), gitFunction(func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Git.URL = "git@github.com:example/private.git"
			fn.Spec.Source.Git.ContextDir = "functions/hello"
			fn.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "hello-git"}
			fn.Spec.Build.Dockerfile = "build/Dockerfile.lambda"
			fn.Spec.Build.ServiceAccountName = "builder"
			fn.Spec.Build.Timeout = &metav1.Duration{Duration: 30 * 60e9}
		})},
		{"pipelinerun-buildah.yaml", buildah, gitFunction(nil)},
		{"pipelinerun-kaniko-insecure.yaml", insecureKaniko, gitFunction(nil)},
		{"pipelinerun-go.yaml", build.DefaultConfig(), gitFunction(func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Build.Strategy = lambdapodv1alpha1.BuildStrategyGo
			fn.Spec.Source.Git.ContextDir = "cmd/hello"
		})},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			pr := build.MakePipelineRun(tc.cfg, tc.fn, commit, tc.fn.Spec.Source.Git.Revision)
			golden.Check(t, tc.golden, pr)
			validate(t, pr)
		})
	}
}

// validate runs Tekton's own admission validation and defaulting on the
// run, as its webhook would, with the default feature flags.
func validate(t *testing.T, pr *tektonv1.PipelineRun) {
	t.Helper()
	pr = pr.DeepCopy()
	pr.Name = pr.GenerateName + "x7k2p" // as the API server names it
	ctx := apis.WithinCreate(context.Background())
	pr.SetDefaults(ctx)
	if err := pr.Validate(ctx); err != nil {
		t.Errorf("Tekton rejects the PipelineRun: %v", err)
	}
}

func TestPipelineRunIdentity(t *testing.T) {
	fn := gitFunction(nil)
	pr := build.MakePipelineRun(build.DefaultConfig(), fn, commit, "main")
	if pr.Name != "" || pr.GenerateName != "hello-build-" {
		t.Errorf("name %q generateName %q", pr.Name, pr.GenerateName)
	}
	if pr.Labels[contract.LabelFunction] != "hello" || pr.Labels[contract.LabelCommit] != commit ||
		pr.Labels[contract.LabelBuildSpec] != build.SpecHash(fn) || pr.Labels[contract.LabelManagedBy] != "lambdapod" {
		t.Errorf("labels %v", pr.Labels)
	}
	if len(pr.OwnerReferences) != 1 || pr.OwnerReferences[0].Controller == nil || !*pr.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", pr.OwnerReferences)
	}

	// The build spec hash changes with what the build makes, not with the
	// revision, polling or runtime settings.
	same := []func(*lambdapodv1alpha1.Function){
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Git.Revision = "release" },
		func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Git.PollInterval = &metav1.Duration{Duration: 10e9}
		},
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Runtime.Handler = "x" },
	}
	for i, m := range same {
		if build.SpecHash(gitFunction(m)) != build.SpecHash(fn) {
			t.Errorf("change %d changed the build spec hash", i)
		}
	}
	differ := []func(*lambdapodv1alpha1.Function){
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Build.Image = "registry.example/other" },
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Build.Strategy = lambdapodv1alpha1.BuildStrategyGo },
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Build.Dockerfile = "Dockerfile.prod" },
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Git.ContextDir = "sub" },
		func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Git.URL = "https://github.com/example/fork.git" },
	}
	for i, m := range differ {
		if build.SpecHash(gitFunction(m)) == build.SpecHash(fn) {
			t.Errorf("change %d kept the build spec hash", i)
		}
	}
}

func TestConfigFromMap(t *testing.T) {
	c, err := build.ConfigFromMap(map[string]string{
		"dockerfileBuilder": "buildah", "goImage": "golang:1.25", "historyLimit": "5",
		"insecureRegistries": "registry.local:5000, 10.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.DockerfileBuilder != "buildah" || c.GoImage != "golang:1.25" || c.HistoryLimit != 5 ||
		len(c.InsecureRegistries) != 2 || c.InsecureRegistries[1] != "10.0.0.1" || c.KanikoImage != build.DefaultKanikoImage {
		t.Errorf("config %+v", c)
	}
	for _, bad := range []map[string]string{
		{"dockerfileBuilder": "docker"},
		{"historyLimit": "0"},
	} {
		if _, err := build.ConfigFromMap(bad); err == nil {
			t.Errorf("ConfigFromMap(%v) accepted", bad)
		}
	}
	if u := build.UnknownKeys(map[string]string{"gitImage": "x", "kanikoImage": "y", "a": "b"}); len(u) != 2 || u[0] != "a" || u[1] != "gitImage" {
		t.Errorf("UnknownKeys = %v", u)
	}
	d := build.DefaultConfig()
	if d.HelperImage != build.DefaultHelperImage || d.HistoryLimit != 3 || d.DockerfileBuilder != "kaniko" {
		t.Errorf("defaults %+v", d)
	}
}

func TestObserve(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	run := func(status corev1.ConditionStatus, reason, message string, results ...tektonv1.PipelineRunResult) *tektonv1.PipelineRun {
		pr := build.MakePipelineRun(build.DefaultConfig(), gitFunction(nil), commit, "main")
		pr.Name = "hello-build-x7k2p"
		if status != "" {
			pr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: status, Reason: reason, Message: message})
		}
		pr.Status.Results = results
		pr.Status.ChildReferences = []tektonv1.ChildStatusReference{{Name: "hello-build-x7k2p-build", PipelineTaskName: "build"}}
		return pr
	}
	digestResult := tektonv1.PipelineRunResult{Name: build.ResultImageDigest, Value: *tektonv1.NewStructuredValues(digest + "\n")}
	failedTR := &tektonv1.TaskRun{Status: tektonv1.TaskRunStatus{
		Status: duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "Failed"}}},
		TaskRunStatusFields: tektonv1.TaskRunStatusFields{
			PodName: "hello-build-x7k2p-build-pod",
			Steps: []tektonv1.StepState{
				{Name: "clone", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
				{Name: "build", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}},
			},
		},
	}}

	// What Tekton v1.15.0 reported on a real cluster when a step's image
	// could not be pulled: every step that had not finished is marked
	// exited 1 by Tekton itself, and the TaskRun's condition names the step.
	byTekton := func(step, reason string) tektonv1.StepState {
		return tektonv1.StepState{Name: step, TerminationReason: reason, ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: reason, Message: "Step " + step + " terminated as pod hello-build-x7k2p-build-pod is terminated"}}}
	}
	pullFailedTR := &tektonv1.TaskRun{Status: tektonv1.TaskRunStatus{
		Status: duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunImagePullFailed",
			Message: `the step "build" in TaskRun "hello-build-x7k2p-build" failed to pull the image "". The pod errored with the message: "Back-off pulling image "lambdapod/kaniko-executor:v1.23.2": ErrImagePull: failed to pull and unpack image."`}}},
		TaskRunStatusFields: tektonv1.TaskRunStatusFields{
			PodName: "hello-build-x7k2p-build-pod",
			Steps:   []tektonv1.StepState{byTekton("clone", "TaskRunImagePullFailed"), byTekton("build", "TaskRunImagePullFailed")},
		},
	}}
	timedOutTR := &tektonv1.TaskRun{Status: tektonv1.TaskRunStatus{
		Status: duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunTimeout",
			Message: `TaskRun "hello-build-x7k2p-build" failed to finish within "10m0s"`}}},
		TaskRunStatusFields: tektonv1.TaskRunStatusFields{
			PodName: "hello-build-x7k2p-build-pod",
			Steps: []tektonv1.StepState{
				{Name: "clone", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
				byTekton("compile", "TaskRunTimeout"), byTekton("image", "TaskRunTimeout"),
			},
		},
	}}

	cases := []struct {
		name     string
		pr       *tektonv1.PipelineRun
		taskRuns map[string]*tektonv1.TaskRun
		phase    build.Phase
		reason   string
		contains []string
		excludes []string
	}{
		{"not started", run("", "", ""), nil, build.Running, "", []string{"is building commit 4b825dc642cb", "tkn pipelinerun logs -n team-a hello-build-x7k2p"}, nil},
		{"running", run(corev1.ConditionUnknown, "Running", ""), nil, build.Running, "", nil, nil},
		{"succeeded", run(corev1.ConditionTrue, "Succeeded", "", digestResult), nil, build.Succeeded, "", nil, nil},
		{"succeeded without digest", run(corev1.ConditionTrue, "Succeeded", ""), nil, build.Failed, "BuildResultMissing", []string{"IMAGE_DIGEST"}, nil},
		{"failed at a step", run(corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"),
			map[string]*tektonv1.TaskRun{"hello-build-x7k2p-build": failedTR}, build.Failed, "BuildFailed",
			[]string{`failed at step "build" (exit code 1)`, "kubectl logs -n team-a hello-build-x7k2p-build-pod -c step-build", "tkn pipelinerun logs -n team-a hello-build-x7k2p"}, nil},
		{"a step's image not pulled", run(corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"),
			map[string]*tektonv1.TaskRun{"hello-build-x7k2p-build": pullFailedTR}, build.Failed, "BuildFailed",
			[]string{`failed at step "build" (TaskRunImagePullFailed: the step "build"`, "lambdapod/kaniko-executor:v1.23.2", "-c step-build"},
			[]string{`step "clone"`, "-c step-clone"}},
		{"timed out in a step", run(corev1.ConditionFalse, "PipelineRunTimeout", "PipelineRun timed out after 10m0s"),
			map[string]*tektonv1.TaskRun{"hello-build-x7k2p-build": timedOutTR}, build.Failed, "BuildTimedOut",
			[]string{`failed at step "compile" (exit code 1, TaskRunTimeout`, "-c step-compile"}, nil},
		{"failed, TaskRun gone", run(corev1.ConditionFalse, "Failed", "boom"), nil, build.Failed, "BuildFailed", []string{"failed (Failed): boom"}, nil},
		{"timed out", run(corev1.ConditionFalse, "PipelineRunTimeout", "PipelineRun timed out after 10m0s"), nil, build.Failed, "BuildTimedOut", []string{"timed out"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := build.Observe(tc.pr, tc.taskRuns)
			if got.Phase != tc.phase || got.Reason != tc.reason {
				t.Errorf("Observe = %+v, want phase %d reason %q", got, tc.phase, tc.reason)
			}
			for _, want := range tc.contains {
				if !strings.Contains(got.Message, want) {
					t.Errorf("message %q lacks %q", got.Message, want)
				}
			}
			for _, bad := range tc.excludes {
				if strings.Contains(got.Message, bad) {
					t.Errorf("message %q has %q", got.Message, bad)
				}
			}
			if tc.phase == build.Succeeded && got.Image != "registry.example/team-a/hello@"+digest {
				t.Errorf("image %q", got.Image)
			}
		})
	}
}

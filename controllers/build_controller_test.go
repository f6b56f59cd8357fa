package controllers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/git/gittest"
	"github.com/lambdapod/lambdapod/internal/testenv"
	"github.com/lambdapod/lambdapod/internal/webhook"
)

const webhookSecret = "It's a Secret to Everybody"

// TestBuilds runs the Function controller with Tekton's CRDs from the
// tektoncd/pipeline module on a real API server, plays Tekton's part by
// writing PipelineRun status as its controller does, and pushes to real git
// repositories served over smart HTTP.
func TestBuilds(t *testing.T) {
	env := testenv.Start(t, testenv.WithTektonCRDs(), testenv.WithControllers("deployment", "replicaset"))
	ctx := context.Background()
	c := env.Client
	hooks := startBuildManager(t, env)

	repo := gittest.New(t)
	commitA := repo.Commit(t, map[string]string{"Dockerfile": "FROM lambda/provided:al2023\n"}, "A")
	create(t, c, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "hello-git", Namespace: "default"},
		Data:       map[string][]byte{"webhook-secret": []byte(webhookSecret)},
	})
	fn := newFunction("hello", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
			URL: repo.URL, SecretRef: &corev1.LocalObjectReference{Name: "hello-git"},
			// Only webhooks announce commits to this Function.
			PollInterval: &metav1.Duration{Duration: time.Hour},
		}}
		fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "registry.test/team/hello"}
	})
	create(t, c, fn)
	digestA := "sha256:" + strings.Repeat("a1", 32)

	t.Run("a git Function gets a valid PipelineRun for its commit and says it is building", func(t *testing.T) {
		pr := waitRun(t, c, fn, commitA)
		got := getFunction(t, c, fn)
		if !strings.HasPrefix(pr.Name, "hello-build-") || !metav1.IsControlledBy(pr, got) {
			t.Errorf("run %s owners %+v", pr.Name, pr.OwnerReferences)
		}
		if pr.Labels["lambdapod.io/function"] != "hello" || pr.Labels["app.kubernetes.io/managed-by"] != "lambdapod" ||
			pr.Labels[contract.LabelBuildSpec] != build.SpecHash(got) {
			t.Errorf("labels %v", pr.Labels)
		}
		if err := pr.Validate(apis.WithinCreate(ctx)); err != nil {
			t.Errorf("Tekton's validation rejects the stored PipelineRun: %v", err)
		}
		// The same (commit, build spec) never gets a second run.
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionUnknown, "Building", pr.Name)
		got = waitCondition(t, c, fn, lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "Building", "tkn pipelinerun logs -n default "+pr.Name)
		if got.Status.LatestBuild == nil || got.Status.LatestBuild.PipelineRun != pr.Name || got.Status.LatestBuild.Commit != commitA {
			t.Errorf("status.latestBuild %+v", got.Status.LatestBuild)
		}
		if n := len(runs(t, c, fn)); n != 1 {
			t.Errorf("%d PipelineRuns, want 1", n)
		}
		if err := c.Get(ctx, key(fn), &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			t.Errorf("a Deployment exists before the first build finished (err %v)", err)
		}
	})

	t.Run("a successful run puts its digest into the Deployment and status", func(t *testing.T) {
		pr := waitRun(t, c, fn, commitA)
		succeed(t, c, pr, digestA)
		image := "registry.test/team/hello@" + digestA
		d := &appsv1.Deployment{}
		eventually(t, func() error {
			if err := c.Get(ctx, key(fn), d); err != nil {
				return err
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != image {
				return fmt.Errorf("Deployment runs %s", img)
			}
			return nil
		})
		got := waitReady(t, c, fn)
		built := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionBuilt)
		if built == nil || built.Status != metav1.ConditionTrue || !strings.Contains(built.Message, pr.Name) {
			t.Errorf("Built %+v", built)
		}
		if got.Status.Image != image || got.Status.Commit != commitA || got.Status.LatestBuild.PipelineRun != pr.Name {
			t.Errorf("status image %q commit %q latestBuild %+v", got.Status.Image, got.Status.Commit, got.Status.LatestBuild)
		}
		eventually(t, func() error { return hasEvent(ctx, c, fn, "BuildSucceeded") })
	})

	var commitB string
	t.Run("a signed GitHub push builds the new commit; forged and unsigned ones are refused", func(t *testing.T) {
		commitB = repo.Commit(t, map[string]string{"main.go": "package main // B\n"}, "B")
		body := githubPush(repo.URL, "refs/heads/main", commitB)
		for _, forged := range []map[string]string{
			{"X-GitHub-Event": "push"},
			{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte("guessed"), []byte(body))},
		} {
			if code, msg := deliver(t, hooks, "default", "hello", body, forged); code != http.StatusUnauthorized && code != http.StatusForbidden {
				t.Errorf("forged delivery %v: %d %s", forged, code, msg)
			}
		}
		noRun(t, c, fn, commitB)
		code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{
			"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			"X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(webhookSecret), []byte(body)),
		})
		if code != http.StatusAccepted {
			t.Fatalf("signed delivery: %d %s", code, msg)
		}
		waitRun(t, c, fn, commitB)
	})

	t.Run("a failed run names the failing step and its logs, and the last image keeps serving", func(t *testing.T) {
		pr := waitRun(t, c, fn, commitB)
		fail(t, c, pr, "build", 1)
		got := waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildFailed",
			`failed at step "build" (exit code 1)`)
		built := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionBuilt)
		if !strings.Contains(built.Message, "kubectl logs -n default "+pr.Name+"-build-pod -c step-build") {
			t.Errorf("Built message lacks the logs command: %s", built.Message)
		}
		got = waitCondition(t, c, fn, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildFailed", "keeps running")
		ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		if ready.Status != metav1.ConditionFalse || ready.Reason != "BuildFailed" || !strings.Contains(ready.Message, "step-build") {
			t.Errorf("Ready %+v", ready)
		}
		if got.Status.Image != "registry.test/team/hello@"+digestA || got.Status.Commit != commitA || got.Status.LatestBuild.Commit != commitB {
			t.Errorf("status image %q commit %q latestBuild %+v", got.Status.Image, got.Status.Commit, got.Status.LatestBuild)
		}
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, key(fn), d); err != nil || d.Spec.Template.Spec.Containers[0].Image != "registry.test/team/hello@"+digestA {
			t.Errorf("the Deployment no longer runs the last good image (err %v)", err)
		}
		eventually(t, func() error { return hasEvent(ctx, c, fn, "BuildFailed") })
	})

	var runC *tektonv1.PipelineRun
	t.Run("a GitLab push hook with its token builds; a wrong token is refused", func(t *testing.T) {
		commitC := repo.Commit(t, map[string]string{"main.go": "package main // C\n"}, "C")
		body := gitlabPush(repo.URL, "refs/heads/main", commitC)
		if code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guessed"}); code != http.StatusForbidden {
			t.Errorf("wrong token: %d %s", code, msg)
		}
		noRun(t, c, fn, commitC)
		if code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": webhookSecret}); code != http.StatusAccepted {
			t.Fatalf("GitLab delivery: %d %s", code, msg)
		}
		runC = waitRun(t, c, fn, commitC)
	})

	t.Run("a Gitea push builds and supersedes the build in progress", func(t *testing.T) {
		commitD := repo.Commit(t, map[string]string{"main.go": "package main // D\n"}, "D")
		body := githubPush(repo.URL, "refs/heads/main", commitD) // Gitea's push payload has the same shape
		if code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push"}); code != http.StatusForbidden {
			t.Errorf("unsigned: %d %s", code, msg)
		}
		if code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte("guessed"), []byte(body))}); code != http.StatusForbidden {
			t.Errorf("forged: %d %s", code, msg)
		}
		noRun(t, c, fn, commitD)
		if code, msg := deliver(t, hooks, "default", "hello", body, map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte(webhookSecret), []byte(body))}); code != http.StatusAccepted {
			t.Fatalf("Gitea delivery: %d %s", code, msg)
		}
		runD := waitRun(t, c, fn, commitD)
		// C was still building: it is deleted, not updated.
		eventually(t, func() error {
			err := c.Get(ctx, key(runC), &tektonv1.PipelineRun{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("superseded run %s still there (err %v)", runC.Name, err)
		})
		eventually(t, func() error { return hasEvent(ctx, c, fn, "BuildSuperseded") })

		// D succeeds: three finished runs (A, B, D) exceed the history
		// limit of two, so the oldest, A, is pruned.
		digestD := "sha256:" + strings.Repeat("d4", 32)
		succeed(t, c, runD, digestD)
		eventually(t, func() error {
			var names []string
			for _, pr := range runs(t, c, fn) {
				names = append(names, pr.Labels[contract.LabelCommit][:7])
			}
			if len(names) != 2 || names[0] != commitD[:7] || names[1] != commitB[:7] {
				return fmt.Errorf("runs for commits %v, want D's and B's", names)
			}
			return nil
		})
		got := waitReady(t, c, fn)
		if got.Status.Image != "registry.test/team/hello@"+digestD || got.Status.Commit != commitD {
			t.Errorf("status image %q commit %q", got.Status.Image, got.Status.Commit)
		}
		if meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled) != nil {
			t.Errorf("Stalled is still present: %+v", got.Status.Conditions)
		}
	})

	t.Run("a push to a repository is picked up by polling", func(t *testing.T) {
		polled := gittest.New(t)
		first := polled.Commit(t, map[string]string{"go.mod": "module example.com/fn\n"}, "first")
		pfn := newFunction("polled", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: polled.URL, PollInterval: &metav1.Duration{Duration: 10 * time.Second},
			}}
			fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "registry.test/team/polled", Strategy: lambdapodv1alpha1.BuildStrategyGo}
		})
		create(t, c, pfn)
		firstRun := waitRun(t, c, pfn, first)
		start := time.Now()
		second := polled.Commit(t, map[string]string{"main.go": "package main\n"}, "second")
		deadline := time.Now().Add(15 * time.Second)
		for findRunFor(t, c, pfn, second) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no PipelineRun for commit %s 15s after the push; pollInterval is 10s", second)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("the poll found the push after %s", time.Since(start).Round(100*time.Millisecond))
		eventually(t, func() error {
			if err := c.Get(ctx, key(firstRun), &tektonv1.PipelineRun{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("superseded run still there (err %v)", err)
			}
			return nil
		})
	})

	t.Run("a revision that is no branch or tag stalls the Function", func(t *testing.T) {
		bad := newFunction("nobranch", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{URL: repo.URL, Revision: "does-not-exist"}}
			fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "registry.test/team/x"}
		})
		create(t, c, bad)
		waitCondition(t, c, bad, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "RevisionNotFound", `"does-not-exist"`)
		waitCondition(t, c, bad, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "RevisionNotFound", "")
	})
}

// The build ConfigMap where the manager looks for it by default
// (POD_NAMESPACE, --build-configmap).
const (
	buildConfigNamespace = "lambdapod-system"
	buildConfigName      = "lambdapod-build-config"
)

// startBuildManager runs the controller reading its build settings from the
// build ConfigMap on the API server, as the manager does, with a build
// history of two, and serves its push webhook receiver.
func startBuildManager(t *testing.T, env *testenv.Env) *httptest.Server {
	t.Helper()
	create(t, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: buildConfigNamespace}})
	create(t, env.Client, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: buildConfigName, Namespace: buildConfigNamespace},
		Data:       map[string]string{"historyLimit": "2"},
	})
	mgr, r := startManager(t, env, func(r *controllers.FunctionReconciler) {
		r.BuildConfig = build.ConfigMapSource{Reader: r.APIReader, Namespace: buildConfigNamespace, Name: buildConfigName}.Load
	})
	srv := httptest.NewServer(&webhook.Handler{Functions: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Trigger: r.Triggers})
	t.Cleanup(srv.Close)
	return srv
}

func runs(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) []tektonv1.PipelineRun {
	t.Helper()
	list := &tektonv1.PipelineRunList{}
	if err := c.List(context.Background(), list, client.InNamespace(fn.Namespace), client.MatchingLabels{"lambdapod.io/function": fn.Name}); err != nil {
		t.Fatal(err)
	}
	var live []tektonv1.PipelineRun
	for _, pr := range list.Items {
		if pr.DeletionTimestamp.IsZero() {
			live = append(live, pr)
		}
	}
	// newest first
	sort.SliceStable(live, func(i, j int) bool { return live[j].CreationTimestamp.Before(&live[i].CreationTimestamp) })
	return live
}

func findRunFor(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, commit string) *tektonv1.PipelineRun {
	t.Helper()
	for _, pr := range runs(t, c, fn) {
		if pr.Labels[contract.LabelCommit] == commit {
			return &pr
		}
	}
	return nil
}

func waitRun(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, commit string) *tektonv1.PipelineRun {
	t.Helper()
	var pr *tektonv1.PipelineRun
	eventually(t, func() error {
		if pr = findRunFor(t, c, fn, commit); pr == nil {
			return fmt.Errorf("no PipelineRun for commit %s", commit)
		}
		return nil
	})
	return pr
}

// noRun asserts that no run for commit appears within a second.
func noRun(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, commit string) {
	t.Helper()
	time.Sleep(time.Second)
	if pr := findRunFor(t, c, fn, commit); pr != nil {
		t.Errorf("PipelineRun %s for commit %s was created", pr.Name, commit)
	}
}

// succeed writes the status Tekton writes when a run succeeds.
func succeed(t *testing.T, c client.Client, pr *tektonv1.PipelineRun, digest string) {
	t.Helper()
	setStatus(t, c, pr, func(st *tektonv1.PipelineRunStatus) {
		st.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: "Succeeded",
			Message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0"})
		st.Results = []tektonv1.PipelineRunResult{
			{Name: "IMAGE_DIGEST", Value: *tektonv1.NewStructuredValues(digest)},
			{Name: "IMAGE_URL", Value: *tektonv1.NewStructuredValues(pr.Spec.Params[3].Value.StringVal)},
			{Name: "COMMIT", Value: *tektonv1.NewStructuredValues(pr.Labels[contract.LabelCommit])},
		}
	})
}

// fail writes a failed TaskRun whose step exited with code, and the failed
// run, as Tekton does.
func fail(t *testing.T, c client.Client, pr *tektonv1.PipelineRun, step string, code int32) {
	t.Helper()
	ctx := context.Background()
	tr := &tektonv1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: pr.Name + "-build", Namespace: pr.Namespace},
		Spec:       tektonv1.TaskRunSpec{TaskSpec: &pr.Spec.PipelineSpec.Tasks[0].TaskSpec.TaskSpec},
	}
	create(t, c, tr)
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "Failed",
		Message: fmt.Sprintf(`"step-%s" exited with code %d`, step, code)})
	tr.Status.PodName = pr.Name + "-build-pod"
	tr.Status.Steps = []tektonv1.StepState{
		{Name: "clone", Container: "step-clone", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
		{Name: step, Container: "step-" + step, ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error"}}},
	}
	if err := c.Status().Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
	setStatus(t, c, pr, func(st *tektonv1.PipelineRunStatus) {
		st.ChildReferences = []tektonv1.ChildStatusReference{{
			TypeMeta: runtime.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"}, Name: tr.Name, PipelineTaskName: "build",
		}}
		st.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "Failed",
			Message: "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"})
	})
}

func setStatus(t *testing.T, c client.Client, pr *tektonv1.PipelineRun, mutate func(*tektonv1.PipelineRunStatus)) {
	t.Helper()
	eventually(t, func() error {
		cur := &tektonv1.PipelineRun{}
		if err := c.Get(context.Background(), key(pr), cur); err != nil {
			return err
		}
		mutate(&cur.Status)
		return c.Status().Update(context.Background(), cur)
	})
}

func waitCondition(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, typ string, status metav1.ConditionStatus, reason, says string) *lambdapodv1alpha1.Function {
	t.Helper()
	var got *lambdapodv1alpha1.Function
	eventually(t, func() error {
		got = getFunction(t, c, fn)
		cond := meta.FindStatusCondition(got.Status.Conditions, typ)
		if cond == nil || cond.Status != status || cond.Reason != reason || !strings.Contains(cond.Message, says) || cond.ObservedGeneration != got.Generation {
			return fmt.Errorf("%s is %+v, want %s %s saying %q", typ, cond, status, reason, says)
		}
		return nil
	})
	return got
}

func deliver(t *testing.T, srv *httptest.Server, ns, name, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/hooks/"+ns+"/"+name, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// githubPush is a push event as GitHub (and Gitea) send it for the
// repository at url, trimmed.
func githubPush(url, ref, after string) string {
	return fmt.Sprintf(`{"ref":%q,"before":"0000000000000000000000000000000000000000","after":%q,`+
		`"repository":{"full_name":"example/hello","clone_url":%q},`+
		`"pusher":{"name":"octocat"},"head_commit":{"id":%q,"message":"update"}}`, ref, after, url, after)
}

// gitlabPush is a GitLab "Push Hook" event for the repository at url,
// trimmed.
func gitlabPush(url, ref, after string) string {
	return fmt.Sprintf(`{"object_kind":"push","event_name":"push","ref":%q,"before":"0000000000000000000000000000000000000000",`+
		`"after":%q,"checkout_sha":%q,"project":{"path_with_namespace":"example/hello","git_http_url":%q},"total_commits_count":1}`, ref, after, after, url)
}

package controllers_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/buildstep"
	"github.com/lambdapod/lambdapod/internal/git/gittest"
	"github.com/lambdapod/lambdapod/internal/testenv"
	"github.com/lambdapod/lambdapod/internal/webhook"
)

// TestBuildFailures makes each thing that can stand between a git Function
// and its build happen for real (a git server that refuses or has no such
// repository, a Secret that is not there, a build ConfigMap with a bad
// value, an API server that refuses the PipelineRun, a cancelled run, an
// SSH host whose key is not the pinned one, an oversized push) and checks
// what the user reads about it: the conditions, and the events `kubectl
// describe` lists.
func TestBuildFailures(t *testing.T) {
	// The resourcequota controller fills in quotas' status, without which
	// the API server refuses everything a quota counts, whatever its limit.
	env := testenv.Start(t, testenv.WithTektonCRDs(), testenv.WithControllers("resourcequota"))
	ctx := context.Background()
	c := env.Client
	hooks := startBuildManager(t, env)
	kc := env.Kubeconfig(t)

	repo := gittest.New(t)
	commit := repo.Commit(t, map[string]string{"Dockerfile": "FROM lambda/provided:al2023\n"}, "first")
	gitFunction := func(name, url string, mutate func(*lambdapodv1alpha1.GitSource)) *lambdapodv1alpha1.Function {
		return newFunction(name, func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source = lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: url, PollInterval: &metav1.Duration{Duration: 10 * time.Second},
			}}
			if mutate != nil {
				mutate(fn.Spec.Source.Git)
			}
			fn.Spec.Build = &lambdapodv1alpha1.BuildSpec{Image: "registry.test/team/" + name}
		})
	}

	var cancelled *lambdapodv1alpha1.Function
	t.Run("a new run is announced with BuildStarted", func(t *testing.T) {
		cancelled = gitFunction("cancelled", repo.URL, nil)
		create(t, c, cancelled)
		pr := waitRun(t, c, cancelled, commit)
		waitEvent(t, env, kc, cancelled, "Normal", "BuildStarted",
			fmt.Sprintf("PipelineRun %s builds commit %s of %s", pr.Name, commit, repo.URL))
	})

	t.Run("a cancelled run is BuildCancelled", func(t *testing.T) {
		pr := waitRun(t, c, cancelled, commit)
		// What `tkn pipelinerun cancel` does; then Tekton's part.
		if err := c.Patch(ctx, pr, client.RawPatch(client.Merge.Type(), []byte(`{"spec":{"status":"Cancelled"}}`))); err != nil {
			t.Fatal(err)
		}
		cancelRun(t, c, pr)
		waitCondition(t, c, cancelled, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildCancelled",
			fmt.Sprintf(`PipelineRun %q was cancelled`, pr.Name))
		waitCondition(t, c, cancelled, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildCancelled", pr.Name)
		waitCondition(t, c, cancelled, lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "BuildCancelled", "was cancelled")
		waitEvent(t, env, kc, cancelled, "Warning", "BuildCancelled", fmt.Sprintf(`PipelineRun %q was cancelled`, pr.Name))
	})

	t.Run("a git server that refuses connections is GitUnreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String() + "/team/refused.git"
		l.Close()
		fn := gitFunction("refused", url, nil)
		create(t, c, fn)
		says := "git ls-remote " + url + ": "
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "GitUnreachable", says)
		got := waitCondition(t, c, fn, lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, "GitUnreachable", "connection refused")
		if stalled := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled); stalled != nil {
			t.Errorf("a git server away is retried, not Stalled: %+v", stalled)
		}
		waitDescribed(t, env, kc, fn, "GitUnreachable", "dial tcp "+l.Addr().String()+": connect: connection refused")
		// Retried, yet kubectl describe's events say so too.
		waitEvent(t, env, kc, fn, "Warning", "GitUnreachable", "connection refused")
	})

	t.Run("a repository that is not there yet is GitUnreachable, and retried until it is", func(t *testing.T) {
		var served atomic.Bool
		host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !served.Load() {
				http.NotFound(w, r)
				return
			}
			repo.ServeHTTP(w, r)
		}))
		t.Cleanup(host.Close)
		url := host.URL + "/team/later.git"
		fn := gitFunction("later", url, nil)
		create(t, c, fn)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "GitUnreachable",
			"git server answered 404 Not Found for "+url)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, "GitUnreachable", "404 Not Found")
		served.Store(true)
		// The next poll, within pollInterval (10s), finds it.
		waitRun(t, c, fn, commit)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionUnknown, "Building", "")
	})

	t.Run("a secretRef whose Secret is missing is GitCredentialsUnavailable", func(t *testing.T) {
		fn := gitFunction("nosecret", repo.URL, func(g *lambdapodv1alpha1.GitSource) {
			g.SecretRef = &corev1.LocalObjectReference{Name: "nosecret-git"}
		})
		create(t, c, fn)
		says := `reading Secret default/nosecret-git of spec.source.git.secretRef: secrets "nosecret-git" not found`
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "GitCredentialsUnavailable", says)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "GitCredentialsUnavailable", says)
		waitEvent(t, env, kc, fn, "Warning", "GitCredentialsUnavailable", says)
		noRun(t, c, fn, commit)
	})

	t.Run("a Secret without the key the private repository needs: git's 401 is GitUnreachable", func(t *testing.T) {
		private := gittest.New(t)
		private.Username, private.Password = "bot", "s3cret"
		private.Commit(t, map[string]string{"Dockerfile": "FROM scratch\n"}, "private")
		create(t, c, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "nokey-git", Namespace: "default"},
			Data:       map[string][]byte{"username": []byte("bot")},
		})
		fn := gitFunction("nokey", private.URL, func(g *lambdapodv1alpha1.GitSource) {
			g.SecretRef = &corev1.LocalObjectReference{Name: "nokey-git"}
		})
		create(t, c, fn)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "GitUnreachable",
			"git server answered 401 Unauthorized for "+private.URL)
	})

	t.Run("an invalid build ConfigMap is BuildConfigInvalid until it is fixed", func(t *testing.T) {
		setBuildConfig(t, c, map[string]string{"dockerfileBuilder": "docker"})
		fn := gitFunction("badconfig", repo.URL, nil)
		create(t, c, fn)
		says := `the build ConfigMap lambdapod-system/lambdapod-build-config: dockerfileBuilder is "docker"; want kaniko or buildah`
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildConfigInvalid", says)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildConfigInvalid", says)
		waitEvent(t, env, kc, fn, "Warning", "BuildConfigInvalid", says)
		noRun(t, c, fn, commit)

		// Fixed without a restart: the next poll builds, with the settings
		// the ConfigMap has now.
		helper := "registry.test/lambdapod/manager:fixed"
		setBuildConfig(t, c, map[string]string{"dockerfileBuilder": "buildah", "helperImage": helper, "historyLimit": "2"})
		pr := waitRun(t, c, fn, commit)
		steps := pr.Spec.PipelineSpec.Tasks[0].TaskSpec.Steps
		var names []string
		for _, s := range steps {
			names = append(names, s.Name)
		}
		if steps[0].Image != helper || strings.Join(names, ",") != "clone,build,push,supervisor" {
			t.Errorf("the run after the fix has steps %v, clone image %s: not the ConfigMap's buildah and helper image", names, steps[0].Image)
		}
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionUnknown, "Building", pr.Name)
	})

	t.Run("a PipelineRun the namespace's ResourceQuota refuses is BuildNotCreated", func(t *testing.T) {
		ns := namespace(t, c, "quota")
		create(t, c, &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Name: "no-builds", Namespace: ns},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/pipelineruns.tekton.dev": resource.MustParse("0")}},
		})
		refusesRuns(t, c, ns, "exceeded quota: no-builds", metav1.StatusReasonForbidden)
		fn := gitFunction("quota", repo.URL, nil)
		fn.Namespace = ns
		create(t, c, fn)
		says := "creating the PipelineRun: "
		got := waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildNotCreated", "exceeded quota: no-builds")
		if built := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionBuilt); !strings.HasPrefix(built.Message, says) ||
			!strings.Contains(built.Message, "limited: count/pipelineruns.tekton.dev=0") {
			t.Errorf("Built says %q", built.Message)
		}
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildNotCreated", "exceeded quota: no-builds")
		waitEvent(t, env, kc, fn, "Warning", "BuildNotCreated", "exceeded quota: no-builds")
	})

	t.Run("a PipelineRun an admission policy denies is BuildNotCreated, with the policy's message", func(t *testing.T) {
		ns := namespace(t, c, "policy")
		const rule = "builds must push to registry.internal.example/: set spec.build.image there"
		create(t, c, &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "internal-registry-only"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"tekton.dev"}, APIVersions: []string{"v1"}, Resources: []string{"pipelineruns"}},
					},
				}}},
				Validations: []admissionregistrationv1.Validation{{
					Expression: `object.spec.params.all(p, p.name != 'image' || string(p.value).startsWith('registry.internal.example/'))`,
					Message:    rule,
					// 422 Invalid, where the quota answers 403 Forbidden.
					Reason: ptr(metav1.StatusReasonInvalid),
				}},
			},
		})
		create(t, c, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "internal-registry-only"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        "internal-registry-only",
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
				MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
				}},
			},
		})
		refusesRuns(t, c, ns, rule, metav1.StatusReasonInvalid)
		fn := gitFunction("policy", repo.URL, nil)
		fn.Namespace = ns
		create(t, c, fn)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildNotCreated", rule)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildNotCreated", "creating the PipelineRun: ")
		waitEvent(t, env, kc, fn, "Warning", "BuildNotCreated", rule)
	})

	t.Run("over SSH, a known_hosts with the server's host key resolves and clones", func(t *testing.T) {
		srv, commit := sshRepo(t)
		create(t, c, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "ssh-git", Namespace: "default"},
			Type:       corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{
				"ssh-privatekey": srv.ClientKey,
				"known_hosts":    []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, srv.HostKey) + "\n"),
			},
		})
		fn := gitFunction("ssh", srv.URL, func(g *lambdapodv1alpha1.GitSource) {
			g.SecretRef = &corev1.LocalObjectReference{Name: "ssh-git"}
		})
		create(t, c, fn)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionUnknown, "Building", commit[:12])
		pr := waitRun(t, c, fn, commit)

		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ssh-git"}, secret); err != nil {
			t.Fatal(err)
		}
		got, source := runCloneStep(t, pr, secret)
		if got != commit {
			t.Errorf("the clone step checked out %s, want %s", got, commit)
		}
		if b, err := os.ReadFile(filepath.Join(source, "Dockerfile")); err != nil || string(b) != sshDockerfile {
			t.Errorf("the clone step's Dockerfile: %q, %v", b, err)
		}
	})

	t.Run("over SSH, a known_hosts without the server's host key is GitUnreachable naming the host", func(t *testing.T) {
		srv, commit := sshRepo(t)
		other, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		otherKey, err := ssh.NewPublicKey(other)
		if err != nil {
			t.Fatal(err)
		}
		create(t, c, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "ssh-changed-git", Namespace: "default"},
			Type:       corev1.SecretTypeSSHAuth,
			Data: map[string][]byte{
				"ssh-privatekey": srv.ClientKey,
				// The host's entry, with a key the host no longer has.
				"known_hosts": []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, otherKey) + "\n"),
			},
		})
		fn := gitFunction("ssh-changed", srv.URL, func(g *lambdapodv1alpha1.GitSource) {
			g.SecretRef = &corev1.LocalObjectReference{Name: "ssh-changed-git"}
		})
		create(t, c, fn)
		says := fmt.Sprintf("the host key of %s is not in known_hosts", srv.Addr)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "GitUnreachable", says)
		waitCondition(t, c, fn, lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "GitUnreachable", "git ls-remote "+srv.URL)
		noRun(t, c, fn, commit)
	})

	t.Run("a push delivery over the size limit is refused with 413 and builds nothing", func(t *testing.T) {
		create(t, c, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "pushed-git", Namespace: "default"},
			Data:       map[string][]byte{"webhook-secret": []byte(webhookSecret)},
		})
		pushed := gittest.New(t)
		first := pushed.Commit(t, map[string]string{"Dockerfile": "FROM scratch\n"}, "first")
		fn := gitFunction("pushed", pushed.URL, func(g *lambdapodv1alpha1.GitSource) {
			g.SecretRef = &corev1.LocalObjectReference{Name: "pushed-git"}
			// Only webhooks announce commits to this Function.
			g.PollInterval = &metav1.Duration{Duration: time.Hour}
		})
		create(t, c, fn)
		waitRun(t, c, fn, first)

		second := pushed.Commit(t, map[string]string{"main.go": "package main\n"}, "second")
		push := githubPush(pushed.URL, "refs/heads/main", second)
		// A signed push for a new commit, padded (JSON allows trailing
		// white space) past the limit.
		big := push + strings.Repeat(" ", webhook.MaxBody+1-len(push))
		headers := map[string]string{
			"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(webhookSecret), []byte(big)),
			// The answer comes before the body is sent, so the client
			// reads it rather than a reset connection.
			"Expect": "100-continue",
		}
		code, msg := deliver(t, hooks, "default", "pushed", big, headers)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, fmt.Sprintf("over the limit of %d", webhook.MaxBody)) {
			t.Errorf("oversized delivery: %d %s", code, msg)
		}
		noRun(t, c, fn, second)

		// The same push within the limit builds.
		headers["X-Hub-Signature-256"] = "sha256=" + webhook.Sign([]byte(webhookSecret), []byte(push))
		if code, msg := deliver(t, hooks, "default", "pushed", push, headers); code != http.StatusAccepted {
			t.Fatalf("the push within the limit: %d %s", code, msg)
		}
		waitRun(t, c, fn, second)
	})
}

func describe(env *testenv.Env, kubeconfig string, fn *lambdapodv1alpha1.Function) (string, error) {
	out, err := kubectl(env, kubeconfig, "describe", "-n", fn.Namespace, "functions.lambdapod.io", fn.Name)
	if err != nil {
		return "", fmt.Errorf("kubectl describe: %v: %s", err, out)
	}
	return out, nil
}

// waitDescribed waits until `kubectl describe` of fn says every one of says.
func waitDescribed(t *testing.T, env *testenv.Env, kubeconfig string, fn *lambdapodv1alpha1.Function, says ...string) {
	t.Helper()
	eventually(t, func() error {
		out, err := describe(env, kubeconfig, fn)
		if err != nil {
			return err
		}
		for _, s := range says {
			if !strings.Contains(out, s) {
				return fmt.Errorf("kubectl describe does not say %q:\n%s", s, out)
			}
		}
		return nil
	})
}

// waitEvent waits until the events `kubectl describe` lists for fn have one
// of type typ and reason saying says.
func waitEvent(t *testing.T, env *testenv.Env, kubeconfig string, fn *lambdapodv1alpha1.Function, typ, reason, says string) {
	t.Helper()
	eventually(t, func() error {
		out, err := describe(env, kubeconfig, fn)
		if err != nil {
			return err
		}
		_, events, _ := strings.Cut(out, "\nEvents:")
		for _, line := range strings.Split(events, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == typ && f[1] == reason && strings.Contains(line, says) {
				return nil
			}
		}
		return fmt.Errorf("kubectl describe lists no %s %s event saying %q; events:%s", typ, reason, says, events)
	})
}

// setBuildConfig replaces the build ConfigMap's data, as an operator
// editing it does.
func setBuildConfig(t *testing.T, c client.Client, data map[string]string) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: buildConfigNamespace, Name: buildConfigName}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data = data
	if err := c.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

func namespace(t *testing.T, c client.Client, name string) string {
	t.Helper()
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// refusesRuns waits until the API server refuses PipelineRuns in ns with
// reason, saying says: a quota or an admission policy takes effect a moment
// after it is created.
func refusesRuns(t *testing.T, c client.Client, ns, says string, reason metav1.StatusReason) {
	t.Helper()
	eventually(t, func() error {
		pr := &tektonv1.PipelineRun{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns},
			Spec: tektonv1.PipelineRunSpec{
				Params: tektonv1.Params{{Name: "image", Value: *tektonv1.NewStructuredValues("registry.test/team/probe:1")}},
				PipelineSpec: &tektonv1.PipelineSpec{Tasks: []tektonv1.PipelineTask{{Name: "t", TaskSpec: &tektonv1.EmbeddedTask{
					TaskSpec: tektonv1.TaskSpec{Steps: []tektonv1.Step{{Name: "s", Image: "busybox"}}},
				}}}},
			},
		}
		err := c.Create(context.Background(), pr, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), says) {
			return fmt.Errorf("creating a PipelineRun in %s: %v, want a refusal saying %q", ns, err, says)
		}
		if got := apierrors.ReasonForError(err); got != reason {
			return fmt.Errorf("refused as %s, want %s: %v", got, reason, err)
		}
		return nil
	})
}

// cancelRun writes what Tekton writes when a running build is cancelled:
// its TaskRun cancelled, the step that was running terminated by Tekton,
// and the run failed with reason Cancelled.
func cancelRun(t *testing.T, c client.Client, pr *tektonv1.PipelineRun) {
	t.Helper()
	pod := pr.Name + "-build-pod"
	tr := &tektonv1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: pr.Name + "-build", Namespace: pr.Namespace},
		Spec:       tektonv1.TaskRunSpec{TaskSpec: &pr.Spec.PipelineSpec.Tasks[0].TaskSpec.TaskSpec, Status: tektonv1.TaskRunSpecStatusCancelled},
	}
	create(t, c, tr)
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunCancelled",
		Message: fmt.Sprintf("TaskRun %q was cancelled. TaskRun cancelled as the PipelineRun it belongs to has been cancelled.", tr.Name)})
	tr.Status.PodName = pod
	tr.Status.Steps = []tektonv1.StepState{
		{Name: "clone", Container: "step-clone", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
		{Name: "build", Container: "step-build", TerminationReason: "TaskRunCancelled", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "TaskRunCancelled", Message: fmt.Sprintf("Step build terminated as pod %s is terminated", pod),
		}}},
	}
	if err := c.Status().Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	setStatus(t, c, pr, func(st *tektonv1.PipelineRunStatus) {
		st.ChildReferences = []tektonv1.ChildStatusReference{{
			TypeMeta: runtime.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"}, Name: tr.Name, PipelineTaskName: "build",
		}}
		st.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "Cancelled",
			Message: fmt.Sprintf("PipelineRun %q was cancelled", pr.Name)})
	})
}

// runCloneStep runs pr's clone step in this process as its pod would: its
// arguments with Tekton's variables replaced, the git credentials Secret's
// keys as files where its volume is mounted, /workspace and the results in
// a temporary directory. It returns the COMMIT result and the checkout.
func runCloneStep(t *testing.T, pr *tektonv1.PipelineRun, secret *corev1.Secret) (commit, source string) {
	t.Helper()
	root := t.TempDir()
	task := pr.Spec.PipelineSpec.Tasks[0].TaskSpec
	step := task.Steps[0]
	if step.Name != "clone" || len(step.Command) != 1 || step.Command[0] != "/manager" || len(step.Args) < 2 || step.Args[0] != "build-step" {
		t.Fatalf("the first step is not the helper's clone: %s %v %v", step.Name, step.Command, step.Args)
	}
	secretVolumes := map[string]bool{}
	for _, v := range task.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret.Name {
			secretVolumes[v.Name] = true
		}
	}
	mounted := false
	for _, m := range step.VolumeMounts {
		if !secretVolumes[m.Name] {
			continue
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for k, v := range secret.Data {
			if err := os.WriteFile(filepath.Join(dir, k), v, 0o400); err != nil {
				t.Fatal(err)
			}
		}
		mounted = true
	}
	if !mounted {
		t.Fatalf("the clone step does not mount Secret %s: %+v", secret.Name, step.VolumeMounts)
	}
	results := filepath.Join(root, "tekton", "results")
	if err := os.MkdirAll(results, 0o700); err != nil {
		t.Fatal(err)
	}
	vars := []string{"/workspace/", filepath.Join(root, "workspace") + "/"}
	for _, p := range pr.Spec.Params {
		vars = append(vars, "$(params."+p.Name+")", p.Value.StringVal)
	}
	for _, r := range task.Results {
		vars = append(vars, "$(results."+r.Name+".path)", filepath.Join(results, r.Name))
	}
	replace := strings.NewReplacer(vars...)
	var args []string
	for _, a := range step.Args[1:] {
		args = append(args, replace.Replace(a))
	}
	var out, errOut bytes.Buffer
	if code := buildstep.Main(args, &out, &errOut); code != 0 {
		t.Fatalf("clone step %v: exit %d: %s%s", args, code, out.String(), errOut.String())
	}
	b, err := os.ReadFile(filepath.Join(results, "COMMIT"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), filepath.Join(root, "workspace", "source")
}

const sshDockerfile = "FROM lambda/provided:al2023\n"

// sshRepo serves a repository with one commit, its Dockerfile, over SSH.
func sshRepo(t *testing.T) (srv *gittest.SSH, commit string) {
	t.Helper()
	repo := gittest.New(t)
	commit = repo.Commit(t, map[string]string{"Dockerfile": sshDockerfile}, "over ssh")
	return repo.ServeSSH(t), commit
}

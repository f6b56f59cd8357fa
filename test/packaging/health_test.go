package packaging

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/argohealth"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// testArgoCDHealth creates Functions on a real API server, writes their
// status through the status subresource the way the controller does (one
// merge patch per pass, every condition with the Function's generation as
// observedGeneration unless a case says otherwise), reads them back and
// runs the health script on them.
//
// controllers' TestHealthInArgoCD drives real Functions through the real
// reconcilers into each state and is the proof that the script reads what
// the manager writes; the first cases here are those statuses, copied from
// what the manager wrote there, so that a change to the script is checked
// against them without running the manager. The odd cases are statuses the
// manager never writes, for the script's robustness: what an older manager
// left, or another writer.
func testArgoCDHealth(ctx context.Context, t *testing.T, env *testenv.Env) {
	script, err := argohealth.Script(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	c := env.Client
	const url = "http://lambdapod-activator.lambdapod-system.svc/default/"

	imageFn := func(name string) *lambdapodv1alpha1.Function {
		return &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{
				Image: "registry.example.com/team/" + name + ":v1",
			}},
		}
	}
	gitFn := func(name string) *lambdapodv1alpha1.Function {
		return &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: lambdapodv1alpha1.FunctionSpec{
				Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{URL: "https://git.example.com/team/" + name + ".git"}},
				Build:  &lambdapodv1alpha1.BuildSpec{Image: "registry.example.com/team/" + name},
			},
		}
	}
	// cond is one condition as the controller's scope.set writes it.
	type cond struct{ typ, status, reason, message string }
	type pass struct {
		conditions []cond
		remove     []string
		replicas   int32
		// unversioned writes the conditions without observedGeneration.
		unversioned bool
	}
	ready := func(name string) cond { return cond{"Ready", "True", "Ready", "serving at " + url + name + "/"} }
	deployed := func(name string, n int) cond {
		return cond{"Deployed", "True", "RolledOut", fmt.Sprintf("Deployment %s runs the current template on all %d pods (%d ready)", name, n, n)}
	}
	// all are the conditions status names, each with reason and message, as
	// summarize writes them from one problem.
	all := func(status map[string]string, reason, message string) []cond {
		var cs []cond
		for _, typ := range []string{"Built", "Deployed", "Ready", "Reconciling", "Stalled"} {
			if st, ok := status[typ]; ok {
				cs = append(cs, cond{typ, st, reason, message})
			}
		}
		return cs
	}
	rollingOut := func(name string) pass {
		return pass{conditions: all(map[string]string{"Deployed": "False", "Ready": "False", "Reconciling": "True"},
			"Progressing", "Deployment "+name+" is rolling out: 1 of 2 pods run the current template"), replicas: 2}
	}
	const commit = "4e704a6c8f13"
	runningBuild := func(run string) pass {
		return pass{conditions: all(map[string]string{"Built": "Unknown", "Ready": "False", "Reconciling": "True"},
			"Building", "PipelineRun "+run+" is building commit "+commit+"; follow it with tkn pipelinerun logs -n default "+run)}
	}
	failedBuild := func(run string) string {
		return "PipelineRun " + run + " for commit " + commit + ` failed at step "build" (exit code 1): Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0; ` +
			"logs: kubectl logs -n default " + run + "-build-pod -c step-build, or tkn pipelinerun logs -n default " + run
	}
	const (
		deadline = "Deployment stalled made no progress: ReplicaSet \"stalled-7d85bb58bb\" has timed out progressing; see `kubectl describe deployment stalled` and its pods' events"
		refused  = `Deployment refused cannot create pods (FailedCreate): pods "refused-6d4cf56db6-x7k2p" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true`
		gitDown  = `git ls-remote https://git.example.com/team/git-unreachable.git: Get "https://git.example.com/team/git-unreachable.git/info/refs?service=git-upload-pack": dial tcp 192.0.2.1:443: connect: connection refused`
		noImage  = "no image has been built from the git source yet"
	)

	healthy := func(message string) argohealth.Health { return argohealth.Health{Status: "Healthy", Message: message} }
	progressing := func(message string) argohealth.Health {
		return argohealth.Health{Status: "Progressing", Message: message}
	}
	degraded := func(message string) argohealth.Health { return argohealth.Health{Status: "Degraded", Message: message} }
	type healthCase struct {
		name   string
		fn     *lambdapodv1alpha1.Function
		passes []pass
		// bumpSpec changes the spec after the passes, as a user (or Argo CD
		// syncing a new revision) does.
		bumpSpec bool
		want     argohealth.Health
	}
	asWritten := []healthCase{{
		name: "new",
		fn:   imageFn("new"),
		want: progressing("Waiting for the lambdapod manager to reconcile the Function"),
	}, {
		name: "scaled-to-zero",
		fn:   imageFn("scaled-to-zero"),
		passes: []pass{
			{conditions: all(map[string]string{"Deployed": "False", "Ready": "False", "Reconciling": "True"},
				"Progressing", "waiting for Deployment scaled-to-zero to observe generation 1")},
			{conditions: []cond{deployed("scaled-to-zero", 0), ready("scaled-to-zero")}, remove: []string{"Reconciling"}},
		},
		want: healthy("serving at " + url + "scaled-to-zero/"),
	}, {
		name:   "serving",
		fn:     imageFn("serving"),
		passes: []pass{{conditions: []cond{deployed("serving", 1), ready("serving")}, replicas: 1}},
		want:   healthy("serving at " + url + "serving/"),
	}, {
		name:     "spec-changed",
		fn:       imageFn("spec-changed"),
		passes:   []pass{{conditions: []cond{deployed("spec-changed", 1), ready("spec-changed")}, replicas: 1}},
		bumpSpec: true,
		want:     progressing("Waiting for the lambdapod manager to observe generation 2"),
	}, {
		name:   "rolling-out",
		fn:     imageFn("rolling-out"),
		passes: []pass{rollingOut("rolling-out")},
		want:   progressing("Deployment rolling-out is rolling out: 1 of 2 pods run the current template"),
	}, {
		name: "stalled",
		fn:   imageFn("stalled"),
		passes: []pass{rollingOut("stalled"), {
			conditions: all(map[string]string{"Deployed": "False", "Ready": "False", "Stalled": "True"}, "ProgressDeadlineExceeded", deadline),
			remove:     []string{"Reconciling"}, replicas: 2,
		}},
		want: degraded(deadline),
	}, {
		name:   "refused",
		fn:     imageFn("refused"),
		passes: []pass{{conditions: all(map[string]string{"Deployed": "False", "Ready": "False", "Stalled": "True"}, "PodsCannotRun", refused)}},
		want:   degraded(refused),
	}, {
		name:   "building",
		fn:     gitFn("building"),
		passes: []pass{runningBuild("building-build-r2j4p")},
		want:   progressing("PipelineRun building-build-r2j4p is building commit " + commit + "; follow it with tkn pipelinerun logs -n default building-build-r2j4p"),
	}, {
		name: "build-failed",
		fn:   gitFn("build-failed"),
		passes: []pass{runningBuild("build-failed-build-r2j4p"), {
			conditions: all(map[string]string{"Built": "False", "Ready": "False", "Stalled": "True"}, "BuildFailed", failedBuild("build-failed-build-r2j4p")),
			remove:     []string{"Reconciling"},
		}},
		want: degraded(failedBuild("build-failed-build-r2j4p")),
	}, {
		// A failed rebuild while the last good image serves: stalled, since
		// only a push or a spec change can help.
		name: "rebuild-failed-still-serving",
		fn:   gitFn("rebuild-failed-still-serving"),
		passes: []pass{{
			conditions: []cond{
				{"Built", "True", "Built", "PipelineRun rebuild-failed-still-serving-build-qb8r4 built commit " + commit + " as registry.example.com/team/rebuild-failed-still-serving@sha256:b2b2"},
				deployed("rebuild-failed-still-serving", 1), ready("rebuild-failed-still-serving"),
			},
			replicas: 1,
		}, {
			conditions: []cond{
				{"Built", "False", "BuildFailed", failedBuild("rebuild-failed-still-serving-build-x9z8w")},
				{"Ready", "False", "BuildFailed", failedBuild("rebuild-failed-still-serving-build-x9z8w") + "; the function keeps running registry.example.com/team/rebuild-failed-still-serving@sha256:b2b2"},
				{"Stalled", "True", "BuildFailed", failedBuild("rebuild-failed-still-serving-build-x9z8w") + "; the function keeps running registry.example.com/team/rebuild-failed-still-serving@sha256:b2b2"},
			},
			replicas: 1,
		}},
		want: degraded(failedBuild("rebuild-failed-still-serving-build-x9z8w") + "; the function keeps running registry.example.com/team/rebuild-failed-still-serving@sha256:b2b2"),
	}, {
		// The manager retries it (Reconciling); docs/install.md has a
		// Built=False that is no build under way Degraded.
		name:   "git-unreachable",
		fn:     gitFn("git-unreachable"),
		passes: []pass{{conditions: all(map[string]string{"Built": "False", "Ready": "False", "Reconciling": "True"}, "GitUnreachable", gitDown)}},
		want:   degraded(gitDown),
	}}

	odd := []healthCase{{
		// The manager says a build under way with Built=Unknown; False with
		// a reason of a build under way is still no failure.
		name: "built-false-while-building",
		fn:   gitFn("built-false-while-building"),
		passes: []pass{{conditions: []cond{
			{"Built", "False", "Building", "PipelineRun built-false-while-building-abcde is running"},
			{"Ready", "False", "AwaitingBuild", noImage},
			{"Reconciling", "True", "AwaitingBuild", noImage},
		}}},
		want: progressing(noImage),
	}, {
		// A failed build without Stalled: Degraded, with both messages.
		name: "build-failed-not-stalled",
		fn:   gitFn("build-failed-not-stalled"),
		passes: []pass{{conditions: []cond{
			{"Built", "False", "BuildFailed", "PipelineRun build-failed-not-stalled-x7k2p failed: step build exited with 1"},
			{"Ready", "False", "AwaitingBuild", noImage},
			{"Reconciling", "True", "AwaitingBuild", noImage},
		}}},
		want: degraded(noImage + ": PipelineRun build-failed-not-stalled-x7k2p failed: step build exited with 1"),
	}, {
		name: "ready-and-reconciling",
		fn:   imageFn("ready-and-reconciling"),
		passes: []pass{{conditions: []cond{
			ready("ready-and-reconciling"), {"Reconciling", "True", "Progressing", "Deployment ready-and-reconciling is rolling out"},
		}, replicas: 1}},
		want: progressing("serving at " + url + "ready-and-reconciling/"),
	}, {
		// Conditions without observedGeneration: status.observedGeneration
		// tells which generation they describe.
		name:   "unversioned-conditions",
		fn:     imageFn("unversioned-conditions"),
		passes: []pass{{conditions: []cond{ready("unversioned-conditions")}, unversioned: true}},
		want:   healthy("serving at " + url + "unversioned-conditions/"),
	}, {
		name:     "unversioned-conditions-spec-changed",
		fn:       imageFn("unversioned-conditions-spec-changed"),
		passes:   []pass{{conditions: []cond{ready("unversioned-conditions-spec-changed")}, unversioned: true}},
		bumpSpec: true,
		want:     progressing("Waiting for the lambdapod manager to observe generation 2"),
	}, {
		name: "stalled-without-ready-message",
		fn:   imageFn("stalled-without-ready-message"),
		passes: []pass{{conditions: []cond{
			{"Ready", "False", "Stalled", ""}, {"Stalled", "True", "Stalled", "cannot go on"},
		}}},
		want: degraded("cannot go on"),
	}, {
		name:   "no-ready-condition",
		fn:     imageFn("no-ready-condition"),
		passes: []pass{{conditions: []cond{deployed("no-ready-condition", 0)}}},
		want:   progressing("Waiting for the lambdapod manager to reconcile the Function"),
	}}

	run := func(t *testing.T, tc healthCase) {
		fn := tc.fn
		if err := c.Create(ctx, fn); err != nil {
			t.Fatal(err)
		}
		generation, spec := fn.Generation, fn.Spec.DeepCopy()
		for _, p := range tc.passes {
			before := fn.DeepCopy()
			observed := fn.Generation
			if p.unversioned {
				observed = 0
			}
			for _, cd := range p.conditions {
				meta.SetStatusCondition(&fn.Status.Conditions, metav1.Condition{
					Type: cd.typ, Status: metav1.ConditionStatus(cd.status), Reason: cd.reason, Message: cd.message,
					ObservedGeneration: observed,
				})
			}
			for _, r := range p.remove {
				meta.RemoveStatusCondition(&fn.Status.Conditions, r)
			}
			fn.Status.Replicas, fn.Status.ReadyReplicas, fn.Status.DesiredReplicas = p.replicas, p.replicas, p.replicas
			fn.Status.URL = url + fn.Name + "/"
			fn.Status.ObservedGeneration = fn.Generation
			if err := c.Status().Patch(ctx, fn, client.MergeFrom(before)); err != nil {
				t.Fatal(err)
			}
			// Status writes leave the spec alone: Argo CD sees no drift.
			got := &lambdapodv1alpha1.Function{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(fn), got); err != nil {
				t.Fatal(err)
			}
			if got.Generation != generation || !equality.Semantic.DeepEqual(got.Spec, *spec) {
				t.Fatalf("a status write changed the Function: generation %d -> %d, spec %+v -> %+v", generation, got.Generation, *spec, got.Spec)
			}
		}
		if tc.bumpSpec {
			fn.Spec.Runtime.Timeout = &metav1.Duration{Duration: 20 * time.Second}
			if err := c.Update(ctx, fn); err != nil {
				t.Fatal(err)
			}
			if fn.Generation != generation+1 {
				t.Fatalf("a spec change left generation at %d", fn.Generation)
			}
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(lambdapodv1alpha1.GroupVersion.WithKind("Function"))
		if err := c.Get(ctx, client.ObjectKeyFromObject(fn), u); err != nil {
			t.Fatal(err)
		}
		got, err := argohealth.Check(script, u)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			status, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
			t.Errorf("health = %v, want %v\nstatus: %v", got, tc.want, status)
		}
	}
	t.Run("as the manager writes them", func(t *testing.T) {
		for _, tc := range asWritten {
			t.Run(tc.name, func(t *testing.T) { run(t, tc) })
		}
	})
	t.Run("odd input the manager never writes", func(t *testing.T) {
		for _, tc := range odd {
			t.Run(tc.name, func(t *testing.T) { run(t, tc) })
		}
	})
}

// docs/install.md carries the same script in its argocd-cm snippet.
func TestArgoCDHealthScriptInDocs(t *testing.T) {
	script := strings.TrimSpace(string(readFile(t, argohealth.ScriptPath)))
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "resource.customizations.health.lambdapod.io_Function: |\n"
	_, rest, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/install.md has no %q", strings.TrimSpace(marker))
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		if l != "" && !strings.HasPrefix(l, "    ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	if got := strings.TrimSpace(strings.Join(lines, "\n")); got != script {
		t.Errorf("the script in docs/install.md differs from %s:\n%s", argohealth.ScriptPath, lineDiff(script, got))
	}
}

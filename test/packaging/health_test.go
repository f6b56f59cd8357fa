package packaging

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

const healthScript = "charts/lambdapod/argocd/health.lua"

// health is what Argo CD makes of a health script's answer.
type health struct{ Status, Message string }

// runHealthLua runs a health script the way Argo CD's util/lua does: the
// object, as the cluster cache holds it (unstructured, integers as int64),
// becomes the global obj; the script's return value is a table with status
// and message. openLibs false is Argo CD's mode for scripts from argocd-cm
// (only the base, table and package libraries, no string library); true is
// its mode for built-in scripts.
func runHealthLua(t *testing.T, script string, obj *unstructured.Unstructured, openLibs bool) health {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health.lua on %s: %v", obj.GetName(), err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, not a table", L.Get(-1).Type())
	}
	h := health{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	switch h.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		t.Fatalf("health.lua returned status %q, which Argo CD reads as Unknown", h.Status)
	}
	return h
}

// toLua converts a decoded JSON value to Lua values as Argo CD does:
// numbers (float64, int64, json.Number) to numbers or strings, maps to
// tables with string keys, lists to array tables.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetH(lua.LString(k), toLua(L, e))
		}
		return t
	}
	return lua.LNil
}

// testArgoCDHealth creates Functions on a real API server, writes their
// status through the status subresource the way the controller does (one
// merge patch per pass, every condition with observedGeneration), reads
// them back and runs the health script on them.
func testArgoCDHealth(ctx context.Context, t *testing.T, env *testenv.Env) {
	script := string(readFile(t, healthScript))
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
	}
	ready := func(msg string) cond { return cond{"Ready", "True", "Ready", msg} }
	deployed := func(n int) cond {
		return cond{"Deployed", "True", "RolledOut", fmt.Sprintf("Deployment x runs the current template on all %d pods (%d ready)", n, n)}
	}

	cases := []struct {
		name   string
		fn     *lambdapodv1alpha1.Function
		passes []pass
		// bumpSpec changes the spec after the passes, as a user (or Argo CD
		// syncing a new revision) does.
		bumpSpec bool
		want     health
	}{{
		name: "new",
		fn:   imageFn("new"),
		want: health{"Progressing", "Waiting for the lambdapod manager to reconcile the Function"},
	}, {
		name: "rolling-out",
		fn:   imageFn("rolling-out"),
		passes: []pass{{conditions: []cond{
			{"Deployed", "False", "Progressing", "Deployment rolling-out is rolling out: 1 of 2 pods run the current template"},
			{"Ready", "False", "Progressing", "Deployment rolling-out is rolling out: 1 of 2 pods run the current template"},
			{"Reconciling", "True", "Progressing", "Deployment rolling-out is rolling out: 1 of 2 pods run the current template"},
		}}},
		want: health{"Progressing", "Deployment rolling-out is rolling out: 1 of 2 pods run the current template"},
	}, {
		name: "scaled-to-zero",
		fn:   imageFn("scaled-to-zero"),
		passes: []pass{
			{conditions: []cond{{"Ready", "False", "Progressing", "waiting"}, {"Reconciling", "True", "Progressing", "waiting"}}},
			{conditions: []cond{deployed(0), ready("serving at " + url + "scaled-to-zero/")}, remove: []string{"Reconciling"}},
		},
		want: health{"Healthy", "serving at " + url + "scaled-to-zero/"},
	}, {
		name:   "serving",
		fn:     imageFn("serving"),
		passes: []pass{{conditions: []cond{deployed(3), ready("serving at " + url + "serving/")}, replicas: 3}},
		want:   health{"Healthy", "serving at " + url + "serving/"},
	}, {
		name:     "spec-changed",
		fn:       imageFn("spec-changed"),
		passes:   []pass{{conditions: []cond{deployed(1), ready("serving at " + url + "spec-changed/")}, replicas: 1}},
		bumpSpec: true,
		want:     health{"Progressing", "Waiting for the lambdapod manager to observe generation 2"},
	}, {
		name: "stalled",
		fn:   imageFn("stalled"),
		passes: []pass{{conditions: []cond{
			{"Deployed", "False", "ProgressDeadlineExceeded", "Deployment stalled made no progress: ReplicaSet has timed out progressing."},
			{"Ready", "False", "ProgressDeadlineExceeded", "Deployment stalled made no progress: ReplicaSet has timed out progressing."},
			{"Stalled", "True", "ProgressDeadlineExceeded", "Deployment stalled made no progress: ReplicaSet has timed out progressing."},
		}}},
		want: health{"Degraded", "Deployment stalled made no progress: ReplicaSet has timed out progressing."},
	}, {
		name: "build-failed",
		fn:   gitFn("build-failed"),
		passes: []pass{{conditions: []cond{
			{"Built", "False", "BuildFailed", "PipelineRun build-failed-x7k2p failed: step build exited with 1"},
			{"Ready", "False", "AwaitingBuild", "no image has been built from the git source yet"},
			{"Reconciling", "True", "AwaitingBuild", "no image has been built from the git source yet"},
		}}},
		want: health{"Degraded", "no image has been built from the git source yet: PipelineRun build-failed-x7k2p failed: step build exited with 1"},
	}, {
		name: "building",
		fn:   gitFn("building"),
		passes: []pass{{conditions: []cond{
			{"Built", "False", "Building", "PipelineRun building-abcde is running"},
			{"Ready", "False", "AwaitingBuild", "no image has been built from the git source yet"},
			{"Reconciling", "True", "AwaitingBuild", "no image has been built from the git source yet"},
		}}},
		want: health{"Progressing", "no image has been built from the git source yet"},
	}, {
		// A failed rebuild while the last good image serves: still Ready.
		name: "rebuild-failed-still-serving",
		fn:   gitFn("rebuild-failed-still-serving"),
		passes: []pass{{conditions: []cond{
			{"Built", "False", "BuildFailed", "PipelineRun x failed"},
			deployed(1), ready("serving at " + url + "rebuild-failed-still-serving/"),
		}, replicas: 1}},
		want: health{"Healthy", "serving at " + url + "rebuild-failed-still-serving/"},
	}}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fn := tc.fn
			if err := c.Create(ctx, fn); err != nil {
				t.Fatal(err)
			}
			generation, spec := fn.Generation, fn.Spec.DeepCopy()
			for _, p := range tc.passes {
				before := fn.DeepCopy()
				for _, cd := range p.conditions {
					meta.SetStatusCondition(&fn.Status.Conditions, metav1.Condition{
						Type: cd.typ, Status: metav1.ConditionStatus(cd.status), Reason: cd.reason, Message: cd.message,
						ObservedGeneration: fn.Generation,
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
			for _, openLibs := range []bool{false, true} {
				if got := runHealthLua(t, script, u, openLibs); got != tc.want {
					status, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
					t.Errorf("openLibs=%v: health = %+v, want %+v\nstatus: %v", openLibs, got, tc.want, status)
				}
			}
		})
	}
}

// docs/install.md carries the same script in its argocd-cm snippet.
func TestArgoCDHealthScriptInDocs(t *testing.T) {
	script := strings.TrimSpace(string(readFile(t, healthScript)))
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
		t.Errorf("the script in docs/install.md differs from %s:\n%s", healthScript, lineDiff(script, got))
	}
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// devDir is make dev's work directory (hack/dev/up.sh's DEV_DIR): its git/
// holds the bare repositories that the node's git server serves.
var devDir = envOr("DEV_DIR", filepath.Join(repoRoot, "bin", "dev"))

// gitRepo is a bare repository of the test's own under make dev's git
// directory, served by the node's git server next to hello-go.git, and a
// work tree (a clone) to push to it from.
type gitRepo struct {
	bare, work string
	url        string // as pods and the manager reach it
}

// newGitRepo makes a bare repository <name>.git from hello-go.git's main
// (the vendored sample that make dev pushed), so hello's repository is not
// touched, and clones it into a temporary directory. Both go at the end of
// the test.
func newGitRepo(t *testing.T, name string) *gitRepo {
	t.Helper()
	var hello lambdapodv1alpha1.Function
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: devFnNS, Name: devFn}, &hello); err != nil {
		t.Fatalf("fn/%s: %v", devFn, err)
	}
	if hello.Spec.Source.Git == nil {
		t.Fatalf("fn/%s has no git source", devFn)
	}
	helloURL := strings.TrimSuffix(hello.Spec.Source.Git.URL, "/")
	helloBare := filepath.Join(devDir, "git", path.Base(helloURL))
	if _, err := os.Stat(helloBare); err != nil {
		t.Fatalf("make dev's repository: %v", err)
	}
	r := &gitRepo{
		bare: filepath.Join(devDir, "git", name+".git"),
		work: filepath.Join(t.TempDir(), name),
		url:  helloURL[:strings.LastIndex(helloURL, "/")+1] + name + ".git",
	}
	if err := os.RemoveAll(r.bare); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") == "" {
			os.RemoveAll(r.bare)
		}
	})
	git(t, "", "init", "-q", "--bare", "-b", "main", r.bare)
	git(t, "", "clone", "-q", "-b", hello.Spec.Source.Git.Revision, helloBare, r.work)
	git(t, r.work, "remote", "set-url", "origin", r.bare)
	git(t, r.work, "push", "-q", "origin", "HEAD:main")
	return r
}

// commit rewrites the work tree's files, commits and pushes to main, and
// returns the new commit.
func (r *gitRepo) commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(r.work, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, r.work, "add", "-A")
	git(t, r.work, "-c", "user.name=lambdapod e2e", "-c", "user.email=e2e@lambdapod.invalid", "commit", "-q", "-m", msg)
	git(t, r.work, "push", "-q", "origin", "HEAD:main")
	return r.head(t)
}

func (r *gitRepo) head(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(git(t, r.work, "rev-parse", "HEAD"))
}

func (r *gitRepo) read(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.work, f))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newGitFunction creates a Function built from r's main with the Go
// strategy, the way make dev creates hello (build image next to hello's,
// pollInterval 10s), with the given changes, and waits until it is Ready on
// commit want.
func newGitFunction(t *testing.T, name string, r *gitRepo, want string, change func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	t.Helper()
	var hello lambdapodv1alpha1.Function
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: devFnNS, Name: devFn}, &hello); err != nil {
		t.Fatal(err)
	}
	if hello.Spec.Build == nil {
		t.Fatalf("fn/%s has no build", devFn)
	}
	fn := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: lambdapodv1alpha1.FunctionSpec{
			AuthType: lambdapodv1alpha1.AuthNone,
			Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL:          r.url,
				Revision:     "main",
				PollInterval: &metav1.Duration{Duration: 10 * time.Second},
			}},
			Build: &lambdapodv1alpha1.BuildSpec{
				Strategy: lambdapodv1alpha1.BuildStrategyGo,
				Image:    path.Dir(hello.Spec.Build.Image) + "/" + ns + "-" + name,
			},
			Runtime: lambdapodv1alpha1.RuntimeSpec{Timeout: &metav1.Duration{Duration: 10 * time.Second}},
			Scale: lambdapodv1alpha1.ScaleSpec{
				MinReplicas:      0,
				MaxReplicas:      2,
				ScaleToZeroAfter: &metav1.Duration{Duration: time.Minute},
			},
		},
	}
	if change != nil {
		change(fn)
	}
	if err := k.Create(context.Background(), fn); err != nil {
		t.Fatalf("create fn/%s: %v", name, err)
	}
	start := time.Now()
	fn = waitFunction(t, name, 5*time.Minute, func(fn *lambdapodv1alpha1.Function) bool {
		return fn.Status.Commit == want && readyOnGeneration(fn)
	})
	t.Logf("fn/%s Ready on %.12s %s after create, image %s", name, want, time.Since(start).Round(time.Millisecond), fn.Status.Image)
	return fn
}

func readyOnGeneration(fn *lambdapodv1alpha1.Function) bool {
	return fn.Status.ObservedGeneration == fn.Generation && meta.IsStatusConditionTrue(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady)
}

// waitFunction polls fn/name until ok, logging its conditions as they
// change, and fails the test after timeout.
func waitFunction(t *testing.T, name string, timeout time.Duration, ok func(*lambdapodv1alpha1.Function) bool) *lambdapodv1alpha1.Function {
	t.Helper()
	start := time.Now()
	last := ""
	for {
		var fn lambdapodv1alpha1.Function
		if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &fn); err != nil {
			t.Fatalf("get fn/%s: %v", name, err)
		}
		s := fmt.Sprintf("commit %.12s:", fn.Status.Commit)
		for _, c := range fn.Status.Conditions {
			s += fmt.Sprintf(" %s=%s/%s", c.Type, c.Status, c.Reason)
		}
		if s != last {
			t.Logf("  +%s fn/%s %s", time.Since(start).Round(100*time.Millisecond), name, s)
			last = s
		}
		if ok(&fn) {
			return &fn
		}
		if time.Since(start) > timeout {
			dump(t, name)
			out, errOut, _ := kubectl(t, "", "-n", ns, "get", "pipelineruns,taskruns,pods", "-l", "lambdapod.io/function="+name)
			t.Fatalf("fn/%s: not there after %s\n%s%s", name, timeout, out, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestGitPushRebuilds: a Function built from a git repository follows a
// push, told of it by the git host's push webhook delivered through the
// webhook Ingress (Traefik, HTTPS) as a hosted git service delivers it:
// status.commit moves to the new commit, it is Ready on it, and the next
// request is answered by the new code. The Function polls only every hour,
// so the webhook alone explains the rebuild (TestFailingBuildInStatus
// covers polling).
func TestGitPushRebuilds(t *testing.T) {
	in := ingress(t)
	const secret = "e2e-webhook-secret"
	if err := k.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "push-webhook", Namespace: ns},
		StringData: map[string]string{"webhook-secret": secret},
	}); err != nil {
		t.Fatal(err)
	}
	r := newGitRepo(t, ns+"-push")
	first := r.head(t)
	fn := newGitFunction(t, "push", r, first, func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Git.PollInterval = &metav1.Duration{Duration: time.Hour}
		fn.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "push-webhook"}
	})
	path := fmt.Sprintf("/%s/%s/", ns, fn.Name)
	if a := get(t, path+"?name=before"); a.status != 200 || a.body != helloBody("before", "/", fn.Name) {
		t.Fatalf("before the push: %d %q, want 200 %q", a.status, a.body, helloBody("before", "/", fn.Name))
	}
	oldImage := fn.Status.Image

	src := r.read(t, "main.go")
	const old = `const greeting = "Hello from lambdapod"`
	if !strings.Contains(src, old) {
		t.Fatalf("main.go has no %s", old)
	}
	greeting := "Pushed to " + ns
	second := r.commit(t, "e2e: a new greeting", map[string]string{
		"main.go": strings.Replace(src, old, fmt.Sprintf("const greeting = %q", greeting), 1),
	})
	pushed := time.Now()
	t.Logf("pushed %.12s (was %.12s)", second, first)

	// GitHub's push event, signed with the Function's webhook secret.
	hook, _ := json.Marshal(map[string]any{
		"ref":        "refs/heads/main",
		"before":     first,
		"after":      second,
		"repository": map[string]string{"clone_url": r.url},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(hook)
	u := fmt.Sprintf("https://%s/hooks/%s/%s", in.hooksHost, ns, fn.Name)
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(hook))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("webhook through the Ingress: POST %s: HTTP %d %s", u, resp.StatusCode, strings.TrimSpace(string(answer)))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook delivery: HTTP %d %s, want 202", resp.StatusCode, answer)
	}

	fn = waitFunction(t, fn.Name, 5*time.Minute, func(fn *lambdapodv1alpha1.Function) bool {
		return fn.Status.Commit == second && readyOnGeneration(fn)
	})
	t.Logf("Ready on %.12s %s after the push, image %s", second, time.Since(pushed).Round(time.Millisecond), fn.Status.Image)
	if fn.Status.Image == oldImage || !strings.HasPrefix(fn.Status.Image, fn.Spec.Build.Image+"@sha256:") {
		t.Errorf("status.image %s after the push (was %s), want a new %s@sha256:...", fn.Status.Image, oldImage, fn.Spec.Build.Image)
	}
	if c := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionBuilt); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Built condition %+v, want True", c)
	}

	// Ready on the new commit means no pod of the old one is left, not
	// even a terminating one: every request from now on gets the new code.
	want := func(who string) string {
		return strings.Replace(helloBody(who, "/", fn.Name), "Hello from lambdapod", greeting, 1)
	}
	ready := time.Now()
	n := 0
	for ; time.Since(ready) < 3*time.Second; n++ {
		who := fmt.Sprintf("after%d", n)
		a := get(t, path+"?name="+who)
		if a.status != 200 || a.body != want(who) {
			t.Fatalf("request %d, %s after Ready on %.12s: %d %q, want 200 %q", n, time.Since(ready).Round(time.Millisecond), second, a.status, a.body, want(who))
		}
		if n == 0 {
			t.Logf("after the push: HTTP %d in %s: %s", a.status, a.elapsed.Round(time.Millisecond), strings.TrimSpace(a.body))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d answers in the 3s after Ready, all from the new code", n)
}

// TestFailingBuildInStatus: a pushed commit that does not compile shows in
// the Function's status (Built and Ready False, BuildFailed, the compile
// step named), while the previous image keeps serving.
func TestFailingBuildInStatus(t *testing.T) {
	r := newGitRepo(t, ns+"-broken")
	first := r.head(t)
	fn := newGitFunction(t, "broken", r, first, nil)
	path := fmt.Sprintf("/%s/%s/", ns, fn.Name)
	oldImage := fn.Status.Image

	src := r.read(t, "main.go")
	bad := r.commit(t, "e2e: a compile error", map[string]string{
		"main.go": src + "\nfunc broken() { undefinedInE2E() }\n",
	})
	pushed := time.Now()
	t.Logf("pushed %.12s, which does not compile", bad)

	fn = waitFunction(t, fn.Name, 5*time.Minute, func(fn *lambdapodv1alpha1.Function) bool {
		c := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionBuilt)
		return c != nil && c.Status == metav1.ConditionFalse && fn.Status.LatestBuild != nil &&
			strings.Contains(c.Message, bad[:12])
	})
	t.Logf("Built=False %s after the push", time.Since(pushed).Round(time.Millisecond))
	built := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionBuilt)
	t.Logf("Built: %s: %s", built.Reason, built.Message)
	if built.Reason != "BuildFailed" {
		t.Errorf("Built reason %q, want BuildFailed", built.Reason)
	}
	if !strings.Contains(built.Message, `step "compile"`) {
		t.Errorf("Built message does not name step \"compile\": %s", built.Message)
	}
	// Ready follows within a reconcile
	fn = waitFunction(t, fn.Name, 30*time.Second, func(fn *lambdapodv1alpha1.Function) bool {
		return fn.Status.ObservedGeneration == fn.Generation && meta.IsStatusConditionFalse(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	})
	ready := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	t.Logf("Ready: %s/%s: %s", ready.Status, ready.Reason, ready.Message)
	if ready.Reason != "BuildFailed" {
		t.Errorf("Ready reason %q, want BuildFailed", ready.Reason)
	}
	if !strings.Contains(ready.Message, "compile") {
		t.Errorf("Ready message does not name step compile: %s", ready.Message)
	}
	if fn.Status.Commit != first || fn.Status.Image != oldImage {
		t.Errorf("status commit %.12s image %s after a failed build, want the previous %.12s %s", fn.Status.Commit, fn.Status.Image, first, oldImage)
	}

	// the previous image still answers
	for i := range 3 {
		a := get(t, fmt.Sprintf("%s?name=still%d", path, i))
		if want := helloBody(fmt.Sprintf("still%d", i), "/", fn.Name); a.status != 200 || a.body != want {
			t.Errorf("request %d after the failed build: %d %q, want 200 %q", i, a.status, a.body, want)
		} else if i == 0 {
			t.Logf("after the failed build: HTTP %d in %s: %s", a.status, a.elapsed.Round(time.Millisecond), strings.TrimSpace(a.body))
		}
	}
}

package webhook_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/testproc"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/scheme"
	"github.com/lambdapod/lambdapod/internal/webhook"
)

type recorder struct {
	mu   sync.Mutex
	keys []types.NamespacedName
}

func (r *recorder) Resolve(_ context.Context, key types.NamespacedName) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, key)
	return nil
}

func (r *recorder) take() []types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := r.keys
	r.keys = nil
	return keys
}

const secret = "It's a Secret to Everybody"

// watched is a request body that tells whether it was read.
type watched struct {
	io.Reader
	read bool
}

func (b *watched) Read(p []byte) (int, error) {
	b.read = true
	return b.Reader.Read(p)
}

// cluster has the Functions team/hello (git, with a webhook secret),
// team/scp (the same, its url in scp syntax), team/nosecret (no
// secretRef), team/nokey (a Secret without webhook-secret), team/gone
// (a Secret that does not exist) and team/image (no git source).
func cluster() client.Client {
	git := func(name, url, secretRef string) *lambdapodv1alpha1.Function {
		fn := &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team"},
			Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: url, Revision: "main",
			}}},
		}
		if secretRef != "" {
			fn.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: secretRef}
		}
		return fn
	}
	const url = "https://git.example/org/hello.git"
	image := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "image", Namespace: "team"},
		Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Image: "x"}}}
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		git("hello", url, "hello-git"), git("scp", "git@Git.Example:org/hello", "hello-git"),
		git("nosecret", url, ""), git("nokey", url, "git-only"), git("gone", url, "missing"), image,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hello-git", Namespace: "team"}, Data: map[string][]byte{"webhook-secret": []byte(secret)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git-only", Namespace: "team"}, Data: map[string][]byte{"username": []byte("u")}},
	).Build()
}

// Push events as the providers send them, trimmed to what is read.
const (
	after      = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	githubMain = `{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"` + after + `",` +
		`"repository":{"full_name":"org/hello","html_url":"https://git.example/org/hello","url":"https://git.example/org/hello",` +
		`"git_url":"git://git.example/org/hello.git","ssh_url":"git@git.example:org/hello.git","clone_url":"https://git.example/org/hello.git"}}`
	githubDev = `{"ref":"refs/heads/dev","after":"` + after + `","repository":{"clone_url":"https://git.example/org/hello.git"}}`
	gitlabTag = `{"object_kind":"tag_push","ref":"refs/tags/v1","after":"` + after + `",` +
		`"project":{"path_with_namespace":"org/hello","web_url":"https://git.example/org/hello","git_ssh_url":"git@git.example:org/hello.git","git_http_url":"https://git.example/org/hello.git"},` +
		`"repository":{"url":"git@git.example:org/hello.git","homepage":"https://git.example/org/hello"}}`
	gitlabMain = `{"object_kind":"push","ref":"refs/heads/main","after":"` + after + `",` +
		`"project":{"git_ssh_url":"git@git.example:org/hello.git","git_http_url":"https://git.example/org/hello.git"}}`
	// Gitea's (and Forgejo's) push has GitHub's shape; only the ssh URL
	// here names the repository, in another spelling than the Function's.
	giteaMain = `{"ref":"refs/heads/main","after":"` + after + `","repository":{"full_name":"org/hello",` +
		`"clone_url":"https://mirror.example/org/hello.git","ssh_url":"ssh://git@GIT.example:22/Org/Hello/"}}`
	otherRepo = `{"ref":"refs/heads/main","after":"` + after + `","repository":{"clone_url":"https://git.example/org/other.git","html_url":"https://git.example/org/other"}}`
	noRepo    = `{"ref":"refs/heads/main","after":"` + after + `"}`
)

func github(body string) map[string]string {
	return map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(secret), []byte(body))}
}

func gitea(body string) map[string]string {
	return map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte(secret), []byte(body))}
}

func gitlab(event string) map[string]string {
	return map[string]string{"X-Gitlab-Event": event, "X-Gitlab-Token": secret}
}

// refusal is what every delivery that is not authenticated is answered.
const refusal = webhook.Refused + "\n"

func TestHandler(t *testing.T) {
	rec := &recorder{}
	h := &webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec}
	hello := types.NamespacedName{Namespace: "team", Name: "hello"}

	wrongSig := "sha256=" + webhook.Sign([]byte("guess"), []byte(githubMain))
	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		code                     int
		// says is in the answer; "" when it is refusal.
		says string
		// triggers is the Function resolved, if any.
		triggers types.NamespacedName
		// readsBody is whether the body may be read: never before the
		// delivery has passed every check of its headers.
		readsBody bool
	}{
		// Accepted.
		{"GitHub push", "POST", "/hooks/team/hello", githubMain, github(githubMain), 202, "resolving refs/heads/main for Function team/hello", hello, true},
		{"GitLab tag push, to a Function of a branch", "POST", "/hooks/team/hello", gitlabTag, gitlab("Tag Push Hook"), 200, "ignored push to refs/tags/v1", types.NamespacedName{}, true},
		{"GitLab push", "POST", "/hooks/team/hello", gitlabMain, gitlab("Push Hook"), 202, "resolving", hello, true},
		{"Gitea push naming the repository by its ssh URL only", "POST", "/hooks/team/hello", giteaMain, gitea(giteaMain), 202, "resolving", hello, true},
		{"GitHub push to a Function whose url is scp-like", "POST", "/hooks/team/scp", githubMain, github(githubMain), 202, "resolving", types.NamespacedName{Namespace: "team", Name: "scp"}, true},

		// Authenticated, told why nothing happens.
		{"push to another branch", "POST", "/hooks/team/hello", githubDev, github(githubDev), 200, "ignored push to refs/heads/dev", types.NamespacedName{}, true},
		{"GitHub ping", "POST", "/hooks/team/hello", `{"zen":"hi"}`, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(secret), []byte(`{"zen":"hi"}`))}, 200, "ignored GitHub event \"ping\"", types.NamespacedName{}, true},
		{"push to another repository", "POST", "/hooks/team/hello", otherRepo, github(otherRepo), 422,
			"the push is to repository git.example/org/other, but Function team/hello builds git.example/org/hello (spec.source.git.url)", types.NamespacedName{}, true},
		{"GitLab push to another repository", "POST", "/hooks/team/hello", otherRepo, gitlab("Push Hook"), 422, "the push is to repository git.example/org/other", types.NamespacedName{}, true},
		{"push naming no repository", "POST", "/hooks/team/hello", noRepo, github(noRepo), 400, "names no repository", types.NamespacedName{}, true},
		{"signed but not JSON", "POST", "/hooks/team/hello", "ref=main", github("ref=main"), 400, "not the JSON of a push", types.NamespacedName{}, true},
		{"signed without a ref", "POST", "/hooks/team/hello", `{}`, github(`{}`), 400, "no ref", types.NamespacedName{}, true},

		// Refused from the request alone, with reasons that tell nothing
		// of the cluster.
		{"GET", "GET", "/hooks/team/hello", "", github(""), 405, "POSTed", types.NamespacedName{}, false},
		{"no provider", "POST", "/hooks/team/hello", githubMain, nil, 400, "not a GitHub, GitLab or Gitea webhook", types.NamespacedName{}, false},

		// Not authenticated: all refused alike, most without reading the
		// body.
		{"GitHub unsigned", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push"}, 403, "", types.NamespacedName{}, false},
		{"GitHub SHA-1 signature only", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=00"}, 403, "", types.NamespacedName{}, false},
		{"GitHub signature without sha256=", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": webhook.Sign([]byte(secret), []byte(githubMain))}, 403, "", types.NamespacedName{}, false},
		{"GitHub signature too short", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"}, 403, "", types.NamespacedName{}, false},
		{"GitLab no token", "POST", "/hooks/team/hello", gitlabMain, map[string]string{"X-Gitlab-Event": "Push Hook"}, 403, "", types.NamespacedName{}, false},
		{"GitLab wrong token", "POST", "/hooks/team/hello", gitlabMain, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, 403, "", types.NamespacedName{}, false},
		{"Gitea unsigned", "POST", "/hooks/team/hello", giteaMain, map[string]string{"X-Gitea-Event": "push"}, 403, "", types.NamespacedName{}, false},
		{"Gitea bad hex", "POST", "/hooks/team/hello", giteaMain, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": "zz"}, 403, "", types.NamespacedName{}, false},
		{"no such Function", "POST", "/hooks/team/nope", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"no such namespace, unsigned", "POST", "/hooks/nope/nope", githubMain, map[string]string{"X-GitHub-Event": "push"}, 403, "", types.NamespacedName{}, false},
		{"path without a Function", "POST", "/hooks/team", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"path below a Function", "POST", "/hooks/team/hello/x", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"path with no object's name", "POST", "/hooks/team/Hello_World", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"image Function", "POST", "/hooks/team/image", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"no secretRef", "POST", "/hooks/team/nosecret", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"Secret missing", "POST", "/hooks/team/gone", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		{"no webhook-secret key", "POST", "/hooks/team/nokey", githubMain, github(githubMain), 403, "", types.NamespacedName{}, false},
		// The signature is over the body: these need it read.
		{"GitHub signed with another secret", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": wrongSig}, 403, "", types.NamespacedName{}, true},
		{"GitHub body changed after signing", "POST", "/hooks/team/hello", githubMain + " ", github(githubMain), 403, "", types.NamespacedName{}, true},
		{"Gitea signed with another secret", "POST", "/hooks/team/hello", giteaMain, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte("guess"), []byte(giteaMain))}, 403, "", types.NamespacedName{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			body := &watched{Reader: strings.NewReader(tc.body)}
			req := httptest.NewRequest(tc.method, tc.path, body)
			req.ContentLength = int64(len(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			got := w.Body.String()
			if tc.says == "" {
				if w.Code != tc.code || got != refusal {
					t.Errorf("%d %q, want %d %q", w.Code, got, tc.code, refusal)
				}
			} else if w.Code != tc.code || !strings.Contains(got, tc.says) {
				t.Errorf("%d %q, want %d saying %q", w.Code, got, tc.code, tc.says)
			}
			if closes := w.Header().Get("Connection") == "close"; closes != (tc.code >= 400) {
				t.Errorf("Connection: %q for a %d", w.Header().Get("Connection"), tc.code)
			}
			if body.read && !tc.readsBody {
				t.Error("the body was read")
			}
			keys := rec.take()
			if (tc.triggers == types.NamespacedName{}) && len(keys) > 0 || (tc.triggers != types.NamespacedName{}) && (len(keys) != 1 || keys[0] != tc.triggers) {
				t.Errorf("triggered %v, want %v", keys, tc.triggers)
			}
		})
	}
}

// TestRefusalsAreAlike checks, through a server, that a caller without the
// webhook secret cannot tell from the answer whether a Function exists,
// has a webhook secret or which Secret holds it: every refusal is the
// same, headers and all.
func TestRefusalsAreAlike(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(&webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec})
	defer srv.Close()
	wrong := map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte("guess"), []byte(githubMain))}
	unsigned := map[string]string{"X-GitHub-Event": "push"}
	deliveries := []struct {
		path    string
		headers map[string]string
	}{
		{"/hooks/team/hello", unsigned},
		{"/hooks/team/hello", wrong},
		{"/hooks/team/hello", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}},
		{"/hooks/team/nope", wrong},
		{"/hooks/nope/nope", unsigned},
		{"/hooks/team/image", wrong},
		{"/hooks/team/nosecret", wrong},
		{"/hooks/team/gone", wrong},
		{"/hooks/team/nokey", wrong},
		{"/hooks/team", wrong},
	}
	var first string
	for _, d := range deliveries {
		req, err := http.NewRequest(http.MethodPost, srv.URL+d.path, strings.NewReader(githubMain))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range d.headers {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Del("Date")
		if !resp.Close {
			t.Errorf("%s %v: the connection is kept open", d.path, d.headers)
		}
		var answer strings.Builder
		answer.WriteString(resp.Status + "\n")
		_ = resp.Header.Write(&answer)
		answer.Write(b)
		if first == "" {
			first = answer.String()
			t.Logf("every refusal:\n%s", first)
		} else if answer.String() != first {
			t.Errorf("%s %v answered\n%s\nunlike the first refusal\n%s", d.path, d.headers, answer.String(), first)
		}
	}
	if keys := rec.take(); len(keys) > 0 {
		t.Errorf("triggered %v", keys)
	}
}

func TestLargeBodies(t *testing.T) {
	rec := &recorder{}
	h := &webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec}
	t.Run("a Content-Length over MaxBody is refused unread", func(t *testing.T) {
		body := &watched{Reader: strings.NewReader(githubMain)}
		req := httptest.NewRequest(http.MethodPost, "/hooks/team/hello", body)
		req.ContentLength = webhook.MaxBody + 1
		for k, v := range github(githubMain) {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "over the limit") || body.read {
			t.Errorf("%d %q, read %v", w.Code, w.Body.String(), body.read)
		}
	})
	t.Run("a body of unknown length over MaxBody is refused", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/team/hello", io.MultiReader(strings.NewReader(githubMain), io.LimitReader(zeros{}, webhook.MaxBody)))
		req.ContentLength = -1
		for k, v := range github(githubMain) {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden || w.Body.String() != refusal {
			t.Errorf("%d %q", w.Code, w.Body.String())
		}
	})
	t.Run("a signed push of unknown length", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/team/hello", io.MultiReader(strings.NewReader(githubMain)))
		req.ContentLength = -1
		for k, v := range github(githubMain) {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			t.Errorf("%d %q", w.Code, w.Body.String())
		}
	})
	if keys := rec.take(); len(keys) != 1 {
		t.Errorf("triggered %v, want the signed push only", keys)
	}
}

// TestLeader: only the leading replica takes pushes, since only its
// reconciler acts on them; the others tell the git host to deliver again,
// on a new connection that may reach the leader.
func TestLeader(t *testing.T) {
	rec := &recorder{}
	elected := make(chan struct{})
	srv := httptest.NewServer(&webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec, Leader: webhook.Elected(elected)})
	defer srv.Close()
	deliver := func() (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/hooks/team/hello", strings.NewReader(githubMain))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range github(githubMain) {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	for _, path := range []string{"/hooks/team/hello", "/hooks/nope/nope"} {
		rec.take()
		body := &watched{Reader: strings.NewReader(githubMain)}
		req := httptest.NewRequest(http.MethodPost, path, body)
		req.ContentLength = int64(len(githubMain))
		for k, v := range github(githubMain) {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		(&webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec, Leader: webhook.Elected(elected)}).ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable || w.Body.String() != webhook.NotLeader+"\n" || body.read {
			t.Errorf("%s on a replica that does not lead: %d %q, body read %v", path, w.Code, w.Body.String(), body.read)
		}
	}
	resp, body := deliver()
	if resp.StatusCode != http.StatusServiceUnavailable || body != webhook.NotLeader+"\n" || !resp.Close {
		t.Errorf("a replica that does not lead answered %d %q, closing the connection %v", resp.StatusCode, body, resp.Close)
	}
	if keys := rec.take(); len(keys) > 0 {
		t.Errorf("a replica that does not lead triggered %v", keys)
	}

	close(elected)
	if resp, body := deliver(); resp.StatusCode != http.StatusAccepted {
		t.Errorf("the leader answered %d %q", resp.StatusCode, body)
	}
	if keys := rec.take(); len(keys) != 1 || keys[0] != (types.NamespacedName{Namespace: "team", Name: "hello"}) {
		t.Errorf("the leader triggered %v", keys)
	}
}

// TestServer runs the receiver as the manager does, on a TCP port with the
// real Handler, and checks what a git host sees for each delivery and
// whether a build was triggered; then that it stops when the manager does.
func TestServer(t *testing.T) {
	rec := &recorder{}
	addr := testproc.FreeAddr(t)
	s := &webhook.Server{Addr: addr, Handler: &webhook.Handler{Functions: cluster(), Secrets: cluster(), Trigger: rec}}
	if s.NeedLeaderElection() {
		t.Error("the webhook receiver should run on every replica, to answer those that do not lead")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the server stopped before it served: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s 10 s after Start: %v", addr, err)
		}
	}

	hello := types.NamespacedName{Namespace: "team", Name: "hello"}
	const resolving = "resolving refs/heads/main for Function team/hello\n"
	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		code                     int
		answer                   string
		triggers                 []types.NamespacedName
	}{
		{"GitHub push", "POST", "/hooks/team/hello", githubMain, github(githubMain), 202, resolving, []types.NamespacedName{hello}},
		{"GitLab push", "POST", "/hooks/team/hello", gitlabMain, gitlab("Push Hook"), 202, resolving, []types.NamespacedName{hello}},
		{"Gitea push", "POST", "/hooks/team/hello", giteaMain, gitea(giteaMain), 202, resolving, []types.NamespacedName{hello}},
		{"GitHub push signed with another secret", "POST", "/hooks/team/hello", githubMain,
			map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte("guess"), []byte(githubMain))}, 403, refusal, nil},
		{"GitHub push changed after signing", "POST", "/hooks/team/hello", strings.Replace(githubMain, "main", "prod", 1), github(githubMain), 403, refusal, nil},
		{"Gitea push signed with another secret", "POST", "/hooks/team/hello", giteaMain,
			map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte("guess"), []byte(giteaMain))}, 403, refusal, nil},
		{"GitLab push with a wrong token", "POST", "/hooks/team/hello", gitlabMain, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, 403, refusal, nil},
		{"GitHub push unsigned", "POST", "/hooks/team/hello", githubMain, map[string]string{"X-GitHub-Event": "push"}, 403, refusal, nil},
		{"GitHub push to a Function that does not exist", "POST", "/hooks/team/nope", githubMain, github(githubMain), 403, refusal, nil},
		{"GitHub ping", "POST", "/hooks/team/hello", `{"zen":"hi"}`, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(secret), []byte(`{"zen":"hi"}`))},
			200, "ignored GitHub event \"ping\": only pushes trigger builds\n", nil},
		{"GitHub push to another branch", "POST", "/hooks/team/hello", githubDev, github(githubDev), 200,
			"ignored push to refs/heads/dev: Function team/hello builds revision \"main\"\n", nil},
		{"GET", "GET", "/hooks/team/hello", "", github(""), 405, "push webhooks are POSTed to /hooks/{namespace}/{function}\n", nil},
		{"a path outside /hooks/", "POST", "/team/hello", githubMain, github(githubMain), 404, "404 page not found\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			req, err := http.NewRequest(tc.method, "http://"+addr+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code || string(b) != tc.answer {
				t.Errorf("answered %d %q, want %d %q", resp.StatusCode, b, tc.code, tc.answer)
			}
			if keys := rec.take(); !slices.Equal(keys, tc.triggers) {
				t.Errorf("triggered %v, want %v", keys, tc.triggers)
			}
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start returned %v when the manager stopped, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server still runs 10 s after the manager stopped")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still takes connections after the server stopped", addr)
	}
}

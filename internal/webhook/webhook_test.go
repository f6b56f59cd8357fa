package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

const secret = "It's a Secret to Everybody"

func TestHandler(t *testing.T) {
	git := func(name, secretRef string) *lambdapodv1alpha1.Function {
		fn := &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team"},
			Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: "https://git.example/org/hello.git", Revision: "main",
			}}},
		}
		if secretRef != "" {
			fn.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: secretRef}
		}
		return fn
	}
	image := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "image", Namespace: "team"},
		Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Image: "x"}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		git("hello", "hello-git"), git("nosecret", ""), git("nokey", "git-only"), image,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hello-git", Namespace: "team"}, Data: map[string][]byte{"webhook-secret": []byte(secret)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git-only", Namespace: "team"}, Data: map[string][]byte{"username": []byte("u")}},
	).Build()
	rec := &recorder{}
	h := &webhook.Handler{Functions: c, Secrets: c, Trigger: rec}

	pushMain := `{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"4b825dc642cb6eb9a060e54bf8d69288fbee4904"}`
	pushDev := `{"ref":"refs/heads/dev","after":"4b825dc642cb6eb9a060e54bf8d69288fbee4904"}`
	github := func(body string) map[string]string {
		return map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(secret), []byte(body))}
	}
	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		code                     int
		says                     string
		triggers                 bool
	}{
		{"GitHub push", "POST", "/hooks/team/hello", pushMain, github(pushMain), 202, "resolving refs/heads/main", true},
		{"GitLab push", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}, 202, "resolving", true},
		{"Gitea push", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": webhook.Sign([]byte(secret), []byte(pushMain))}, 202, "resolving", true},
		{"push to another branch", "POST", "/hooks/team/hello", pushDev, github(pushDev), 200, "ignored push to refs/heads/dev", false},
		{"GitHub ping", "POST", "/hooks/team/hello", `{"zen":"hi"}`, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte(secret), []byte(`{"zen":"hi"}`))}, 200, "ignored", false},
		{"GitHub unsigned", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-GitHub-Event": "push"}, 401, "no X-Hub-Signature-256", false},
		{"GitHub signed with another secret", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte("guess"), []byte(pushMain))}, 403, "does not match", false},
		{"GitHub body changed after signing", "POST", "/hooks/team/hello", pushMain + " ", github(pushMain), 403, "does not match", false},
		{"GitHub SHA-1 signature only", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=00"}, 401, "no X-Hub-Signature-256", false},
		{"GitLab wrong token", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, 403, "X-Gitlab-Token does not match", false},
		{"GitLab no token", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitlab-Event": "Push Hook"}, 401, "no X-Gitlab-Token", false},
		{"Gitea bad hex", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": "zz"}, 403, "not hex", false},
		{"Gitea unsigned", "POST", "/hooks/team/hello", pushMain, map[string]string{"X-Gitea-Event": "push"}, 401, "no X-Gitea-Signature", false},
		{"no provider", "POST", "/hooks/team/hello", pushMain, nil, 400, "not a GitHub, GitLab or Gitea webhook", false},
		{"signed but not JSON", "POST", "/hooks/team/hello", "ref=main", github("ref=main"), 400, "not JSON", false},
		{"signed without a ref", "POST", "/hooks/team/hello", `{}`, github(`{}`), 400, "no ref", false},
		{"GET", "GET", "/hooks/team/hello", "", github(""), 405, "POSTed", false},
		{"no such Function", "POST", "/hooks/team/nope", pushMain, github(pushMain), 404, "no Function team/nope", false},
		{"bad path", "POST", "/hooks/team", pushMain, github(pushMain), 404, "no such hook", false},
		{"image Function", "POST", "/hooks/team/image", pushMain, github(pushMain), 404, "has no git source", false},
		{"no secretRef", "POST", "/hooks/team/nosecret", pushMain, github(pushMain), 403, "no spec.source.git.secretRef", false},
		{"no webhook-secret key", "POST", "/hooks/team/nokey", pushMain, github(pushMain), 403, "has no webhook-secret key", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.keys = nil
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("%d %q, want %d saying %q", w.Code, w.Body.String(), tc.code, tc.says)
			}
			if got := len(rec.keys) == 1 && rec.keys[0] == (types.NamespacedName{Namespace: "team", Name: "hello"}); got != tc.triggers {
				t.Errorf("triggered %v, want %v", rec.keys, tc.triggers)
			}
		})
	}
}

func TestServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &webhook.Server{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler()}
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.NeedLeaderElection() {
		t.Error("the webhook receiver should run on every replica")
	}
}

package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The reviewers here stand in for the API server in tests of the
// caching and bounding logic; the real decisions are tested against a
// real API server in activator/integration.
type tokens struct{ n atomic.Int32 }

func (f *tokens) Create(_ context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.n.Add(1)
	if tr.Spec.Token == "good" {
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"team-a"}}}
	}
	return tr, nil
}

type access struct{ n atomic.Int32 }

func (f *access) Create(_ context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.n.Add(1)
	a := sar.Spec.ResourceAttributes
	sar.Status.Allowed = sar.Spec.User == "alice" && a.Verb == "invoke" && a.Group == "lambdapod.io" && a.Resource == "functions" && a.Name == "hello"
	return sar, nil
}

func bearer(tok string) Credentials { return Credentials{token: tok} }

func TestDecisionsAreCachedAndExpire(t *testing.T) {
	tk, ac := &tokens{}, &access{}
	a := New(tk, ac, nil, Options{TTL: 100 * time.Millisecond})
	ctx := context.Background()
	for range 100 {
		id, err := a.Authenticate(ctx, bearer("good"))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Authorize(ctx, id, "team-a", "hello"); err != nil {
			t.Fatalf("alice on hello: %v", err)
		}
		if err := a.Authorize(ctx, id, "team-a", "other"); err == nil || err.Type != "AccessDeniedException" || err.Status != 403 {
			t.Fatalf("alice on other: %v", err)
		}
	}
	if tk.n.Load() != 1 || ac.n.Load() != 2 {
		t.Fatalf("100 requests cost %d TokenReviews and %d SubjectAccessReviews, want 1 and 2", tk.n.Load(), ac.n.Load())
	}
	time.Sleep(150 * time.Millisecond)
	id, _ := a.Authenticate(ctx, bearer("good"))
	_ = a.Authorize(ctx, id, "team-a", "hello")
	if tk.n.Load() != 2 || ac.n.Load() != 3 {
		t.Fatalf("after the TTL: %d and %d reviews, want 2 and 3", tk.n.Load(), ac.n.Load())
	}
	if _, err := a.Authenticate(ctx, bearer("bad")); err == nil || err.Type != "UnrecognizedClientException" {
		t.Fatalf("a bad token: %v", err)
	}
}

// A flood of made-up tokens keeps the caches at their bound.
func TestCachesAreBounded(t *testing.T) {
	a := New(&tokens{}, &access{}, nil, Options{Entries: 50})
	for i := range 1000 {
		_, _ = a.Authenticate(context.Background(), bearer(strings.Repeat("x", i+1)))
	}
	if n := len(a.identity.Keys()); n > 50 {
		t.Fatalf("%d cached identities, want at most 50", n)
	}
}

type keys map[string]Key

func (k keys) Lookup(id string) (Key, bool) { v, ok := k[id]; return v, ok }

// sign signs r as the AWS SDK for Go v2 does for Lambda.
func sign(t *testing.T, r *http.Request, body, id, secret string, at time.Time) {
	t.Helper()
	sum := sha256hex(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, r, sum, "lambda", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
}

func TestSigV4(t *testing.T) {
	k := Key{ID: "LPKTEST", Secret: "s3cret", Identity: Identity{User: "alice"}}
	a := New(&tokens{}, &access{}, keys{"LPKTEST": k}, Options{})
	now := time.Now().UTC()
	a.now = func() time.Time { return now }
	check := func(r *http.Request, body string) *Error {
		c, err := Parse(r)
		if err != nil {
			return err
		}
		if _, err := a.Authenticate(context.Background(), c); err != nil {
			return err
		}
		return a.Verify(r, c, []byte(body))
	}
	// A path with an escaped ARN, as the SDK sends a FunctionName ARN.
	target := "http://activator.example/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ateam-a.hello/invocations?Qualifier=%24LATEST"
	newReq := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		r.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = int64(len(body))
		return r
	}
	r := newReq(`{"a":1}`)
	sign(t, r, `{"a":1}`, "LPKTEST", "s3cret", now)
	if err := check(r, `{"a":1}`); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func() (*http.Request, string)
		want string
	}{
		{"another body", func() (*http.Request, string) {
			r := newReq(`{"a":1}`)
			sign(t, r, `{"a":1}`, "LPKTEST", "s3cret", now)
			return r, `{"a":2}`
		}, "InvalidSignatureException"},
		{"a header changed after signing", func() (*http.Request, string) {
			r := newReq(`{}`)
			sign(t, r, `{}`, "LPKTEST", "s3cret", now)
			r.Header.Set("X-Amz-Invocation-Type", "Event")
			return r, `{}`
		}, "InvalidSignatureException"},
		{"another secret", func() (*http.Request, string) {
			r := newReq(`{}`)
			sign(t, r, `{}`, "LPKTEST", "wrong", now)
			return r, `{}`
		}, "InvalidSignatureException"},
		{"signed 10 minutes ago", func() (*http.Request, string) {
			r := newReq(`{}`)
			sign(t, r, `{}`, "LPKTEST", "s3cret", now.Add(-10*time.Minute))
			return r, `{}`
		}, "InvalidSignatureException"},
		{"an unknown key", func() (*http.Request, string) {
			r := newReq(`{}`)
			sign(t, r, `{}`, "LPKOTHER", "s3cret", now)
			return r, `{}`
		}, "UnrecognizedClientException"},
		{"a session token", func() (*http.Request, string) {
			r := newReq(`{}`)
			r.Header.Set("X-Amz-Security-Token", "tok")
			sign(t, r, `{}`, "LPKTEST", "s3cret", now)
			return r, `{}`
		}, "UnrecognizedClientException"},
	} {
		r, body := tc.mod()
		err := check(r, body)
		if err == nil || err.Type != tc.want || err.Status != 403 {
			t.Errorf("%s: %v, want 403 %s", tc.name, err, tc.want)
		}
	}
	r = newReq(`{}`)
	if c, err := Parse(r); err != nil || c.Present() {
		t.Fatalf("no Authorization: %v %v", c, err)
	}
	r.Header.Set("Authorization", "Basic YTpi")
	if _, err := Parse(r); err == nil || err.Type != "UnrecognizedClientException" {
		t.Fatalf("Basic credentials: %v", err)
	}
}

package autoscaler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestReportAuthentication runs the attacks of a caller who reaches the
// report port against the real handler with authentication as the manager
// runs it: a real API server issues the ServiceAccount tokens (TokenRequest)
// and checks them (TokenReview). A forged report must be refused before its
// body is read and leave the Deployment's replicas alone; the activator's
// token must still work, at a TokenReview a minute, not a report.
func TestReportAuthentication(t *testing.T) {
	e := testenv.Start(t)
	c := cachedClient(t, e)
	cs := kubernetes.NewForConfigOrDie(e.Config)
	system := makeNamespace(t, c, "lambdapod-system")
	other := makeNamespace(t, c, "team-b")
	activator := ServiceAccountUser(system, "lambdapod-activator")
	activatorToken := saToken(t, cs, system, "lambdapod-activator", stats.TokenAudience)
	// The activator's ordinary API token: valid, but for the API server.
	activatorAPIToken := saToken(t, cs, system, "lambdapod-activator", "")
	otherToken := saToken(t, cs, other, "builder", stats.TokenAudience)
	// A report that asks for all a function can take, and keeps it up.
	forged := func(ns, name string) []byte {
		return mustJSON(t, stats.Report{Activator: "forger", Stats: []stats.Stat{
			{Namespace: ns, Name: name, Concurrency: 1e6, InFlight: 1000, Queued: 1000, Requests: 1000}}})
	}

	t.Run("without authentication a forged report scales a function to maxReplicas", func(t *testing.T) {
		// What -autoscaler-auth=false does, and what every manager did
		// before: the figure the refusals below are measured against.
		ns := makeNamespace(t, c, "open")
		makeFunction(t, e.Client, ns, "fn", 3)
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond})
		code, _ := postAs(t, url, "", forged(ns, "fn"))
		got := waitReplicas(t, e.Client, ns, "fn", 3, 2*time.Second)
		t.Logf("no authentication, a forged report without a token: %d, replicas 0 -> %d (maxReplicas 3)", code, got)
		if code != http.StatusAccepted || got != 3 {
			t.Errorf("answered %d, replicas %d; want 202 and 3 (the attack the authentication stops)", code, got)
		}
	})

	// One autoscaler for the refusals and the real report, so that the
	// replicas the real report sets show the refusals set none; it stops
	// with this subtest, before the next ones start their own.
	t.Run("with authentication", func(t *testing.T) {
		auth := newTestAuth(t, e.Config, &reviewCounter{}, activator)
		ns := makeNamespace(t, c, "victim")
		makeFunction(t, e.Client, ns, "fn", 3)
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond, Auth: auth})

		t.Run("a report without a valid token is refused with 401 and scales nothing", func(t *testing.T) {
			for _, tc := range []struct{ name, header string }{
				{"no Authorization", ""},
				{"an empty bearer token", "Bearer "},
				{"basic credentials", "Basic YWRtaW46YWRtaW4="},
				{"a made-up token", "Bearer not-a-token"},
				{"a token signed by no one", "Bearer " + unsigned(activatorToken)},
				{"the activator's API server token (another audience)", "Bearer " + activatorAPIToken},
				{"a token over the cap", "Bearer " + strings.Repeat("a", stats.MaxTokenBytes+1)},
			} {
				code, msg, hdr := postHeader(t, url, tc.header, forged(ns, "fn"))
				t.Logf("%s: %d %q", tc.name, code, strings.TrimSpace(msg))
				if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: answered %d (WWW-Authenticate %q), want 401 with a Bearer challenge", tc.name, code, hdr.Get("WWW-Authenticate"))
				}
			}
			time.Sleep(time.Second) // ten decisions
			got := replicas(t, e.Client, ns, "fn")
			t.Logf("after the forged reports without a valid token and 10 decisions: replicas %d", got)
			if got != 0 {
				t.Errorf("replicas %d, want 0: a forged report scaled the function", got)
			}
		})

		t.Run("another ServiceAccount's token is refused with 403 and scales nothing", func(t *testing.T) {
			code, msg := postAs(t, url, otherToken, forged(ns, "fn"))
			t.Logf("the token of %s: %d %q", ServiceAccountUser(other, "builder"), code, strings.TrimSpace(msg))
			if code != http.StatusForbidden {
				t.Errorf("answered %d, want 403", code)
			}
			time.Sleep(time.Second)
			if got := replicas(t, e.Client, ns, "fn"); got != 0 {
				t.Errorf("replicas %d, want 0", got)
			} else {
				t.Logf("after 10 decisions: replicas %d", got)
			}
		})

		t.Run("a refusal comes before the body is read", func(t *testing.T) {
			// A body that never ends: the answer must come anyway.
			pr, pw := io.Pipe()
			defer pw.Close()
			go func() { _, _ = pw.Write(bytes.Repeat([]byte("x"), 64<<10)) }()
			req, _ := http.NewRequest(http.MethodPost, url, pr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("no answer to an endless body without a token: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("answered %d, want 401", resp.StatusCode)
			}
		})

		t.Run("the activator's token is taken and the function scales", func(t *testing.T) {
			// Through the activator's reporter, its token in a file as the
			// kubelet projects it.
			file := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(file, []byte(activatorToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := stats.NewReporter(url, "act-1", nil)
			r.TokenFile = file
			start := time.Now()
			if err := r.Send(context.Background(), stats.Report{Activator: "act-1", Stats: []stats.Stat{
				{Namespace: ns, Name: "fn", Concurrency: 2, Queued: 2, Requests: 2}}}); err != nil {
				t.Fatal(err)
			}
			got := waitReplicas(t, e.Client, ns, "fn", 2, 2*time.Second)
			t.Logf("the activator's report (2 queued): replicas 0 -> %d in %v", got, time.Since(start).Round(time.Millisecond))
			if got != 2 {
				t.Errorf("replicas %d, want 2", got)
			}
			code, msg := postAs(t, url, activatorToken, mustJSON(t, stats.Report{Activator: "act-1"}))
			if code != http.StatusAccepted {
				t.Errorf("the activator's token answered %d %q, want 202", code, msg)
			}
		})
	})

	t.Run("one TokenReview a token, not a report", func(t *testing.T) {
		reviews := &reviewCounter{}
		auth := newTestAuth(t, e.Config, reviews, activator)
		_, url := startAutoscaler(t, c, Options{Interval: time.Hour, Auth: auth})
		body := mustJSON(t, stats.Report{Activator: "act-1", Stats: []stats.Stat{{Namespace: "open", Name: "fn", Concurrency: 1}}})
		const n = 200
		for i := 0; i < n; i++ {
			if code, msg := postAs(t, url, activatorToken, body); code != http.StatusAccepted {
				t.Fatalf("report %d answered %d %q", i, code, msg)
			}
		}
		t.Logf("%d reports with the activator's token, one after the other: TokenReviews %d", n, reviews.n.Load())
		if got := reviews.n.Load(); got != 1 {
			t.Errorf("%d TokenReviews, want 1", got)
		}
		// Concurrent reports with a token not seen yet wait for one review;
		// refusals are cached too.
		for _, tc := range []struct {
			name, token string
			want        int
		}{{"another ServiceAccount's token", otherToken, http.StatusForbidden}, {"a made-up token", "made-up", http.StatusUnauthorized}} {
			before := reviews.n.Load()
			codes := concurrently(t, 50, func() int { code, _ := postAs(t, url, tc.token, body); return code })
			for i := 0; i < 50; i++ {
				if code, _ := postAs(t, url, tc.token, body); code != tc.want {
					codes[code]++
				}
			}
			t.Logf("%s, 50 reports at once then 50 more: answers %v, TokenReviews %d", tc.name, codes, reviews.n.Load()-before)
			if codes[tc.want] != 50 || len(codes) != 1 {
				t.Errorf("answers %v, want 50 × %d", codes, tc.want)
			}
			if got := reviews.n.Load() - before; got != 1 {
				t.Errorf("%d TokenReviews, want 1", got)
			}
		}
		// An admission lasts a minute: then the token is checked again,
		// so a deleted ServiceAccount stops reporting.
		auth.mu.Lock()
		auth.now = func() time.Time { return time.Now().Add(authTTL + time.Second) }
		auth.mu.Unlock()
		before := reviews.n.Load()
		if code, msg := postAs(t, url, activatorToken, body); code != http.StatusAccepted {
			t.Fatalf("answered %d %q", code, msg)
		}
		if got := reviews.n.Load() - before; got != 1 {
			t.Errorf("a report a minute later made %d TokenReviews, want 1", got)
		}
	})

	t.Run("forged traffic no longer keeps a function from scaling to zero", func(t *testing.T) {
		ns := makeNamespace(t, c, "idle")
		f := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: ns}, Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Image: "example.com/fn:1"},
			Scale:  lambdapodv1alpha1.ScaleSpec{MaxReplicas: 3, ScaleToZeroAfter: &metav1.Duration{Duration: 10 * time.Second}}}}
		if err := e.Client.Create(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		makeDeploymentAt(t, e.Client, ns, "fn", 1)
		auth := newTestAuth(t, e.Config, &reviewCounter{}, activator)
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond, ReportTTL: time.Second, Auth: auth})
		// One request a report, as a real activator reports a trickle.
		keep := mustJSON(t, stats.Report{Activator: "forger", Stats: []stats.Stat{{Namespace: ns, Name: "fn", Requests: 1}}})
		codes := map[int]int{}
		start := time.Now()
		var at time.Duration
		for time.Since(start) < 15*time.Second {
			for _, token := range []string{"", otherToken} {
				code, _ := postAs(t, url, token, keep)
				codes[code]++
			}
			if replicas(t, e.Client, ns, "fn") == 0 {
				at = time.Since(start)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("a forged Requests: 1 every 0.5 s, without a token and with another ServiceAccount's: answers %v; scaled to zero after %v (scaleToZeroAfter 10s)",
			codes, at.Round(100*time.Millisecond))
		if at == 0 {
			t.Errorf("still %d replicas after 15 s, want 0 after scaleToZeroAfter", replicas(t, e.Client, ns, "fn"))
		}
		if codes[http.StatusAccepted] > 0 {
			t.Errorf("%d forged reports accepted", codes[http.StatusAccepted])
		}
	})
}

// reviewCounter counts the TokenReviews sent to the API server.
type reviewCounter struct{ n atomic.Int64 }

type countingTransport struct {
	next http.RoundTripper
	c    *reviewCounter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/tokenreviews") {
		t.c.n.Add(1)
	}
	return t.next.RoundTrip(r)
}

// newTestAuth is the manager's ReporterAuth, with a client that counts its
// TokenReviews at the HTTP level.
func newTestAuth(t *testing.T, cfg *rest.Config, c *reviewCounter, reporters ...string) *ReporterAuth {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, c} })
	cl, err := authenticationv1client.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewReporterAuth(cl.TokenReviews(), reporters)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// saToken creates the ServiceAccount if need be and a token of it for the
// audience (the API server's if empty), with the TokenRequest API.
func saToken(t *testing.T, cs kubernetes.Interface, ns, name, audience string) string {
	t.Helper()
	ctx := context.Background()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	tr, err = cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// unsigned is a JWT with token's claims and no signature.
func unsigned(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return token
	}
	return `eyJhbGciOiJub25lIn0.` + parts[1] + "."
}

func postAs(t *testing.T, url, token string, body []byte) (int, string) {
	t.Helper()
	h := ""
	if token != "" {
		h = "Bearer " + token
	}
	code, msg, _ := postHeader(t, url, h, body)
	return code, msg
}

func postHeader(t *testing.T, url, authorization string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), resp.Header
}

// concurrently runs f n times at once and counts its answers.
func concurrently(t *testing.T, n int, f func() int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code := f()
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// waitReplicas waits up to d for the Deployment to reach want replicas and
// returns the last count seen.
func waitReplicas(t *testing.T, c client.Client, ns, name string, want int32, d time.Duration) int32 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := replicas(t, c, ns, name)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeDeploymentAt creates a function's Deployment at n replicas, as the
// Function controller leaves it for the autoscaler.
func makeDeploymentAt(t *testing.T, c client.Client, ns, name string, n int32) {
	t.Helper()
	labels := map[string]string{contract.LabelFunction: name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "example.com/fn:1"}}},
			},
		},
	}
	if err := c.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// fakeReviewer admits the token "good" as the activator, knows "other" as
// another ServiceAccount, and refuses the rest; it can be made to fail or
// to block.
type fakeReviewer struct {
	calls, inFlight, peak atomic.Int64
	fail                  atomic.Bool
	block                 chan struct{}
}

func (f *fakeReviewer) Create(ctx context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.calls.Add(1)
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail.Load() {
		return nil, errors.New("connection refused")
	}
	out := tr.DeepCopy()
	switch tr.Spec.Token {
	case "good":
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences,
			User: authenticationv1.UserInfo{Username: ServiceAccountUser("lambdapod-system", "lambdapod-activator")}}
	case "other":
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences,
			User: authenticationv1.UserInfo{Username: ServiceAccountUser("team-b", "builder")}}
	case "no-audience":
		// An authenticator that does not check audiences.
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true,
			User: authenticationv1.UserInfo{Username: ServiceAccountUser("lambdapod-system", "lambdapod-activator")}}
	}
	return out, nil
}

func checkToken(ra *ReporterAuth, token string) (int, error) {
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	code, _, err := ra.check(r)
	return code, err
}

func TestReporterAuthDecisions(t *testing.T) {
	f := &fakeReviewer{}
	ra, err := NewReporterAuth(f, []string{" " + ServiceAccountUser("lambdapod-system", "lambdapod-activator"), ""})
	if err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]int{"good": 0, "other": http.StatusForbidden, "bad": http.StatusUnauthorized, "no-audience": http.StatusUnauthorized} {
		if code, err := checkToken(ra, token); code != want || err != nil {
			t.Errorf("token %q: %d %v, want %d", token, code, err, want)
		}
	}
	// An API server that fails: 503, and nothing cached.
	f.fail.Store(true)
	if code, err := checkToken(ra, "good-later"); code != http.StatusServiceUnavailable || err == nil {
		t.Errorf("a failed review: %d %v, want 503 and an error", code, err)
	}
	f.fail.Store(false)
	calls := f.calls.Load()
	if code, _ := checkToken(ra, "good"); code != 0 || f.calls.Load() != calls {
		t.Errorf("a cached admission: %d, %d new reviews", code, f.calls.Load()-calls)
	}
	if _, ok := ra.cache[sha("good-later")]; ok {
		t.Error("a failed review was cached")
	}
	for _, bad := range []string{"", "lambdapod-activator", "system:serviceaccount:lambdapod-system", "system:serviceaccount:Bad_NS:x"} {
		if _, err := NewReporterAuth(f, []string{bad}); err == nil {
			t.Errorf("reporters %q accepted", bad)
		}
	}
}

// Callers sending ever new tokens fill the cache with refusals: it stays
// at its bound, the activator's admission stays in it, and at most
// maxConcurrentReviews reviews are in flight.
func TestReporterAuthCacheBounded(t *testing.T) {
	f := &fakeReviewer{}
	ra, err := NewReporterAuth(f, []string{ServiceAccountUser("lambdapod-system", "lambdapod-activator")})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := checkToken(ra, "good"); code != 0 {
		t.Fatal(code)
	}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if code, err := checkToken(ra, fmt.Sprintf("forged-%d-%d", w, i)); code != http.StatusUnauthorized || err != nil {
					t.Errorf("a forged token: %d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ra.mu.Lock()
	n := len(ra.cache)
	_, kept := ra.cache[sha("good")]
	ra.mu.Unlock()
	t.Logf("3,200 forged tokens from 32 callers: %d reviews, at most %d at once; cache %d entries, the activator's admission kept: %v",
		f.calls.Load(), f.peak.Load(), n, kept)
	if n > authCacheEntries || !kept {
		t.Errorf("cache of %d entries (bound %d), activator kept: %v", n, authCacheEntries, kept)
	}
	if p := f.peak.Load(); p > maxConcurrentReviews {
		t.Errorf("%d reviews at once, want at most %d", p, maxConcurrentReviews)
	}
	calls := f.calls.Load()
	if code, _ := checkToken(ra, "good"); code != 0 || f.calls.Load() != calls {
		t.Errorf("the activator's token after the flood: %d, %d reviews", code, f.calls.Load()-calls)
	}
	// Refusals last authNegativeTTL, admissions authTTL.
	ra.now = func() time.Time { return time.Now().Add(authNegativeTTL + time.Second) }
	if checkToken(ra, "good"); f.calls.Load() != calls {
		t.Error("an admission expired with the refusals")
	}
	if checkToken(ra, "forged-0-0"); f.calls.Load() != calls+1 {
		t.Error("a refusal outlived authNegativeTTL")
	}
}

func sha(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// However many new tokens arrive at once, at most maxConcurrentReviews
// reviews are in flight; the rest wait their turn.
func TestReporterAuthReviewsAtOnce(t *testing.T) {
	f := &fakeReviewer{block: make(chan struct{})}
	ra, err := NewReporterAuth(f, []string{ServiceAccountUser("lambdapod-system", "lambdapod-activator")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = checkToken(ra, fmt.Sprintf("forged-%d", i))
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); f.inFlight.Load() < maxConcurrentReviews && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for any more to start
	inFlight := f.inFlight.Load()
	close(f.block)
	wg.Wait()
	t.Logf("32 new tokens at once: %d reviews in flight while they block, peak %d, %d reviews in all", inFlight, f.peak.Load(), f.calls.Load())
	if inFlight != maxConcurrentReviews || f.peak.Load() != maxConcurrentReviews || f.calls.Load() != 32 {
		t.Errorf("%d in flight, peak %d, %d reviews; want %d, %d, 32", inFlight, f.peak.Load(), f.calls.Load(), maxConcurrentReviews, maxConcurrentReviews)
	}
}

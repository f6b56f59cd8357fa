package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/lambdapod/lambdapod/activator/auth"
	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/streamtest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// Who may invoke what, against a real API server (TokenReview,
// SubjectAccessReview, RBAC) and real pods: each case asserts what the
// caller got and whether the function ran.
func TestInvokeAuthorisation(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(e.Config)
	system := namespace(t, e.Client, "lambdapod-system")
	ns := namespace(t, e.Client, "team-a")
	a := startActivator(t, e, server.Config{
		Handler:         handler.Options{ActivationTimeout: 10 * time.Second, TimeoutGrace: time.Second},
		InvokeAuth:      true,
		AuthCacheTTL:    200 * time.Millisecond,
		SystemNamespace: system,
	})
	base := "http://" + a.Addr()

	makeFunction(t, e.Client, ns, "private", fnOpts{})
	makeFunction(t, e.Client, ns, "public", fnOpts{public: true})
	priv := startPod(t, "private", 1, 5*time.Second, "pod-private")
	publish(t, e.Client, ns, "private", ready(priv.IP))
	pub := startPod(t, "public", 1, 5*time.Second, "pod-public")
	publish(t, e.Client, ns, "public", ready(pub.IP))
	ran := func() int { return invocations(t, priv.IP) }

	// The invoker role, as the chart ships it, bound to one ServiceAccount.
	must(t, e.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "lambdapod-invoker-test"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"lambdapod.io"}, Resources: []string{"functions"}, Verbs: []string{"invoke"}}}}))
	must(t, e.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "invokers", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "lambdapod-invoker-test"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "invoker", Namespace: ns}}}))
	invoker := token(t, cs, ns, "invoker")
	stranger := token(t, cs, ns, "stranger")

	call := func(fn, bearer string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, base+"/"+ns+"/"+fn+"/hi", strings.NewReader("hello"))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	t.Run("no credentials: 401 and the function does not run", func(t *testing.T) {
		before := ran()
		code, body, h := call("private", "")
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, "Missing Authentication Token") {
			t.Errorf("HTTP route without credentials: %d %q (WWW-Authenticate %q)", code, body, h.Get("WWW-Authenticate"))
		}
		resp, err := http.Post(base+"/2015-03-31/functions/"+ns+".private/invocations", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("X-Amzn-ErrorType") != "MissingAuthenticationTokenException" {
			t.Errorf("Invoke API without credentials: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
		}
		if n := ran() - before; n != 0 {
			t.Errorf("the function ran %d times for callers without credentials", n)
		}
	})

	t.Run("a token of a ServiceAccount without the role: 403", func(t *testing.T) {
		before := ran()
		code, body, _ := call("private", stranger)
		if code != 403 || !strings.Contains(body, "system:serviceaccount:"+ns+":stranger") {
			t.Errorf("stranger's token: %d %q", code, body)
		}
		if code, body, _ := call("private", "not-a-token"); code != 403 || !strings.Contains(body, "security token included in the request is invalid") {
			t.Errorf("a made-up token: %d %q", code, body)
		}
		if n := ran() - before; n != 0 {
			t.Errorf("the function ran %d times for refused callers", n)
		}
	})

	t.Run("a token of a ServiceAccount with the role: 200", func(t *testing.T) {
		before := ran()
		code, body, _ := call("private", invoker)
		if code != 200 || body != "POST /hi hello" {
			t.Errorf("invoker's token: %d %q", code, body)
		}
		if n := ran() - before; n != 1 {
			t.Errorf("the function ran %d times, want 1", n)
		}
	})

	t.Run("a public function answers anyone", func(t *testing.T) {
		if code, body, _ := call("public", ""); code != 200 || body != "POST /hi hello" {
			t.Errorf("anonymous call of a public function: %d %q", code, body)
		}
	})

	// Access keys for the AWS SDK: Secrets in the system namespace.
	key := func(name, id, secret, user string) {
		must(t, e.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: system, Labels: map[string]string{auth.KeyLabel: "true"}},
			StringData: map[string]string{auth.KeyIDField: id, auth.KeySecretField: secret, auth.KeyUserField: user}}))
	}
	key("alice", "LPKALICE0000000001", "alice-secret-key", "system:serviceaccount:"+ns+":invoker")
	key("bob", "LPKBOB000000000001", "bob-secret-key", "bob@example.com")
	sdk := func(id, secret string) *lambda.Client {
		return lambda.New(lambda.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(base), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		})
	}
	invoke := func(cl *lambda.Client) (*lambda.InvokeOutput, error) {
		return cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + ".private"), Payload: []byte(`{"x":1}`)})
	}
	apiCode := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return fmt.Sprint(err)
	}
	eventually(t, 5*time.Second, "the access keys are known", func() bool {
		_, err := invoke(sdk("LPKALICE0000000001", "alice-secret-key"))
		return err == nil
	})

	t.Run("the AWS SDK with an issued key: 200", func(t *testing.T) {
		before := ran()
		out, err := invoke(sdk("LPKALICE0000000001", "alice-secret-key"))
		if err != nil {
			t.Fatalf("Invoke with alice's key: %v", err)
		}
		var got struct{ Event json.RawMessage }
		_ = json.Unmarshal(out.Payload, &got)
		if out.StatusCode != 200 || string(got.Event) != `{"x":1}` {
			t.Errorf("Invoke with alice's key: %d %s", out.StatusCode, out.Payload)
		}
		// InvokeWithResponseStream is signed over its own path.
		st, err := streamtest.Invoke(ctx, t, sdk("LPKALICE0000000001", "alice-secret-key"),
			&lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(ns + ".private"), Payload: []byte(`{"x":2}`)}, nil)
		if err != nil || !strings.Contains(st.Payload(), `"event":{"x":2}`) {
			t.Errorf("InvokeWithResponseStream with alice's key: %v %q", err, st.Payload())
		}
		_, err = streamtest.Invoke(ctx, t, sdk("LPKALICE0000000001", "not-alice-secret"),
			&lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(ns + ".private"), Payload: []byte(`{"x":2}`)}, nil)
		if got := apiCode(err); got != "InvalidSignatureException" {
			t.Errorf("InvokeWithResponseStream with a wrong secret: %v", err)
		}
		if n := ran() - before; n != 2 {
			t.Errorf("the function ran %d times, want 2 (Invoke and the signed stream)", n)
		}
	})

	t.Run("the AWS SDK refused as Lambda refuses", func(t *testing.T) {
		before := ran()
		for _, tc := range []struct {
			name, id, secret, want string
		}{
			{"a wrong secret key", "LPKALICE0000000001", "not-alice-secret", "InvalidSignatureException"},
			{"a key whose identity lacks the role", "LPKBOB000000000001", "bob-secret-key", "AccessDeniedException"},
			{"a key no one issued", "LPKNOBODY000000001", "whatever", "UnrecognizedClientException"},
		} {
			_, err := invoke(sdk(tc.id, tc.secret))
			if got := apiCode(err); got != tc.want {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
			}
			var re interface{ HTTPStatusCode() int }
			if errors.As(err, &re) && re.HTTPStatusCode() != 403 {
				t.Errorf("%s: status %d, want 403", tc.name, re.HTTPStatusCode())
			}
		}
		if n := ran() - before; n != 0 {
			t.Errorf("the function ran %d times for refused callers", n)
		}
	})

	t.Run("a deleted key stops working", func(t *testing.T) {
		must(t, e.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: system}}))
		eventually(t, 5*time.Second, "alice's key is refused", func() bool {
			_, err := invoke(sdk("LPKALICE0000000001", "alice-secret-key"))
			return apiCode(err) == "UnrecognizedClientException"
		})
	})

	t.Run("a revoked binding stops working within the cache time", func(t *testing.T) {
		must(t, e.Client.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "invokers", Namespace: ns}}))
		eventually(t, 5*time.Second, "the invoker is refused", func() bool {
			code, _, _ := call("private", invoker)
			return code == 403
		})
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// token is a token of the ServiceAccount (created if need be) for the API
// server, as `kubectl create token` makes.
func token(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	_, _ = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// invocations is how many invocations the pod's sidecar has run.
func invocations(t *testing.T, ip string) int {
	t.Helper()
	m := get("http://" + ip + ":8080/metrics")
	n := 0
	for _, l := range strings.Split(m.body, "\n") {
		if strings.HasPrefix(l, "lambdapod_sidecar_invocations_total") {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err == nil {
				n += int(v)
			}
		}
	}
	return n
}

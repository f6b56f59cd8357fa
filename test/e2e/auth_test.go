//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestWhoMayInvoke: a Function with the default authType (RBAC) answers
// only callers whose credentials RBAC lets invoke it, with a bearer token
// or the AWS SDK signing with an access key; a public one answers anyone.
// Each case asserts what the caller got and whether the function ran.
func TestWhoMayInvoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fn := newFunction(t, "private", func(f *lambdapodv1alpha1.Function) {
		f.Spec.AuthType = lambdapodv1alpha1.AuthRBAC
		f.Spec.Scale.MinReplicas = 1
	})
	public := newFunction(t, "public", nil)
	// The chart's invoker ClusterRole, bound to one ServiceAccount.
	for _, sa := range []string{"invoker", "stranger"} {
		if err := k.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "invokers", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "lambdapod-invoker"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "invoker", Namespace: ns}}}); err != nil {
		t.Fatal(err)
	}
	createToken := func(sa string) string {
		out, errOut, err := kubectl(t, "", "-n", ns, "create", "token", sa, "--duration=10m")
		if err != nil {
			t.Fatalf("kubectl create token %s: %v %s", sa, err, errOut)
		}
		return strings.TrimSpace(out)
	}
	invoker, stranger := createToken("invoker"), createToken("stranger")
	call := func(name, token string) answer {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, activator+"/"+ns+"/"+name+"/who?name=e2e", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}
	want := helloBody("e2e", "/who", fn.Name)

	before := invocations(t, fn.Name)
	if a := call(fn.Name, ""); a.status != 401 || a.body == want {
		t.Errorf("no credentials: %d %q, want 401", a.status, a.body)
	}
	if a := call(fn.Name, stranger); a.status != 403 || !strings.Contains(a.body, "system:serviceaccount:"+ns+":stranger") {
		t.Errorf("a ServiceAccount without the role: %d %q, want 403 naming it", a.status, a.body)
	}
	if n := invocations(t, fn.Name) - before; n != 0 {
		t.Errorf("the function ran %d times for refused callers, want 0", n)
	}
	if a := call(fn.Name, invoker); a.status != 200 || a.body != want {
		t.Errorf("a ServiceAccount with the role: %d %q, want 200 %q", a.status, a.body, want)
	}
	if n := invocations(t, fn.Name) - before; n != 1 {
		t.Errorf("the function ran %d times after one allowed call, want 1", n)
	}
	if a := call(public.Name, ""); a.status != 200 || a.body != helloBody("e2e", "/who", public.Name) {
		t.Errorf("a public function, no credentials: %d %q", a.status, a.body)
	}

	// Access keys, as a platform team issues them (docs/security.md).
	key := func(name, id, secret, user string) {
		if err := k.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: systemNS, Labels: map[string]string{"lambdapod.io/access-key": "true"}},
			StringData: map[string]string{"accessKeyId": id, "secretAccessKey": secret, "username": user}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = k.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: systemNS}})
		})
	}
	key("e2e-key-invoker", "LPKE2EINVOKER00001", "invoker-secret", "system:serviceaccount:"+ns+":invoker")
	key("e2e-key-stranger", "LPKE2ESTRANGER0001", "stranger-secret", "system:serviceaccount:"+ns+":stranger")
	sdk := func(id, secret string) *lambda.Client {
		return lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(activator), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
	}
	event := `{"version":"2.0","rawPath":"/sdk","queryStringParameters":{"name":"sdk"},"requestContext":{"http":{"method":"POST","path":"/sdk"}}}`
	invoke := func(cl *lambda.Client) (*lambda.InvokeOutput, error) {
		return cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + "." + fn.Name), Payload: []byte(event)})
	}
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return "no API error: " + errString(err)
	}
	// The activators learn of new keys from their informers: a moment.
	var out *lambda.InvokeOutput
	var err error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if out, err = invoke(sdk("LPKE2EINVOKER00001", "invoker-secret")); err == nil {
			break
		}
	}
	if err != nil || out.StatusCode != 200 || !strings.Contains(string(out.Payload), "Hello from lambdapod, sdk!") {
		t.Errorf("the AWS SDK with the invoker's key: %v %+v", err, out)
	}
	for _, tc := range []struct{ name, id, secret, want string }{
		{"a wrong secret key", "LPKE2EINVOKER00001", "not-the-secret", "InvalidSignatureException"},
		{"a key whose identity lacks the role", "LPKE2ESTRANGER0001", "stranger-secret", "AccessDeniedException"},
		{"a key no one issued", "LPKE2ENOBODY000001", "whatever", "UnrecognizedClientException"},
	} {
		if _, err := invoke(sdk(tc.id, tc.secret)); code(err) != tc.want {
			t.Errorf("the AWS SDK with %s: %v, want %s", tc.name, err, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// invocations is how many invocations the function's pods' sidecars have
// run, from their metrics (the node reaches pod addresses).
func invocations(t *testing.T, name string) int {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"lambdapod.io/function": name}); err != nil {
		t.Fatalf("list pods of %s: %v", name, err)
	}
	n := 0
	for _, p := range list.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		a, err := tryGet("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/metrics")
		if err != nil {
			t.Fatalf("metrics of pod %s: %v", p.Name, err)
		}
		for _, l := range strings.Split(a.body, "\n") {
			if strings.HasPrefix(l, "lambdapod_sidecar_invocations_total") {
				var v float64
				if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err == nil {
					n += int(v)
				}
			}
		}
	}
	return n
}

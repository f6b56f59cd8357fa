package integration

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokekey"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// Function pods as the manager renders them (the activators' public key in
// the sidecar's environment) answer the activator and refuse anyone else
// who reaches them, before the function runs. The activator makes the key
// Secret when the manager has not.
func TestOnlyTheActivatorReachesAPod(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	system := namespace(t, e.Client, "lambdapod-system")
	ns := namespace(t, e.Client, "team-a")
	a := startActivator(t, e, server.Config{
		Handler:         handler.Options{ActivationTimeout: 10 * time.Second, TimeoutGrace: time.Second},
		SystemNamespace: system,
		InvokeTokens:    true,
	})
	base := "http://" + a.Addr()

	makeFunction(t, e.Client, ns, "hello", fnOpts{public: true})
	p := startPod(t, "hello", 1, 5*time.Second, "pod-hello", invokeKeyEnv(t, e, system, ns)...)
	publish(t, e.Client, ns, "hello", ready(p.IP))

	if got := post(base+"/"+ns+"/hello/", "through the activator"); got.err != nil || got.code != 200 || !strings.Contains(got.body, "through the activator") {
		t.Fatalf("through the activator: %d %q %v", got.code, got.body, got.err)
	}
	if n := invocations(t, p.IP); n != 1 {
		t.Errorf("the function ran %d times, want 1", n)
	}

	// Straight to the pod, as any pod of the cluster can: refused.
	direct := post("http://"+p.IP+":8080/2015-03-31/functions/hello/invocations", `{"direct":true}`)
	if direct.code != http.StatusForbidden || direct.header.Get("X-Amzn-ErrorType") != "AccessDeniedException" ||
		!strings.Contains(direct.body, "only from lambdapod's activators") {
		t.Errorf("straight to the pod: %d %s %q, want 403 AccessDeniedException", direct.code, direct.header.Get("X-Amzn-ErrorType"), direct.body)
	}
	if n := invocations(t, p.IP); n != 1 {
		t.Errorf("the function ran %d times after a caller went straight to its pod, want 1", n)
	}

	// A pod that expects another key (the Secret was replaced and the
	// manager restarted, not the activators): a clear failure, nothing ran.
	other, _ := invoketoken.GenerateKey()
	makeFunction(t, e.Client, ns, "stale", fnOpts{public: true})
	q := startPod(t, "stale", 1, 5*time.Second, "pod-stale", contract.EnvInvokeKey+"="+invoketoken.EncodePublicKey(other.Public().(ed25519.PublicKey)),
		contract.EnvFunctionNamespace+"="+ns)
	publish(t, e.Client, ns, "stale", ready(q.IP))
	got := post(base+"/"+ns+"/stale/", "x")
	if got.code != http.StatusInternalServerError || !strings.Contains(got.body, "refused the activator's invoke token") {
		t.Errorf("a pod with another key: %d %q, want 500 naming the refused token", got.code, got.body)
	}
	if n := invocations(t, q.IP); n != 0 {
		t.Errorf("the function ran %d times with a refused token", n)
	}
}

// invokeKeyEnv is the sidecar environment the manager renders: the public
// key of the invoke key Secret the activators made in system.
func invokeKeyEnv(t *testing.T, e *testenv.Env, system, ns string) []string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(e.Config)
	secret, err := cs.CoreV1().Secrets(system).Get(context.Background(), invokekey.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the activators did not make the invoke key Secret: %v", err)
	}
	pub := ed25519.NewKeyFromSeed(secret.Data[invokekey.SeedKey]).Public().(ed25519.PublicKey)
	return []string{contract.EnvInvokeKey + "=" + invoketoken.EncodePublicKey(pub), contract.EnvFunctionNamespace + "=" + ns}
}

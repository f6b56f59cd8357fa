//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestPodsThatCannotRun: a Function that runs as root, in a namespace
// that enforces the restricted Pod Security Standard, gets no pod. Its
// status says so (Ready=False, PodsCannotRun, with the admission's
// message), and a caller of the activator is told so within seconds
// instead of waiting out the activation timeout (2 minutes): 503 on its
// HTTP route, and on the Invoke API Lambda's answer for a function in the
// Failed state, 409 ResourceConflictException, with the cause. The same
// holds for a Function at zero that a request makes the autoscaler scale
// up: the held request is answered once the pods are refused.
func TestPodsThatCannotRun(t *testing.T) {
	namespace := restrictedNamespace(t, "cannotrun")
	rooted := func(name string, minReplicas int32) *lambdapodv1alpha1.Function {
		fn := &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: lambdapodv1alpha1.FunctionSpec{
				Source:   lambdapodv1alpha1.Source{Image: builtImage(t)},
				Runtime:  lambdapodv1alpha1.RuntimeSpec{RunAsRoot: true},
				Scale:    lambdapodv1alpha1.ScaleSpec{MinReplicas: minReplicas, MaxReplicas: 1},
				AuthType: lambdapodv1alpha1.AuthNone,
			},
		}
		if err := k.Create(context.Background(), fn); err != nil {
			t.Fatalf("create fn/%s: %v", name, err)
		}
		return fn
	}

	t.Run("minReplicas 1", func(t *testing.T) {
		fn := rooted("rooted", 1)
		start := time.Now()
		ready := waitCannotRun(t, fn, time.Minute)
		t.Logf("fn/%s Ready=False %s after %s: %s", fn.Name, ready.Reason, time.Since(start).Round(time.Millisecond), ready.Message)

		a := get(t, "/"+namespace+"/"+fn.Name+"/x")
		t.Logf("GET: HTTP %d in %s: %s", a.status, a.elapsed.Round(time.Millisecond), a.body)
		var doc struct {
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(a.body), &doc); err != nil || a.status != 503 || a.elapsed > 5*time.Second ||
			!strings.Contains(doc.Message, "cannot run") || !strings.Contains(doc.Message, "PodSecurity") {
			dumpIn(t, namespace, fn.Name)
			t.Errorf("GET: %d in %s, %q: want 503 within seconds, naming the PodSecurity refusal", a.status, a.elapsed, a.body)
		}

		cl := lambda.New(lambda.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(activator),
			Credentials:  credentials.NewStaticCredentialsProvider("e2e", "e2e", ""),
		})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start = time.Now()
		_, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(namespace + "." + fn.Name), Payload: []byte(`{}`)})
		elapsed := time.Since(start)
		t.Logf("Invoke: in %s: %v", elapsed.Round(time.Millisecond), err)
		var conflict *lambdatypes.ResourceConflictException
		if !errors.As(err, &conflict) || elapsed > 5*time.Second ||
			!strings.Contains(aws.ToString(conflict.Message), "The function is currently in the following state: Failed") ||
			!strings.Contains(aws.ToString(conflict.Message), "PodSecurity") {
			t.Errorf("Invoke: %v in %s, want ResourceConflictException within seconds: Failed, naming the PodSecurity refusal", err, elapsed)
		}
	})

	t.Run("scaled up from zero by a request", func(t *testing.T) {
		fn := rooted("rooted-at-zero", 0)
		// At zero nothing is refused yet.
		if out, errOut, err := kubectl(t, "", "-n", namespace, "wait", "--for=condition=Ready", "fn/"+fn.Name, "--timeout=180s"); err != nil {
			dumpIn(t, namespace, fn.Name)
			t.Fatalf("kubectl wait fn/%s: %v\n%s%s", fn.Name, err, out, errOut)
		}
		a := get(t, "/"+namespace+"/"+fn.Name+"/x")
		t.Logf("GET: HTTP %d in %s: %s", a.status, a.elapsed.Round(time.Millisecond), a.body)
		if a.status != 503 || a.elapsed > 30*time.Second || !strings.Contains(a.body, "PodSecurity") {
			dumpIn(t, namespace, fn.Name)
			t.Errorf("GET: %d in %s, %q: want 503 naming the PodSecurity refusal once the pods are refused, not after the activation timeout", a.status, a.elapsed, a.body)
		}
		waitCannotRun(t, fn, time.Minute)
	})
}

// waitCannotRun waits for fn to say that its pods cannot run because
// admission refused them, and returns its Ready condition.
func waitCannotRun(t *testing.T, fn *lambdapodv1alpha1.Function, timeout time.Duration) *metav1.Condition {
	t.Helper()
	var ready *metav1.Condition
	got := &lambdapodv1alpha1.Function{}
	for end := time.Now().Add(timeout); ; {
		if err := k.Get(context.Background(), client.ObjectKeyFromObject(fn), got); err != nil {
			t.Fatal(err)
		}
		ready = meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		if ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == "PodsCannotRun" &&
			strings.Contains(ready.Message, "violates PodSecurity") &&
			meta.IsStatusConditionTrue(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled) {
			return ready
		}
		if time.Now().After(end) {
			dumpIn(t, fn.Namespace, fn.Name)
			t.Fatalf("fn/%s: Ready %+v after %s, want False PodsCannotRun naming the PodSecurity refusal, and Stalled", fn.Name, ready, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestPodsCannotRunIsAnsweredAtOnce: once a Function's status says that
// its pods cannot run (as the manager writes it when admission refuses
// them), the activator answers the requests it held for it, and those
// that come, at once with the cause, instead of after the activation
// timeout; once the status no longer says so, requests wait for a pod
// again. Through a real API server and the activator's informer.
func TestPodsCannotRunIsAnsweredAtOnce(t *testing.T) {
	e := testenv.Start(t)
	c := e.Client
	a := startActivator(t, e, server.Config{
		Handler:    handler.Options{ActivationTimeout: time.Minute},
		DrainDelay: 10 * time.Millisecond,
	})
	base := "http://" + a.Addr()
	ns := namespace(t, c, "cannotrun")
	makeFunction(t, c, ns, "rooted", fnOpts{replicas: 1, public: true})
	key := keyOf(ns, "rooted")
	const cause = `Deployment rooted cannot create pods (FailedCreate): pods "rooted-abc" is forbidden: violates PodSecurity "restricted:latest"`
	setReady := func(status metav1.ConditionStatus, reason, message string) {
		t.Helper()
		fn := &lambdapodv1alpha1.Function{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "rooted"}, fn); err != nil {
			t.Fatal(err)
		}
		meta.SetStatusCondition(&fn.Status.Conditions, metav1.Condition{Type: lambdapodv1alpha1.ConditionReady,
			Status: status, Reason: reason, Message: message, ObservedGeneration: fn.Generation})
		if err := c.Status().Update(context.Background(), fn); err != nil {
			t.Fatal(err)
		}
	}
	invokeURL := base + "/2015-03-31/functions/" + ns + ".rooted/invocations"

	// Held while the Function has no pod, as at a scale from zero.
	held := make(chan answer, 1)
	go func() { held <- post(invokeURL, `{}`) }()
	eventually(t, 10*time.Second, "the request held", func() bool {
		p := a.Pools().Lookup(key)
		if p == nil {
			return false
		}
		_, q, _ := p.Counts()
		return q == 1
	})

	start := time.Now()
	setReady(metav1.ConditionFalse, "PodsCannotRun", cause)
	var got answer
	select {
	case got = <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the held request was not answered within 5s of the status")
	}
	t.Logf("held request answered %s after the status was written", time.Since(start).Round(time.Millisecond))
	var doc struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(got.body), &doc); err != nil || got.code != 409 ||
		got.header.Get("X-Amzn-ErrorType") != "ResourceConflictException" ||
		!strings.Contains(doc.Message, "The function is currently in the following state: Failed") || !strings.Contains(doc.Message, cause) {
		t.Errorf("held request: %d %v %s, want 409 ResourceConflictException naming the cause", got.code, got.header, got.body)
	}

	start = time.Now()
	got = get(base + "/" + ns + "/rooted/x")
	doc.Message = ""
	_ = json.Unmarshal([]byte(got.body), &doc)
	if d := time.Since(start); got.code != 503 || !strings.Contains(doc.Message, cause) || d > time.Second {
		t.Errorf("new request: %d %q in %s, want 503 naming the cause at once", got.code, got.body, d)
	}

	// Fixed: requests wait for a pod again (these callers give up soon).
	setReady(metav1.ConditionTrue, "Ready", "serving")
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	eventually(t, 10*time.Second, "a request held again", func() bool {
		go func() {
			if resp, err := impatient.Post(invokeURL, "application/json", strings.NewReader(`{}`)); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond)
		_, q, _ := a.Pools().Get(key).Counts()
		return q > 0
	})
}

package functions

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/queue"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

func TestStore(t *testing.T) {
	s := NewStore()
	var changed []queue.Key
	s.OnChange = func(k queue.Key, _ handler.Function) { changed = append(changed, k) }
	f := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	s.Upsert(f)
	got, ok := s.Lookup("ns", "a")
	// Lambda's asynchronous defaults: two retries, six hours.
	lambdaAsync := eventqueue.Policy{MaxRetries: 2, MaxAge: 6 * time.Hour}
	want := handler.Function{Timeout: 30 * time.Second, Concurrency: 1, EventFormat: event.HTTPAPIv2, Async: lambdaAsync}
	if !ok || got != want {
		t.Fatalf("defaults: %+v %v", got, ok)
	}
	f.Spec.Runtime.Timeout = &metav1.Duration{Duration: 3 * time.Second}
	f.Spec.Runtime.Concurrency = 8
	f.Spec.HTTP.EventFormat = lambdapodv1alpha1.EventFormatALB
	f.Spec.Async = &lambdapodv1alpha1.AsyncSpec{MaximumRetryAttempts: ptr.To[int32](0), MaximumEventAge: &metav1.Duration{Duration: 90 * time.Second}}
	s.Upsert(f)
	got, _ = s.Lookup("ns", "a")
	if got != (handler.Function{Timeout: 3 * time.Second, Concurrency: 8, EventFormat: event.ALB, Async: eventqueue.Policy{MaxRetries: 0, MaxAge: 90 * time.Second}}) ||
		s.Concurrency(queue.Key{Namespace: "ns", Name: "a"}) != 8 {
		t.Fatalf("spec: %+v", got)
	}
	f.Spec.HTTP.MultiValueHeaders = ptr.To(true)
	f.Spec.Async.Destinations = &lambdapodv1alpha1.Destinations{
		OnSuccess: &lambdapodv1alpha1.Destination{URL: "https://hooks.example/ok"},
		OnFailure: &lambdapodv1alpha1.Destination{Function: "dlq"}}
	s.Upsert(f)
	got, _ = s.Lookup("ns", "a")
	if got.EventFormat != event.ALBMultiValue || *got.Async.OnSuccess != (eventqueue.Destination{URL: "https://hooks.example/ok"}) ||
		*got.Async.OnFailure != (eventqueue.Destination{Function: "dlq"}) {
		t.Fatalf("multi-value ALB and destinations: %+v (on success %v, on failure %v)", got, got.Async.OnSuccess, got.Async.OnFailure)
	}
	if len(changed) != 3 {
		t.Fatalf("OnChange called %d times", len(changed))
	}
	s.Delete("ns", "a")
	if _, ok := s.Lookup("ns", "a"); ok {
		t.Fatal("deleted function still found")
	}
}

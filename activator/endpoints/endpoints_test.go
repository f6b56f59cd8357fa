package endpoints

import (
	"reflect"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lambdapod/lambdapod/activator/queue"
)

type sink struct{ got map[queue.Key][][]string }

func (s *sink) SetEndpoints(k queue.Key, addrs []string) {
	s.got[k] = append(s.got[k], addrs)
}

func ep(ip string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
}

func slice(name, svc string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}, {Name: ptr.To("http"), Port: ptr.To(port)}},
		Endpoints:  eps,
	}
}

func TestReadyAddrsFollowConditions(t *testing.T) {
	yes, no := ptr.To(true), ptr.To(false)
	s := slice("a", "fn", 8080,
		ep("10.0.0.1", yes, yes, no),  // ready
		ep("10.0.0.2", nil, nil, nil), // unknown conditions count as ready
		ep("10.0.0.3", no, yes, yes),  // terminating: out of rotation
		ep("10.0.0.4", no, no, no),    // not ready
		ep("10.0.0.5", yes, no, no),   // not serving
		ep("fd00::6", yes, yes, no),
	)
	got := ReadyAddrs(s, 1)
	want := []string{"10.0.0.1:8080", "10.0.0.2:8080", "[fd00::6]:8080"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestTrackerMergesSlicesPerFunction(t *testing.T) {
	yes := ptr.To(true)
	sk := &sink{got: map[queue.Key][][]string{}}
	tr := NewTracker(sk, 8080)
	k := queue.Key{Namespace: "ns", Name: "fn"}
	tr.Upsert(slice("fn-1", "fn", 8080, ep("10.0.0.2", yes, yes, nil)))
	tr.Upsert(slice("fn-2", "fn", 8080, ep("10.0.0.1", yes, yes, nil)))
	tr.Upsert(slice("fn-2", "fn", 8080, ep("10.0.0.1", yes, yes, nil))) // no change: no push
	tr.Upsert(slice("other", "", 8080, ep("10.0.0.9", yes, yes, nil)))  // no service label: ignored
	tr.Delete(slice("fn-1", "fn", 8080))
	tr.Delete(slice("fn-2", "fn", 8080))
	want := [][]string{{"10.0.0.2:8080"}, {"10.0.0.1:8080", "10.0.0.2:8080"}, {"10.0.0.1:8080"}, nil}
	if !reflect.DeepEqual(sk.got[k], want) {
		t.Fatalf("pushed %q, want %q", sk.got[k], want)
	}
	if len(sk.got) != 1 {
		t.Fatalf("pushes for other functions: %v", sk.got)
	}
}

package handler

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lambdapod/lambdapod/activator/endpoints"
	"github.com/lambdapod/lambdapod/activator/queue"
)

// A request held at zero goes to a pod as soon as its sidecar's /readyz
// answers 200, while the EndpointSlice still says not ready.
func TestHeldRequestForwardedOnceReadyzAnswers200BeforeTheSlice(t *testing.T) {
	var readyAt, forwardedAt atomic.Int64 // unix nanoseconds; 0: not yet
	sc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if readyAt.Load() == 0 {
				http.Error(w, "bootstrap not ready", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		forwardedAt.CompareAndSwap(0, time.Now().UnixNano())
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	defer sc.Close()
	host, p, _ := net.SplitHostPort(sc.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	slice := func(ready, serving, terminating bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "hello-x1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "hello"}},
			Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(port))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}},
		}
	}

	e := newEnv(t, Options{ActivationTimeout: 10 * time.Second}, fn1, 10)
	tr := endpoints.NewTracker(e.pools, 8080)
	tr.Probe = &endpoints.Probe{}
	defer tr.Stop()
	tr.Upsert(slice(false, false, false)) // the pod exists, not ready yet

	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- e.do("POST", "/2015-03-31/functions/hello/invocations", `{"x":1}`) }()
	select {
	case w := <-done:
		t.Fatalf("answered before /readyz said ready: %d %s", w.Code, w.Body)
	case <-time.After(300 * time.Millisecond):
	}
	readyAt.Store(time.Now().UnixNano())
	select {
	case w := <-done:
		if w.Code != 200 || w.Body.String() != `{"x":1}` {
			t.Fatalf("got %d %q", w.Code, w.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held request not forwarded 5s after /readyz turned 200")
	}
	lag := time.Duration(forwardedAt.Load() - readyAt.Load())
	t.Logf("forwarded %v after /readyz turned 200 (slice still not ready)", lag.Round(time.Millisecond))
	if lag > 100*time.Millisecond {
		t.Errorf("forwarded only %v after /readyz turned 200", lag)
	}
	if e.colds.Load() != 1 {
		t.Errorf("cold pokes %d, want 1", e.colds.Load())
	}
	k := queue.Key{Namespace: "default", Name: "hello"}
	tr.Upsert(slice(true, true, false)) // the slice catches up: no change
	if n := e.pools.Get(k).Ready(); n != 1 {
		t.Fatalf("ready pods %d after the slice said ready", n)
	}
	tr.Upsert(slice(false, true, true)) // terminating: leaves the rotation
	if n := e.pools.Get(k).Ready(); n != 0 {
		t.Fatalf("ready pods %d after the pod turned terminating", n)
	}
}

package autoscaler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/stats"
)

func TestStatsHandlerAndReporter(t *testing.T) {
	a := New(nil, Options{})
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	// Not started: not the leader.
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("non-leader answered %d, want 503", resp.StatusCode)
	}
	a.started.Store(true)
	// Known from a listing, so that no client is needed.
	a.setKnown([]lambdapodv1alpha1.Function{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn"}}})
	r := stats.NewReporter(srv.URL+stats.Path, "act-1", func() []stats.Stat {
		return []stats.Stat{{Namespace: "ns", Name: "fn", Concurrency: 1.5, InFlight: 1, Queued: 2, Requests: 3}}
	})
	if err := r.Send(context.Background(), stats.Report{Activator: "act-1", Stats: r.Collect()}); err != nil {
		t.Fatal(err)
	}
	// A report with queued requests asks for an immediate decision.
	select {
	case k := <-a.poke:
		if k != (types.NamespacedName{Namespace: "ns", Name: "fn"}) {
			t.Fatalf("poked %v", k)
		}
	case <-time.After(time.Second):
		t.Fatal("no immediate evaluation for queued requests")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sampleLocked(a.now())
	st := a.fns[types.NamespacedName{Namespace: "ns", Name: "fn"}]
	if st == nil || st.queued != 2 || st.history.Avg(a.now(), time.Second) != 3 {
		t.Fatalf("state %+v", st)
	}
}

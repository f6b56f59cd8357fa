package integration

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// A pod whose sidecar is gone (killed, or its network torn down) while its
// EndpointSlice still says ready refuses connections at once, so it always
// has the fewest requests in flight. Requests that land on it are sent to
// the pod that answers, even when every caller comes at once: none gets
// the 502 "could not connect to any pod".
func TestAPodGoneBeforeItsSliceSaysSo(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ns := namespace(t, e.Client, "gone")
	a := startActivator(t, e, server.Config{
		Handler: handler.Options{ActivationTimeout: 10 * time.Second, TimeoutGrace: time.Second},
	})
	base := "http://" + a.Addr() + "/2015-03-31/functions/" + ns + ".fn/invocations"
	makeFunction(t, e.Client, ns, "fn", fnOpts{conc: 4, public: true})
	gone := startPod(t, "fn", 4, 5*time.Second, "pod-gone")
	up := startPod(t, "fn", 4, 5*time.Second, "pod-up")
	publish(t, e.Client, ns, "fn", ready(gone.IP), ready(up.IP))
	eventually(t, 10*time.Second, "the activator routes to both pods", func() bool {
		return a.Pools().Get(keyOf(ns, "fn")).Ready() == 2
	})

	// The sidecar dies; its slice is not updated.
	_ = gone.cmd.Process.Kill()
	<-gone.exited

	for round := range 5 {
		var wg sync.WaitGroup
		answers := make([]answer, 8)
		for i := range answers {
			wg.Go(func() { answers[i] = post(base, `{"sleepMs":200}`) })
		}
		wg.Wait()
		for i, got := range answers {
			if got.err != nil || got.code != 200 || !strings.Contains(got.body, `"pod":"pod-up"`) {
				t.Errorf("round %d, request %d: %d %q %v, want 200 from pod-up", round, i, got.code, got.body, got.err)
			}
		}
	}
}

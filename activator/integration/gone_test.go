package integration

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// A pod whose sidecar is gone (killed, or its network torn down) while its
// EndpointSlice still says ready refuses connections at once, so it always
// has the fewest requests in flight. Requests that land on it are sent to
// the pod that answers, even when every caller comes at once: none gets
// the 502 "could not connect to any pod".
func TestAPodGoneBeforeItsSliceSaysSo(t *testing.T) {
	base, _, gone := leavingAndUp(t, "gone")

	// The sidecar dies; its slice is not updated.
	_ = gone.cmd.Process.Kill()
	<-gone.exited

	for round := range 5 {
		allFromUp(t, fmt.Sprintf("round %d", round), base, `{"sleepMs":200}`)
	}
}

// A pod told to stop (SIGTERM) before its EndpointSlice says so drains: it
// answers new invocations 503 marked not-run, and the activator sends
// them to the pod that still serves, taking the stopping one out of its
// picks. Callers see only answers from the serving pod.
func TestAPodStoppingBeforeItsSliceSaysSo(t *testing.T) {
	base, pool, stopping := leavingAndUp(t, "stopping")

	// A long invocation keeps the stopping pod draining (not gone) while
	// the others arrive.
	longDone := make(chan answer, 1)
	go func() {
		longDone <- post("http://"+stopping.IP+":8080/2015-03-31/functions/fn/invocations", `{"sleepMs":3000}`)
	}()
	eventually(t, 5*time.Second, "the long invocation runs", func() bool { return running(stopping.IP) })
	_ = stopping.cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, 5*time.Second, "the sidecar drains", func() bool { return get("http://"+stopping.IP+":8080/readyz").code == 503 })

	allFromUp(t, "after SIGTERM", base, `{"sleepMs":100}`)
	if pool.Ready() != 1 {
		t.Errorf("%d ready pods after the stopping one said so, want 1", pool.Ready())
	}
	if got := <-longDone; got.code != 200 {
		t.Errorf("the invocation running when the pod was told to stop: %d %q, want it to finish", got.code, got.body)
	}
}

// running reports whether the sidecar at ip has an invocation in flight.
func running(ip string) bool {
	m := get("http://" + ip + ":8080/metrics")
	return strings.Contains(m.body, "\nlambdapod_sidecar_invocations_in_flight 1\n")
}

// leavingAndUp starts an activator in front of function ns/fn of
// concurrency 4 with two ready pods: "pod-leaving", which the test then
// makes leave before its slice says so, and "pod-up". It returns the
// function's Invoke URL, its pool, and the leaving pod.
func leavingAndUp(t *testing.T, ns string) (string, *queue.Pool, *pod) {
	t.Helper()
	needRoot(t)
	e := testenv.Start(t)
	namespace(t, e.Client, ns)
	a := startActivator(t, e, server.Config{
		Handler: handler.Options{ActivationTimeout: 10 * time.Second, TimeoutGrace: time.Second},
	})
	makeFunction(t, e.Client, ns, "fn", fnOpts{conc: 4, public: true})
	leaving := startPod(t, "fn", 4, 5*time.Second, "pod-leaving")
	up := startPod(t, "fn", 4, 5*time.Second, "pod-up")
	publish(t, e.Client, ns, "fn", ready(leaving.IP), ready(up.IP))
	pool := a.Pools().Get(keyOf(ns, "fn"))
	eventually(t, 10*time.Second, "the activator routes to both pods", func() bool { return pool.Ready() == 2 })
	return "http://" + a.Addr() + "/2015-03-31/functions/" + ns + ".fn/invocations", pool, leaving
}

// allFromUp sends 8 invocations at once to url and wants each answered 200
// by pod-up.
func allFromUp(t *testing.T, what, url, payload string) {
	t.Helper()
	var wg sync.WaitGroup
	answers := make([]answer, 8)
	for i := range answers {
		wg.Go(func() { answers[i] = post(url, payload) })
	}
	wg.Wait()
	for i, got := range answers {
		if got.err != nil || got.code != 200 || !strings.Contains(got.body, `"pod":"pod-up"`) {
			t.Errorf("%s, request %d: %d %q %v, want 200 from pod-up", what, i, got.code, got.body, got.err)
		}
	}
}

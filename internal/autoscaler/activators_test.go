package autoscaler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestReportsOfSeveralActivators checks two promises of docs/activator.md
// ("The autoscaler") where a user sees them, in the Deployment's replicas:
// the decision is made from the sum over activators, and the report of an
// activator that went away stops counting 5 s after it came. The reports
// go through the real handler, sent by the activator's own stats.Reporter,
// to an autoscaler that writes Deployments of a real API server.
func TestReportsOfSeveralActivators(t *testing.T) {
	e := testenv.Start(t)
	c := cachedClient(t, e)

	t.Run("two activators each with 3 in flight scale to 6", func(t *testing.T) {
		ns := makeNamespace(t, c, "summed")
		makeFunction(t, e.Client, ns, "fn", 10) // target 1
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond})
		for _, id := range []string{"act-a", "act-b"} {
			keepReporting(t, url, id, stats.Stat{Namespace: ns, Name: "fn", Concurrency: 3, InFlight: 3, Requests: 3})
		}
		// The stable window may first have seen one activator's 3 alone:
		// its mean reaches 6 within a few seconds.
		got := waitReplicas(t, e.Client, ns, "fn", 6, 15*time.Second)
		if got != 6 {
			t.Fatalf("replicas %d, want ⌈(3+3)/1⌉ = 6 from two activators with 3 in flight each", got)
		}
		// Counted once each, not more: it stays at 6.
		peak := got
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			peak = max(peak, replicas(t, e.Client, ns, "fn"))
		}
		t.Logf("two activators with 3 in flight each, target 1: replicas %d, at most %d over the next 2 s", got, peak)
		if peak != 6 {
			t.Errorf("replicas rose to %d, want 6", peak)
		}
	})

	t.Run("the report of an activator gone for 5 s no longer counts", func(t *testing.T) {
		ns := makeNamespace(t, c, "expiry")
		makeFunction(t, e.Client, ns, "fn", 10) // target 1
		// Short windows, so that the replicas follow the load within a few
		// seconds of the gone activator's report being dropped; the report
		// TTL is the default the docs promise.
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond,
			Params: Params{StableWindow: 2 * time.Second, PanicWindow: time.Second, PanicThreshold: 2}})
		keepReporting(t, url, "act-alive", stats.Stat{Namespace: ns, Name: "fn", Concurrency: 2, InFlight: 2, Requests: 2})

		// The other activator reports 3 more in flight until they show, then
		// goes away without a word, as a crashed activator does.
		gone := stats.NewReporter(url, "act-gone", nil)
		var lastSent time.Time
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			sent := time.Now()
			if err := gone.Send(context.Background(), stats.Report{Activator: "act-gone", Stats: []stats.Stat{
				{Namespace: ns, Name: "fn", Concurrency: 3, InFlight: 3, Requests: 3}}}); err != nil {
				t.Fatal(err)
			}
			if replicas(t, e.Client, ns, "fn") == 5 {
				lastSent = sent
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replicas %d, want 5 for 2 + 3 in flight", replicas(t, e.Client, ns, "fn"))
			}
		}

		// The last report was taken after lastSent: until lastSent + 5 s it
		// counts whatever the load on this machine, so any fewer than 5
		// replicas seen before then were dropped early.
		var got int32
		var at time.Duration
		for deadline := lastSent.Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got = replicas(t, e.Client, ns, "fn")
			at = time.Since(lastSent)
			if got < 5 && at < 5*time.Second {
				t.Fatalf("replicas %d %v after the gone activator's last report: it stopped counting before 5 s",
					got, at.Round(time.Millisecond))
			}
			if got == 2 || time.Now().After(deadline) {
				break
			}
		}
		t.Logf("an activator with 3 in flight went away: replicas 5 -> %d %v after its last report (2 in flight remain)",
			got, at.Round(time.Millisecond))
		if got != 2 {
			t.Fatalf("replicas %d %v after the gone activator's last report, want 2: its 3 in flight still count",
				got, at.Round(time.Millisecond))
		}
	})
}

// keepReporting runs an activator's reporter, sending st five times a
// second, until the test ends.
func keepReporting(t *testing.T, url, activator string, st stats.Stat) {
	t.Helper()
	r := stats.NewReporter(url, activator, func() []stats.Stat { return []stats.Stat{st} })
	r.Interval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var failure error
	r.OnResult = func(err error) {
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			failure = err
			mu.Unlock()
		}
	}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	r.Poke()
	t.Cleanup(func() {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if failure != nil {
			t.Errorf("%s's reports: %v", activator, failure)
		}
	})
}

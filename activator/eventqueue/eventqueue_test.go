package eventqueue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/internal/natstest"
)

func natsServer(t *testing.T, dir string) *server.Server { return natstest.Start(t, dir, 0) }

func open(t *testing.T, url string, change func(*eventqueue.Config)) (*eventqueue.Queue, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := eventqueue.Config{URL: url, AckWait: 3 * time.Second, RetryDelay: 100 * time.Millisecond,
		NotRunDelay: 50 * time.Millisecond, PublishTimeout: 2 * time.Second, Registerer: reg}
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := eventqueue.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q, reg
}

// run runs q until the test ends.
func run(t *testing.T, q *eventqueue.Queue, policy func(ns, name string) (eventqueue.Policy, bool), r eventqueue.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx, policy, r) }()
	t.Cleanup(func() { cancel(); <-done })
}

func always(p eventqueue.Policy) func(string, string) (eventqueue.Policy, bool) {
	return func(string, string) (eventqueue.Policy, bool) { return p, true }
}

type call struct {
	ev *eventqueue.Event
	at time.Time
}

// recorder records the runner's calls and answers with results in turn
// (the last one from then on).
type recorder struct {
	mu      sync.Mutex
	calls   []call
	results []eventqueue.Result
	notify  chan struct{}
}

func newRecorder(results ...eventqueue.Result) *recorder {
	return &recorder{results: results, notify: make(chan struct{}, 1000)}
}

func (r *recorder) run(_ context.Context, ev *eventqueue.Event) eventqueue.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{ev: ev, at: time.Now()})
	r.notify <- struct{}{}
	i := min(len(r.calls)-1, len(r.results)-1)
	return r.results[i]
}

func (r *recorder) waitCalls(t *testing.T, n int, within time.Duration) []call {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		got := len(r.calls)
		calls := append([]call(nil), r.calls...)
		r.mu.Unlock()
		if got >= n {
			return calls
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("%d runs after %s, want %d", got, within, n)
		}
	}
}

func newEvent(id string) *eventqueue.Event {
	return &eventqueue.Event{RequestID: id, Namespace: "team-a", Name: "hello", Accepted: time.Now(),
		ClientContext: `eyJjdXN0b20iOnsiYSI6ImIifX0=`, TraceID: "Root=1-5e1b4151-5ac6c58f5b4d3a0d1b2c3d4e", Payload: []byte(`{"n":1}`)}
}

func depth(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metric(t, reg, "lambdapod_activator_event_queue_depth", "")
}

func waitEmpty(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for depth(t, reg) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the queue still holds %v events", depth(t, reg))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An accepted event reaches the runner whole, once, and leaves the queue
// when it succeeded.
func TestPublishedEventRunsOnce(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), nil)
	ev := newEvent("req-1")
	ev.Payload = bytes.Repeat([]byte("x"), 1<<20) // Lambda's asynchronous limit
	if err := q.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// The same request published again (a client retry of the publish)
	// is stored once.
	if err := q.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, always(eventqueue.DefaultPolicy), rec.run)
	got := rec.waitCalls(t, 1, 5*time.Second)[0].ev
	if got.RequestID != "req-1" || got.Namespace != "team-a" || got.Name != "hello" || got.Attempt != 1 ||
		!got.Accepted.Equal(ev.Accepted) || got.ClientContext != ev.ClientContext || got.TraceID != ev.TraceID || !bytes.Equal(got.Payload, ev.Payload) {
		t.Errorf("the runner got %+v (payload %d bytes), want %+v", got, len(got.Payload), ev)
	}
	waitEmpty(t, reg)
	time.Sleep(300 * time.Millisecond)
	if n := len(rec.waitCalls(t, 1, time.Second)); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	if v := metric(t, reg, "lambdapod_activator_events_ended_total", "succeeded"); v != 1 {
		t.Errorf("events_ended_total{outcome=succeeded} = %v, want 1", v)
	}
}

// A function that always fails runs 1 + MaxRetries times, the waits
// between doubling, then the event is gone; with no retries, once.
func TestFailedEventRetriedAsLambdaDoes(t *testing.T) {
	for _, retries := range []int{2, 0} {
		t.Run(fmt.Sprintf("maxRetries=%d", retries), func(t *testing.T) {
			s := natsServer(t, "")
			q, reg := open(t, s.ClientURL(), nil)
			rec := newRecorder(eventqueue.Failed)
			run(t, q, always(eventqueue.Policy{MaxRetries: retries, MaxAge: time.Hour}), rec.run)
			if err := q.Publish(context.Background(), newEvent("req-fail")); err != nil {
				t.Fatal(err)
			}
			calls := rec.waitCalls(t, retries+1, 10*time.Second)
			waitEmpty(t, reg)
			time.Sleep(500 * time.Millisecond) // nothing more comes
			calls = rec.waitCalls(t, retries+1, time.Second)
			if len(calls) != retries+1 {
				t.Fatalf("%d runs, want %d", len(calls), retries+1)
			}
			for i, c := range calls {
				if c.ev.Attempt != i+1 || c.ev.RequestID != "req-fail" {
					t.Errorf("run %d: attempt %d request %s, want attempt %d of req-fail", i, c.ev.Attempt, c.ev.RequestID, i+1)
				}
				if i > 0 {
					want := 100 * time.Millisecond << (i - 1)
					if gap := c.at.Sub(calls[i-1].at); gap < want {
						t.Errorf("retry %d ran %s after the previous run, want at least %s", i, gap, want)
					}
				}
			}
			if v := metric(t, reg, "lambdapod_activator_events_ended_total", "retries_exhausted"); v != 1 {
				t.Errorf("events_ended_total{outcome=retries_exhausted} = %v, want 1", v)
			}
			if v := metric(t, reg, "lambdapod_activator_events_retried_total", ""); v != float64(retries) {
				t.Errorf("events_retried_total = %v, want %d", v, retries)
			}
		})
	}
}

// An invocation that could not start is not an attempt: it comes back
// with the same attempt number until it runs.
func TestNotRunIsNoAttempt(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), nil)
	rec := newRecorder(eventqueue.NotRun, eventqueue.NotRun, eventqueue.Failed, eventqueue.Succeeded)
	run(t, q, always(eventqueue.DefaultPolicy), rec.run)
	if err := q.Publish(context.Background(), newEvent("req-busy")); err != nil {
		t.Fatal(err)
	}
	calls := rec.waitCalls(t, 4, 10*time.Second)
	waitEmpty(t, reg)
	var attempts []int
	for _, c := range calls {
		attempts = append(attempts, c.ev.Attempt)
	}
	if fmt.Sprint(attempts) != "[1 1 1 2]" {
		t.Errorf("attempts %v, want [1 1 1 2]: two not-run deliveries, the first real run, its retry", attempts)
	}
}

// An event older than the function's maximum age is not run; an event of
// a function that does not exist is dropped.
func TestExpiredAndGoneEventsAreNotRun(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), nil)
	old := newEvent("req-old")
	old.Accepted = time.Now().Add(-2 * time.Minute)
	gone := newEvent("req-gone")
	gone.Name = "deleted"
	fresh := newEvent("req-fresh")
	for _, ev := range []*eventqueue.Event{old, gone, fresh} {
		if err := q.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, func(_, name string) (eventqueue.Policy, bool) {
		return eventqueue.Policy{MaxRetries: 2, MaxAge: time.Minute}, name != "deleted"
	}, rec.run)
	waitEmpty(t, reg)
	time.Sleep(200 * time.Millisecond)
	calls := rec.waitCalls(t, 1, time.Second)
	if len(calls) != 1 || calls[0].ev.RequestID != "req-fresh" {
		t.Errorf("runs %v, want only req-fresh", calls)
	}
	for outcome, want := range map[string]float64{"expired": 1, "gone": 1, "succeeded": 1} {
		if v := metric(t, reg, "lambdapod_activator_events_ended_total", outcome); v != want {
			t.Errorf("events_ended_total{outcome=%s} = %v, want %v", outcome, v, want)
		}
	}
}

// An activator that dies while running an event (its connection gone, no
// ack) leaves it to another, which runs it after the ack wait.
func TestEventOfADeadActivatorRunsElsewhere(t *testing.T) {
	s := natsServer(t, "")
	first, _ := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.AckWait = time.Second })
	started := make(chan string, 10)
	stuck := make(chan struct{})
	run(t, first, always(eventqueue.DefaultPolicy), func(_ context.Context, ev *eventqueue.Event) eventqueue.Result {
		started <- ev.RequestID
		<-stuck // killed mid-invocation: it never ends
		return eventqueue.Succeeded
	})
	t.Cleanup(func() { close(stuck) }) // before run's cleanup waits for it
	if err := first.Publish(context.Background(), newEvent("req-orphan")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the first activator never ran the event")
	}
	first.Close()

	second, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.AckWait = time.Second })
	rec := newRecorder(eventqueue.Succeeded)
	run(t, second, always(eventqueue.DefaultPolicy), rec.run)
	calls := rec.waitCalls(t, 1, 10*time.Second)
	if calls[0].ev.RequestID != "req-orphan" || calls[0].ev.Attempt != 1 {
		t.Errorf("the second activator ran %s attempt %d, want req-orphan attempt 1", calls[0].ev.RequestID, calls[0].ev.Attempt)
	}
	waitEmpty(t, reg)
}

// Accepted events survive the NATS server's restart (file storage), and
// while no server answers, Publish fails: the caller gets no 202.
func TestServerRestartKeepsAcceptedEvents(t *testing.T) {
	dir := t.TempDir()
	s := natsServer(t, dir)
	url := s.ClientURL()
	q, _ := open(t, url, func(c *eventqueue.Config) { c.PublishTimeout = 500 * time.Millisecond })
	for i := range 20 {
		if err := q.Publish(context.Background(), newEvent(fmt.Sprintf("req-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	port := s.Addr().(*net.TCPAddr).Port
	s.Shutdown()
	s.WaitForShutdown()
	start := time.Now()
	err := q.Publish(context.Background(), newEvent("req-down"))
	if !errors.Is(err, eventqueue.ErrUnavailable) {
		t.Errorf("Publish with no server: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish with no server took %s, want about the publish timeout", d)
	}

	// The same address, the same store.
	natstest.Start(t, dir, port)

	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, always(eventqueue.DefaultPolicy), rec.run)
	calls := rec.waitCalls(t, 20, 20*time.Second)
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.ev.RequestID] = true
	}
	for i := range 20 {
		if !seen[fmt.Sprintf("req-%d", i)] {
			t.Errorf("req-%d, accepted before the restart, never ran", i)
		}
	}
	if seen["req-down"] {
		t.Error("req-down, refused while the server was down, ran")
	}
}

// A full queue refuses new events (ErrFull) and drops none it accepted.
func TestFullQueueRefusesAndKeeps(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.MaxBytes = 64 << 10 })
	var accepted []string
	var full error
	for i := range 200 {
		ev := newEvent(fmt.Sprintf("req-%d", i))
		ev.Payload = bytes.Repeat([]byte("y"), 1000)
		if err := q.Publish(context.Background(), ev); err != nil {
			full = err
			break
		}
		accepted = append(accepted, ev.RequestID)
	}
	if !errors.Is(full, eventqueue.ErrFull) {
		t.Fatalf("after %d events of 1 KB in a 64 KiB queue: %v, want ErrFull", len(accepted), full)
	}
	t.Logf("%d accepted, then %v", len(accepted), full)
	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, always(eventqueue.DefaultPolicy), rec.run)
	calls := rec.waitCalls(t, len(accepted), 10*time.Second)
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.ev.RequestID] = true
	}
	for _, id := range accepted {
		if !seen[id] {
			t.Errorf("%s was accepted and never ran", id)
		}
	}
	waitEmpty(t, reg)
}

// No more than Concurrency events run at once in one activator.
func TestConcurrencyBound(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.Concurrency = 3 })
	var now, peak atomic.Int32
	var ran atomic.Int32
	run(t, q, always(eventqueue.DefaultPolicy), func(context.Context, *eventqueue.Event) eventqueue.Result {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		now.Add(-1)
		ran.Add(1)
		return eventqueue.Succeeded
	})
	for i := range 20 {
		if err := q.Publish(context.Background(), newEvent(fmt.Sprintf("req-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for ran.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if ran.Load() != 20 {
		t.Fatalf("%d of 20 ran", ran.Load())
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("at most %d ran at once, want 3 (the bound) and more than 1", p)
	}
	waitEmpty(t, reg)
}

// metric is the value of a counter or gauge series of reg (label: the
// value of its one label, "" for none); 0 if it has none yet.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == label) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

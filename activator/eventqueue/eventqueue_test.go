package eventqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

func (r *recorder) run(_ context.Context, ev *eventqueue.Event, _ bool) eventqueue.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{ev: ev, at: time.Now()})
	r.notify <- struct{}{}
	i := min(len(r.calls)-1, len(r.results)-1)
	return eventqueue.Outcome{Result: r.results[i]}
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
	run(t, first, always(eventqueue.DefaultPolicy), func(_ context.Context, ev *eventqueue.Event, _ bool) eventqueue.Outcome {
		started <- ev.RequestID
		<-stuck // killed mid-invocation: it never ends
		return eventqueue.Outcome{Result: eventqueue.Succeeded}
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
	q, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.Concurrency, c.PerFunction = 3, 3 })
	var now, peak atomic.Int32
	var ran atomic.Int32
	run(t, q, always(eventqueue.DefaultPolicy), func(context.Context, *eventqueue.Event, bool) eventqueue.Outcome {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		now.Add(-1)
		ran.Add(1)
		return eventqueue.Outcome{Result: eventqueue.Succeeded}
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
	if label == "" {
		return metricOf(t, reg, name)
	}
	return metricOf(t, reg, name, label)
}

// metric2 is the value of a series with two labels (in their sorted
// order).
func metric2(t *testing.T, reg *prometheus.Registry, name, l1, l2 string) float64 {
	t.Helper()
	return metricOf(t, reg, name, l1, l2)
}

// metricOf is the value of the first series of name whose first labels
// have these values (any series when none are given).
func metricOf(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			ls := m.GetLabel()
			if len(ls) < len(labels) {
				continue
			}
			for i, v := range labels {
				if ls[i].GetValue() != v {
					continue series
				}
			}
			{
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Destinations get Lambda's invocation record: on success (here an HTTP
// URL), and on failure for good (here a function, queued as its Event):
// retries exhausted after three runs, or too old to run at all.
func TestDestinationsGetTheInvocationRecord(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.Region = "eu-west-1" })

	posted := make(chan []byte, 10)
	url := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("destination got %s with Content-Type %q, want a POST of application/json", r.Method, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		posted <- b
	}))
	defer url.Close()

	var mu sync.Mutex
	var dlq []*eventqueue.Event
	runs := map[string]int{}
	run(t, q, func(_, name string) (eventqueue.Policy, bool) {
		if name == "dlq" {
			return eventqueue.DefaultPolicy, true
		}
		return eventqueue.Policy{MaxRetries: 2, MaxAge: time.Minute,
			OnSuccess: &eventqueue.Destination{URL: url.URL}, OnFailure: &eventqueue.Destination{Function: "dlq"}}, true
	}, func(_ context.Context, ev *eventqueue.Event, keep bool) eventqueue.Outcome {
		mu.Lock()
		defer mu.Unlock()
		if ev.Name == "dlq" {
			dlq = append(dlq, ev)
			return eventqueue.Outcome{Result: eventqueue.Succeeded, StatusCode: 200}
		}
		if !keep {
			t.Errorf("%s ran without keep, though its function has destinations", ev.RequestID)
		}
		runs[ev.RequestID]++
		if ev.RequestID == "req-ok" {
			return eventqueue.Outcome{Result: eventqueue.Succeeded, StatusCode: 200, Response: []byte(`{"r":1}`)}
		}
		return eventqueue.Outcome{Result: eventqueue.Failed, StatusCode: 200, FunctionError: "Unhandled",
			Response: []byte(`{"errorMessage":"boom","errorType":"Boom"}`)}
	})

	ok, bad, old := newEvent("req-ok"), newEvent("req-bad"), newEvent("req-old")
	bad.Payload = []byte("not json")
	old.Accepted = time.Now().Add(-2 * time.Minute)
	for _, ev := range []*eventqueue.Event{ok, bad, old} {
		if err := q.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}

	var success map[string]any
	select {
	case b := <-posted:
		if err := json.Unmarshal(b, &success); err != nil {
			t.Fatalf("the URL got %s: %v", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no record reached the on-success URL")
	}
	want := map[string]any{
		"version": "1.0",
		"requestContext": map[string]any{"requestId": "req-ok", "functionArn": "arn:aws:lambda:eu-west-1:000000000000:function:team-a.hello:$LATEST",
			"condition": "Success", "approximateInvokeCount": 1.0},
		"requestPayload":  map[string]any{"n": 1.0},
		"responseContext": map[string]any{"statusCode": 200.0, "executedVersion": "$LATEST"},
		"responsePayload": map[string]any{"r": 1.0},
	}
	if ts, _ := success["timestamp"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2019-11-14T18:16:05.568Z") {
		t.Errorf("timestamp %q, want Lambda's 2019-11-14T18:16:05.568Z form", success["timestamp"])
	}
	delete(success, "timestamp")
	if !reflect.DeepEqual(success, want) {
		t.Errorf("on-success record\n%v\nwant\n%v", success, want)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(dlq)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records reached the on-failure function, want 2", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitEmpty(t, reg)
	mu.Lock()
	defer mu.Unlock()
	if runs["req-bad"] != 3 || runs["req-old"] != 0 {
		t.Errorf("runs %v: want req-bad 3 times, req-old never", runs)
	}
	records := map[string]map[string]any{}
	for _, ev := range dlq {
		var r map[string]any
		if err := json.Unmarshal(ev.Payload, &r); err != nil {
			t.Fatalf("the on-failure function got %s: %v", ev.Payload, err)
		}
		if ev.Namespace != "team-a" || ev.Attempt != 1 {
			t.Errorf("the record went to %s/%s attempt %d, want team-a/dlq attempt 1", ev.Namespace, ev.Name, ev.Attempt)
		}
		delete(r, "timestamp")
		records[r["requestContext"].(map[string]any)["requestId"].(string)] = r
	}
	wantBad := map[string]any{
		"version": "1.0",
		"requestContext": map[string]any{"requestId": "req-bad", "functionArn": "arn:aws:lambda:eu-west-1:000000000000:function:team-a.hello:$LATEST",
			"condition": "RetriesExhausted", "approximateInvokeCount": 3.0},
		"requestPayload":  "not json",
		"responseContext": map[string]any{"statusCode": 200.0, "executedVersion": "$LATEST", "functionError": "Unhandled"},
		"responsePayload": map[string]any{"errorMessage": "boom", "errorType": "Boom"},
	}
	if !reflect.DeepEqual(records["req-bad"], wantBad) {
		t.Errorf("RetriesExhausted record\n%v\nwant\n%v", records["req-bad"], wantBad)
	}
	wantOld := map[string]any{
		"version": "1.0",
		"requestContext": map[string]any{"requestId": "req-old", "functionArn": "arn:aws:lambda:eu-west-1:000000000000:function:team-a.hello:$LATEST",
			"condition": "EventAgeExceeded", "approximateInvokeCount": 0.0},
		"requestPayload": map[string]any{"n": 1.0},
	}
	if !reflect.DeepEqual(records["req-old"], wantOld) {
		t.Errorf("EventAgeExceeded record\n%v\nwant\n%v", records["req-old"], wantOld)
	}
	for _, l := range [][2]string{{"url", "delivered"}, {"function", "delivered"}} {
		if v := metric2(t, reg, "lambdapod_activator_event_destination_deliveries_total", l[0], l[1]); v != map[string]float64{"url": 1, "function": 2}[l[0]] {
			t.Errorf("destination_deliveries_total{destination=%s,result=%s} = %v", l[0], l[1], v)
		}
	}
}

// A URL that keeps failing is tried three times; the event still ends
// (the record is counted as failed, as Lambda counts
// DestinationDeliveryFailures).
func TestFailingDestinationURLEndsTheEvent(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), nil)
	var tries atomic.Int32
	url := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer url.Close()
	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, always(eventqueue.Policy{MaxRetries: 2, MaxAge: time.Hour, OnSuccess: &eventqueue.Destination{URL: url.URL}}), rec.run)
	if err := q.Publish(context.Background(), newEvent("req-1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for metric2(t, reg, "lambdapod_activator_event_destination_deliveries_total", "url", "failed") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no failed delivery counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitEmpty(t, reg)
	if n := tries.Load(); n != 3 {
		t.Errorf("the URL was tried %d times, want 3", n)
	}
	if n := len(rec.waitCalls(t, 1, time.Second)); n != 1 {
		t.Errorf("the event ran %d times, want once: a failed delivery is no failed invocation", n)
	}
}

// A function whose events are held (at zero, its pods failing) takes no
// more than its share of the slots: the other functions' events run
// meanwhile.
func TestHeldFunctionLeavesSlotsToOthers(t *testing.T) {
	s := natsServer(t, "")
	q, _ := open(t, s.ClientURL(), func(c *eventqueue.Config) { c.Concurrency, c.PerFunction = 4, 2 })
	release := make(chan struct{})
	var mu sync.Mutex
	held, ran := 0, map[string]bool{}
	run(t, q, always(eventqueue.DefaultPolicy), func(_ context.Context, ev *eventqueue.Event, _ bool) eventqueue.Outcome {
		if ev.Name == "stuck" {
			mu.Lock()
			held++
			mu.Unlock()
			<-release
			return eventqueue.Outcome{Result: eventqueue.Succeeded}
		}
		mu.Lock()
		ran[ev.RequestID] = true
		mu.Unlock()
		return eventqueue.Outcome{Result: eventqueue.Succeeded}
	})
	defer close(release)
	for i := range 20 {
		ev := newEvent(fmt.Sprintf("stuck-%d", i))
		ev.Name = "stuck"
		if err := q.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := q.Publish(context.Background(), newEvent(fmt.Sprintf("ok-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n, h := len(ran), held
		mu.Unlock()
		if n == 5 {
			if h > 2 {
				t.Errorf("%d events of the held function ran at once, want at most its share, 2", h)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the 5 other events ran while the held function's %d waited: one function's events block the queue", n, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that lost the stream and the consumer (its store wiped) gets
// them back from the running activator: Events are accepted and run again
// without a restart.
func TestLostStreamIsMadeAgain(t *testing.T) {
	s := natsServer(t, "")
	q, _ := open(t, s.ClientURL(), nil)
	rec := newRecorder(eventqueue.Succeeded)
	run(t, q, always(eventqueue.DefaultPolicy), rec.run)

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(context.Background(), "LAMBDAPOD_EVENTS"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := q.Publish(context.Background(), newEvent("after-loss"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Events still refused 15 s after the stream was lost: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if calls := rec.waitCalls(t, 1, 10*time.Second); calls[0].ev.RequestID != "after-loss" {
		t.Errorf("ran %s, want after-loss", calls[0].ev.RequestID)
	}
}

// A busy function whose events do run (its pod at its concurrency, each
// event a few milliseconds) gets its events run as fast as its pod allows:
// an event over the function's share waits here for one of its events to
// end, instead of going back to the stream for NotRunDelay. (Bounced,
// 400 events took 30 s here; the function's pod stood idle between the
// waves.)
func TestBusyFunctionDrainsAtItsPace(t *testing.T) {
	s := natsServer(t, "")
	q, reg := open(t, s.ClientURL(), func(c *eventqueue.Config) {
		c.Concurrency, c.PerFunction, c.NotRunDelay = 16, 4, 5*time.Second
	})
	pod := make(chan struct{}, 4) // the pod's concurrency
	var mu sync.Mutex
	ran := map[string]bool{}
	run(t, q, always(eventqueue.DefaultPolicy), func(_ context.Context, ev *eventqueue.Event, _ bool) eventqueue.Outcome {
		pod <- struct{}{}
		time.Sleep(2 * time.Millisecond)
		<-pod
		mu.Lock()
		ran[ev.RequestID] = true
		mu.Unlock()
		return eventqueue.Outcome{Result: eventqueue.Succeeded}
	})
	const n = 400
	start := time.Now()
	for i := range n {
		if err := q.Publish(context.Background(), newEvent(fmt.Sprintf("busy-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// 400 events of 2 ms, 4 at a time: 0.2 s of the pod's time.
	deadline := start.Add(4 * time.Second)
	for {
		mu.Lock()
		got := len(ran)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events ran in %s; %v went back to the stream", got, n, time.Since(start).Round(time.Millisecond),
				metric(t, reg, "lambdapod_activator_events_not_run_total", ""))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b := metric(t, reg, "lambdapod_activator_events_not_run_total", ""); b != 0 {
		t.Errorf("%v events went back to the stream although the function's events were running", b)
	}
}

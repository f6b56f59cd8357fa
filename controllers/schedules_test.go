package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/lambdapod/lambdapod/activator/eventqueue"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/internal/natstest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// queued runs the events of a real queue and keeps them.
type queued struct {
	mu  sync.Mutex
	evs []*eventqueue.Event
}

func (q *queued) run(_ context.Context, ev *eventqueue.Event, _ bool) eventqueue.Outcome {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evs = append(q.evs, ev)
	return eventqueue.Outcome{Result: eventqueue.Succeeded}
}

// settle waits until the queue ran n events, and a moment more to see no
// other comes, and returns them.
func (q *queued) settle(t *testing.T, n int) []*eventqueue.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		got := len(q.evs)
		q.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.evs) != n {
		t.Fatalf("%d events ran, want %d", len(q.evs), n)
	}
	return append([]*eventqueue.Event(nil), q.evs...)
}

// startQueue is an activator's side of a real NATS server: the stream,
// and a runner that keeps what it runs.
func startQueue(t *testing.T) (string, *queued) {
	t.Helper()
	s := natstest.Start(t, "", 0)
	ctx, cancel := context.WithCancel(context.Background())
	aq, err := eventqueue.Open(ctx, eventqueue.Config{URL: s.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	ran := &queued{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		aq.Run(ctx, func(string, string) (eventqueue.Policy, bool) { return eventqueue.DefaultPolicy, true }, ran.run)
	}()
	t.Cleanup(func() { cancel(); <-done; aq.Close() })
	return s.ClientURL(), ran
}

// A schedule queues one Event per time, with EventBridge's Scheduled Event
// as its payload (or the schedule's input); publishing a time again, as a
// new leader with an older status does, stores it once; the times missed
// during a short stop are all queued, those of a long one skipped with a
// warning; an expression the API server let through but that cannot run
// is a warning.
func TestSchedulesQueueEachTimeOnce(t *testing.T) {
	env := testenv.Start(t)
	c := env.Client
	ctx := context.Background()
	url, ran := startQueue(t)
	q, err := eventqueue.Dial(eventqueue.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)

	fn := newFunction("ticker", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Schedules = []lambdapodv1alpha1.Schedule{
			{Name: "every-minute", Expression: "rate(1 minute)"},
			{Name: "noon", Expression: "cron(0 12 * * ? *)", Input: &apiextensionsv1.JSON{Raw: []byte(`{"job":"report"}`)}},
			{Name: "bad", Expression: "cron(0 25 * * ? *)"},
		}
	})
	create(t, c, fn)
	fn = getFunction(t, c, fn)
	created := fn.CreationTimestamp.UTC()

	var now time.Time
	rec := events.NewFakeRecorder(100)
	r := &controllers.ScheduleReconciler{Client: c, Queue: q, Region: "eu-west-1", Recorder: rec, Now: func() time.Time { return now }}
	reconcile := func(at time.Time) ctrl.Result {
		t.Helper()
		now = at
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key(fn)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	status := func() map[string]lambdapodv1alpha1.ScheduleStatus {
		m := map[string]lambdapodv1alpha1.ScheduleStatus{}
		for _, s := range getFunction(t, c, fn).Status.Schedules {
			m[s.Name] = s
		}
		return m
	}

	// First seen half a minute in: nothing due, the next time said.
	res := reconcile(created.Add(30 * time.Second))
	st := status()
	if st["every-minute"].LastScheduleTime != nil || !st["every-minute"].NextScheduleTime.Time.Equal(created.Add(time.Minute)) {
		t.Errorf("every-minute status %+v, want no last time and next %s", st["every-minute"], created.Add(time.Minute))
	}
	if res.RequeueAfter < 29*time.Second || res.RequeueAfter > 31*time.Second {
		t.Errorf("requeued after %s, want about 30s (the next time)", res.RequeueAfter)
	}
	if st["bad"].NextScheduleTime != nil {
		t.Errorf("the invalid schedule has a next time %v", st["bad"].NextScheduleTime)
	}
	if e := strings.Join(drain(rec), "\n"); !strings.Contains(e, "Warning ScheduleInvalid spec.schedules bad: cron(0 25 * * ? *)") {
		t.Errorf("events %q, want a ScheduleInvalid warning for bad", e)
	}

	// The first time: one Event.
	reconcile(created.Add(61 * time.Second))
	evs := ran.settle(t, 1)
	if !status()["every-minute"].LastScheduleTime.Time.Equal(created.Add(time.Minute)) {
		t.Errorf("lastScheduleTime %v, want %s", status()["every-minute"].LastScheduleTime, created.Add(time.Minute))
	}
	var got lambdaevents.CloudWatchEvent
	if err := json.Unmarshal(evs[0].Payload, &got); err != nil {
		t.Fatalf("payload %s: %v", evs[0].Payload, err)
	}
	want := lambdaevents.CloudWatchEvent{Version: "0", ID: got.ID, DetailType: "Scheduled Event", Source: "aws.events",
		AccountID: "000000000000", Time: created.Add(time.Minute), Region: "eu-west-1",
		Resources: []string{"arn:aws:events:eu-west-1:000000000000:rule/default.ticker.every-minute"}, Detail: json.RawMessage("{}")}
	if !reflect.DeepEqual(got, want) || len(got.ID) != 36 {
		t.Errorf("Scheduled Event\n%+v\nwant\n%+v", got, want)
	}
	if evs[0].Namespace != "default" || evs[0].Name != "ticker" || len(evs[0].RequestID) != 36 {
		t.Errorf("event for %s/%s with request id %q", evs[0].Namespace, evs[0].Name, evs[0].RequestID)
	}

	// A leader that took over with the status of before the first time
	// queues it again: stored once.
	before := getFunction(t, c, fn)
	stale := before.DeepCopy()
	for i := range stale.Status.Schedules {
		if stale.Status.Schedules[i].Name == "every-minute" {
			stale.Status.Schedules[i].LastScheduleTime = nil
			stale.Status.Schedules[i].NextScheduleTime.Time = created.Add(time.Minute)
		}
	}
	if err := c.Status().Update(ctx, stale); err != nil {
		t.Fatal(err)
	}
	reconcile(created.Add(75 * time.Second))
	ran.settle(t, 1)

	// Down over two times: both queued, in order.
	reconcile(created.Add(3*time.Minute + 5*time.Second))
	evs = ran.settle(t, 3)
	var times []time.Time
	for _, ev := range evs[1:] {
		var e lambdaevents.CloudWatchEvent
		_ = json.Unmarshal(ev.Payload, &e)
		times = append(times, e.Time)
	}
	if !times[0].Equal(created.Add(2*time.Minute)) || !times[1].Equal(created.Add(3*time.Minute)) {
		t.Errorf("times %v, want %s and %s", times, created.Add(2*time.Minute), created.Add(3*time.Minute))
	}

	// Down an hour: the last five minutes' times run, the others are
	// skipped with a warning.
	drain(rec)
	reconcile(created.Add(63*time.Minute + 5*time.Second))
	evs = ran.settle(t, 8)
	if e := strings.Join(drain(rec), "\n"); !strings.Contains(e, "Warning ScheduleMissed spec.schedules every-minute") {
		t.Errorf("events %q, want a ScheduleMissed warning", e)
	}

	// Noon: the schedule's input, not a Scheduled Event.
	noon := status()["noon"].NextScheduleTime.Time
	reconcile(noon.Add(time.Second))
	rates := 0 // the minutes of every-minute in its last five minutes
	for at := created.Add(64 * time.Minute); !at.After(noon.Add(time.Second)); at = at.Add(time.Minute) {
		if at.After(noon.Add(time.Second - 5*time.Minute)) {
			rates++
		}
	}
	evs = ran.settle(t, 8+rates+1)
	found := false
	for _, ev := range evs {
		if string(ev.Payload) == `{"job":"report"}` {
			found = true
		}
	}
	if !found {
		t.Errorf("no event with the noon schedule's input among %d", len(evs))
	}
}

func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// status.pendingEvents counts each Function's events in the queue.
func TestPendingEventsInStatus(t *testing.T) {
	env := testenv.Start(t)
	c := env.Client
	s := natstest.Start(t, "", 0)
	ctx := context.Background()
	aq, err := eventqueue.Open(ctx, eventqueue.Config{URL: s.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aq.Close)
	busy, idle := newFunction("busy", nil), newFunction("idle", nil)
	create(t, c, busy)
	create(t, c, idle)
	for i := range 3 {
		if err := aq.Publish(ctx, &eventqueue.Event{RequestID: "req-" + string(rune('a'+i)), Namespace: "default", Name: "busy",
			Accepted: time.Now(), Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	q, err := eventqueue.Dial(eventqueue.Config{URL: s.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&controllers.PendingEvents{Client: c, Queue: q, Interval: 100 * time.Millisecond}).Start(pctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, func() error {
		b, i := getFunction(t, c, busy).Status.PendingEvents, getFunction(t, c, idle).Status.PendingEvents
		if b == nil || *b != 3 || i == nil || *i != 0 {
			return fmt.Errorf("pendingEvents busy %v idle %v, want 3 and 0", deref(b), deref(i))
		}
		return nil
	})
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAcquireTakesLeastBusyPodWithinCapacity(t *testing.T) {
	p := New(2, 10)
	p.SetEndpoints([]string{"a:1", "b:1"})
	ctx := context.Background()
	var leases []*Lease
	count := map[string]int{}
	for i := 0; i < 4; i++ {
		l, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.Waited != 0 || l.Cold {
			t.Fatalf("lease %d waited %v cold %v, want neither", i, l.Waited, l.Cold)
		}
		leases = append(leases, l)
		count[l.Pod.Addr]++
	}
	if count["a:1"] != 2 || count["b:1"] != 2 {
		t.Fatalf("spread %v, want 2 on each pod", count)
	}
	// Both pods are at capacity: the next request waits.
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire on full pods: %v, want deadline exceeded", err)
	}
	if in, q, _ := p.Counts(); in != 4 || q != 0 {
		t.Fatalf("in-flight %d queued %d after a timed-out wait, want 4 and 0", in, q)
	}
	for _, l := range leases {
		l.Release()
		l.Release() // idempotent
	}
	if in, _, _ := p.Counts(); in != 0 {
		t.Fatalf("in-flight %d after releases", in)
	}
}

func TestHeldRequestsDrainInOrderWhenAPodTurnsReady(t *testing.T) {
	p := New(1, 100)
	var colds atomic.Int32
	p.OnCold = func() { colds.Add(1) }
	const n = 50
	got := make(chan *Lease, n)
	for i := 0; i < n; i++ {
		go func() {
			l, err := p.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			got <- l
		}()
	}
	waitFor(t, func() bool { _, q, _ := p.Counts(); return q == n })
	if colds.Load() != n {
		t.Fatalf("OnCold called %d times, want %d", colds.Load(), n)
	}
	ready := time.Now()
	p.SetEndpoints([]string{"10.0.0.1:8080"})
	// Concurrency 1: one request at a time reaches the pod.
	for i := 0; i < n; i++ {
		select {
		case l := <-got:
			if i == 0 {
				if d := time.Since(ready); d > 5*time.Millisecond {
					t.Errorf("first held request got its pod %v after ready", d)
				}
			}
			if !l.Cold || l.Pod.Addr != "10.0.0.1:8080" {
				t.Fatalf("lease %+v, want cold on 10.0.0.1:8080", l)
			}
			select {
			case <-got:
				t.Fatal("two requests in flight on a pod of concurrency 1")
			case <-time.After(time.Millisecond):
			}
			l.Release()
		case <-time.After(2 * time.Second):
			t.Fatalf("request %d never got the pod", i)
		}
	}
}

func TestQueueBoundRefusesOverflow(t *testing.T) {
	p := New(1, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = p.Acquire(ctx) }()
	}
	waitFor(t, func() bool { _, q, _ := p.Counts(); return q == 2 })
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, want ErrQueueFull", err)
	}
	cancel()
	wg.Wait()
	if _, q, _ := p.Counts(); q != 0 {
		t.Fatalf("queued %d after cancel", q)
	}
}

func TestRemovedPodFinishesInFlightButTakesNoMore(t *testing.T) {
	p := New(1, 10)
	p.SetEndpoints([]string{"old:1"})
	l, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The pod starts terminating; a new one is ready.
	p.SetEndpoints([]string{"new:1"})
	l2, err := p.Acquire(context.Background())
	if err != nil || l2.Pod.Addr != "new:1" {
		t.Fatalf("after the swap got %v %v, want new:1", l2, err)
	}
	l.Release() // the old pod's request completes
	l2.Release()
	l3, _ := p.Acquire(context.Background())
	if l3.Pod.Addr != "new:1" {
		t.Fatalf("a released slot of a removed pod was reused: %s", l3.Pod.Addr)
	}
	l3.Release()
	if in, _, pods := p.Counts(); in != 0 || pods != 1 {
		t.Fatalf("in-flight %d pods %d", in, pods)
	}
}

func TestSnapshotReportsTimeWeightedConcurrency(t *testing.T) {
	now := time.Unix(1000, 0)
	p := New(10, 10)
	p.now = func() time.Time { return now }
	p.lastEvent, p.lastSnap = now, now
	p.SetEndpoints([]string{"a:1"})
	l1, _ := p.Acquire(context.Background())
	l2, _ := p.Acquire(context.Background())
	now = now.Add(500 * time.Millisecond)
	l1.Release()
	now = now.Add(500 * time.Millisecond)
	s := p.Snapshot()
	// 2 for half a second, 1 for half a second.
	if s.Concurrency < 1.49 || s.Concurrency > 1.51 || s.InFlight != 1 || s.Requests != 2 {
		t.Fatalf("snapshot %+v, want concurrency 1.5, in-flight 1, requests 2", s)
	}
	l2.Release()
	now = now.Add(time.Second)
	if s := p.Snapshot(); s.Concurrency != 0 || s.Requests != 0 {
		t.Fatalf("idle snapshot %+v", s)
	}
}

func TestSetCapacityDispatchesWaiters(t *testing.T) {
	p := New(1, 10)
	p.SetEndpoints([]string{"a:1"})
	l, _ := p.Acquire(context.Background())
	done := make(chan *Lease)
	go func() { l2, _ := p.Acquire(context.Background()); done <- l2 }()
	waitFor(t, func() bool { _, q, _ := p.Counts(); return q == 1 })
	p.SetCapacity(2)
	select {
	case l2 := <-done:
		l2.Release()
	case <-time.After(time.Second):
		t.Fatal("raising the capacity did not dispatch the waiter")
	}
	l.Release()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// Try sends a request that did not run on one pod to another, retires a
// pod that said it is shutting down before its slot goes to a waiter, and
// gives up after the attempts with Unreachable.
func TestTryRetriesWhatDidNotRun(t *testing.T) {
	p := New(1, 10)
	p.SetEndpoints([]string{"a", "b"})
	var tried []string
	err := p.Try(context.Background(), time.Second, 3, func(l *Lease) error {
		tried = append(tried, l.Pod.Addr)
		if l.Pod.Addr == "a" {
			return &NotRun{Err: errors.New("shutting down"), Retire: true}
		}
		return nil
	})
	if err != nil || len(tried) != 2 || tried[0] == tried[1] {
		t.Fatalf("tried %v, err %v", tried, err)
	}
	if p.Ready() != 1 {
		t.Fatalf("the pod that said it is shutting down is still ready (%d ready)", p.Ready())
	}

	boom := errors.New("boom")
	if err := p.Try(context.Background(), time.Second, 3, func(*Lease) error { return boom }); err != boom {
		t.Fatalf("fn's error: %v", err)
	}

	n := 0
	err = p.Try(context.Background(), time.Second, 3, func(*Lease) error { n++; return &NotRun{Err: boom} })
	var u *Unreachable
	if !errors.As(err, &u) || u.Attempts != 3 || n != 3 || !errors.Is(u.Last, boom) {
		t.Fatalf("after %d attempts: %v", n, err)
	}
	if inflight, queued, _ := p.Counts(); inflight != 0 || queued != 0 {
		t.Fatalf("slots left taken: %d in flight, %d queued", inflight, queued)
	}

	p.SetEndpoints(nil)
	start := time.Now()
	err = p.Try(context.Background(), 50*time.Millisecond, 3, func(*Lease) error { t.Fatal("ran with no pod"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("no pod: %v after %v", err, time.Since(start))
	}
}

// A pod that says it is busy (another activator's requests hold its slots)
// rests a while; the request waits at the head of the queue, as often as it
// takes within the wait bound, and a busy answer is no failed attempt.
func TestTryWaitsOutABusyPod(t *testing.T) {
	p := New(1, 10)
	p.SetEndpoints([]string{"a"})
	var at []time.Time
	start := time.Now()
	err := p.Try(context.Background(), 5*time.Second, 1, func(l *Lease) error {
		at = append(at, time.Now())
		if len(at) <= 4 {
			return &NotRun{Err: errors.New("busy"), Busy: true}
		}
		return nil
	})
	if err != nil || len(at) != 5 {
		t.Fatalf("after %d tries: %v", len(at), err)
	}
	// Rests of 5, 10, 20 and 40 ms between the tries.
	if d := at[4].Sub(start); d < 75*time.Millisecond || d > 2*time.Second {
		t.Fatalf("five tries took %v, want the rests of 5+10+20+40ms", d)
	}

	// While it rests, a newcomer waits behind the request that was refused.
	p2 := New(1, 10)
	p2.SetEndpoints([]string{"a"})
	order := make(chan string, 2)
	refused := make(chan struct{})
	go func() {
		_ = p2.Try(context.Background(), 5*time.Second, 1, func(l *Lease) error {
			select {
			case <-refused:
				order <- "first"
				return nil
			default:
				close(refused)
				return &NotRun{Err: errors.New("busy"), Busy: true}
			}
		})
	}()
	<-refused
	_ = p2.Try(context.Background(), 5*time.Second, 1, func(l *Lease) error { order <- "second"; return nil })
	if a, b := <-order, <-order; a != "first" || b != "second" {
		t.Fatalf("order %s, %s: the refused request lost its place", a, b)
	}

	// Within the bound only.
	p3 := New(1, 10)
	p3.SetEndpoints([]string{"a"})
	err = p3.Try(context.Background(), 100*time.Millisecond, 3, func(l *Lease) error {
		return &NotRun{Err: errors.New("busy"), Busy: true}
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("always busy: %v, want the wait bound", err)
	}
}

func TestParkedRequestsGetSlotsInOrderAndAGoneOneIsSkipped(t *testing.T) {
	p := New(1, 3)
	var got []string
	park := func(name string, wants bool) *Waiter {
		t.Helper()
		l, w, err := p.Park(func(l *Lease, _ error) bool {
			if wants {
				got = append(got, name)
			}
			return wants
		})
		if l != nil || err != nil || w == nil {
			t.Fatalf("park %s: lease %v, err %v", name, l, err)
		}
		return w
	}
	a := park("a", true)
	park("gone", false) // its client left as the slot came
	c := park("c", true)
	if _, _, err := p.Park(func(*Lease, error) bool { return true }); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("fourth parked request: %v, want ErrQueueFull", err)
	}
	if !p.Unpark(c) {
		t.Fatal("Unpark of a waiting request reported false")
	}
	p.SetEndpoints([]string{"pod:1", "pod:2"})
	if len(got) != 1 || got[0] != "a" {
		t.Fatalf("delivered to %v, want [a] (the gone one skipped, the unparked one out)", got)
	}
	if p.Unpark(a) {
		t.Fatal("Unpark after the lease was delivered reported true")
	}
	in, q, _ := p.Counts()
	if in != 1 || q != 0 {
		t.Fatalf("inflight %d queued %d, want 1 and 0: the refused slot is free again", in, q)
	}
	// A free slot is taken at once, without parking.
	l, w, err := p.Park(func(*Lease, error) bool { t.Fatal("delivered to a request that had a slot at once"); return false })
	if l == nil || w != nil || err != nil {
		t.Fatalf("Park with a free slot: lease %v waiter %v err %v", l, w, err)
	}
}

// A pod that refuses connections (its sidecar gone before its
// EndpointSlice says so) always has the fewest requests in flight, so
// picking by load would send every retry back to it: it rests a while
// after each refusal, and the retries go to the pod that answers, even
// with every attempt but one spent.
func TestUnreachablePodRests(t *testing.T) {
	p := New(4, 10)
	p.SetEndpoints([]string{"gone", "up"})
	// "up" is busy with requests in flight, so that "gone" is the pick.
	var held, other []*Lease
	for range 6 {
		l := p.TryAcquire()
		if l == nil {
			t.Fatal("no slot")
		}
		if l.Pod.Addr == "gone" {
			other = append(other, l)
		} else {
			held = append(held, l)
		}
	}
	for _, l := range other {
		l.Release()
	}
	var tried []string
	for i := range 20 {
		tried = tried[:0]
		err := p.Try(context.Background(), time.Second, 2, func(l *Lease) error {
			tried = append(tried, l.Pod.Addr)
			if l.Pod.Addr == "gone" {
				return &NotRun{Err: errors.New("connection refused"), Unreachable: true}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("request %d: %v after trying %v", i, err, tried)
		}
	}
	for _, l := range held {
		l.Release()
	}
}

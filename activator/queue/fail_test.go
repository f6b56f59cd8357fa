package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A pool whose function's pods cannot run holds no request while it has
// no ready pod: arrivals get the failure at once, waiters (on a goroutine
// or parked) get it when it is set or when the last pod goes, and a ready
// pod keeps serving.
func TestFailedPoolHoldsNoRequest(t *testing.T) {
	cannot := errors.New("pods cannot run")
	p := New(1, 10)

	// Waiting when the failure comes: a goroutine's and a parked one.
	got := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background())
		got <- err
	}()
	var delivered []error
	_, w, err := p.Park(func(l *Lease, err error) bool {
		if l != nil {
			t.Error("a lease with no pod")
		}
		delivered = append(delivered, err)
		return true
	})
	if w == nil || err != nil {
		t.Fatalf("park: %v", err)
	}
	for _, q := queuedOf(p); q != 2; _, q = queuedOf(p) {
		time.Sleep(time.Millisecond)
	}
	p.Fail(cannot)
	select {
	case err := <-got:
		if !errors.Is(err, cannot) {
			t.Fatalf("waiter got %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the waiter was not told")
	}
	if len(delivered) != 1 || !errors.Is(delivered[0], cannot) {
		t.Fatalf("parked waiter got %v", delivered)
	}
	if p.Unpark(w) {
		t.Fatal("Unpark of a failed waiter reported true")
	}
	// Arriving: at once, the bound and the retries alike.
	start := time.Now()
	if err := p.Try(context.Background(), time.Minute, 3, func(*Lease) error { return nil }); !errors.Is(err, cannot) {
		t.Fatalf("Try: %v", err)
	}
	if _, _, err := p.Park(func(*Lease, error) bool { return true }); !errors.Is(err, cannot) {
		t.Fatalf("Park: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("arrivals waited")
	}
	if _, q := queuedOf(p); q != 0 {
		t.Fatalf("%d queued", q)
	}

	// A ready pod serves; a request waiting for its slot is told when it goes.
	p.SetEndpoints([]string{"a"})
	l, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatalf("with a ready pod: %v", err)
	}
	go func() {
		_, err := p.Acquire(context.Background())
		got <- err
	}()
	for _, q := queuedOf(p); q != 1; _, q = queuedOf(p) {
		time.Sleep(time.Millisecond)
	}
	p.SetEndpoints(nil)
	if err := <-got; !errors.Is(err, cannot) {
		t.Fatalf("waiter when the last pod went: %v", err)
	}
	l.Release()

	// Cleared: requests wait for a pod again.
	p.Fail(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after the failure cleared: %v, want a wait", err)
	}
}

func queuedOf(p *Pool) (inflight, queued int) {
	in, q, _ := p.Counts()
	return in, q
}

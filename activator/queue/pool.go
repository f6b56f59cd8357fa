// Package queue holds, per function, the ready pods with their free
// concurrency slots and a bounded FIFO of requests waiting for a slot.
//
// A request takes the slot of the least busy ready pod at once, or waits in
// the queue (bounded; overflow is refused, never buffered) until a slot frees
// up or a pod turns ready, or until its context ends. Handing slots to
// waiters is event driven: a release or an endpoint update passes the slot to
// the oldest waiter inside the same critical section, so a pod that turns
// ready serves the held requests within microseconds. No polling.
//
// A function whose pods cannot run (Fail) gets no waiter while it has no
// ready pod: a request that would wait gets the failure at once, and the
// requests waiting get it when it is set, or when the last ready pod goes.
package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrQueueFull means the function's wait queue is at its bound.
var ErrQueueFull = errors.New("queue full")

// Pod is one ready endpoint of a function.
type Pod struct {
	// Addr is host:port of the pod's invoke endpoint.
	Addr string

	inflight int
	removed  bool
	// busyUntil: the pod said all its slots were taken (by another
	// activator's requests, which this pool cannot see); it gets none of
	// this pool's requests until then, and busyStreak doubles the wait.
	busyUntil  time.Time
	busyStreak atomic.Int32
	wake       *time.Timer
	// unreachable: the last connection to it failed, and no request has
	// reached it since.
	unreachable bool
}

// The wait after a pod said it was busy, doubling while it stays busy:
// short enough that a slot another activator freed is taken soon, long
// enough that a long invocation costs few refused round trips.
const (
	busyFirstWait = 5 * time.Millisecond
	busyMaxWait   = 100 * time.Millisecond
)

// Lease is a slot on a pod; Release it exactly once.
type Lease struct {
	Pod *Pod
	// Waited is how long the request was held before it got the slot.
	Waited time.Duration
	// Cold is true when the request found no ready pod at all.
	Cold bool
	// StartBy is when the wait for a slot ends (the activation timeout):
	// the pod must have started the invocation by then.
	StartBy time.Time

	pool *Pool
	once sync.Once
}

// Release frees the slot and hands it to the oldest waiter, if any.
func (l *Lease) Release() {
	l.once.Do(func() { l.pool.release(l.Pod) })
}

// Retire takes the lease's pod out of the ready set, as if the endpoints
// had dropped it: it said it is shutting down before the EndpointSlice
// did. Its in-flight requests finish; endpoints that list it again bring
// it back.
func (l *Lease) Retire() { l.pool.retire(l.Pod) }

// waiter is a request in the queue. deliver hands it a lease, or no lease
// and the function's failure (Fail), under the pool's lock (so it must not
// block or take the lock): false means the request no longer wants it,
// and the slot goes to the next waiter.
type waiter struct {
	deliver    func(*Lease, error) bool
	start      time.Time
	cold       bool
	next, prev *waiter
}

// Waiter is a parked request's place in the queue (see Park).
type Waiter struct{ w *waiter }

// Stats is a snapshot of a pool for the autoscaler.
type Stats struct {
	// Concurrency is the time-weighted mean of in-flight plus queued
	// requests since the previous snapshot.
	Concurrency float64
	// InFlight and Queued are the counts now.
	InFlight int
	Queued   int
	// Requests is how many requests arrived since the previous snapshot.
	Requests int64
	// Pods is the number of ready pods now.
	Pods int
}

// Pool is one function's pods and wait queue. The zero value is not usable;
// use New.
type Pool struct {
	mu       sync.Mutex
	capacity int
	maxQueue int
	pods     []*Pod
	byAddr   map[string]*Pod
	head     *waiter
	tail     *waiter
	queued   int
	// reserved places count toward maxQueue like queued requests.
	reserved int
	inflight int
	rr       int
	// failure, while set (Fail), is why the function's pods cannot run.
	failure error

	// for Stats
	requests  int64
	integral  float64 // request-seconds since lastSnap
	lastEvent time.Time
	lastSnap  time.Time

	// OnCold, if set, is called (outside the lock) when a request starts
	// waiting while the function has no ready pod.
	OnCold func()
	now    func() time.Time
}

// New returns a pool whose pods take capacity concurrent requests each and
// whose queue holds at most maxQueue waiting requests.
func New(capacity, maxQueue int) *Pool {
	if capacity < 1 {
		capacity = 1
	}
	p := &Pool{capacity: capacity, maxQueue: maxQueue, byAddr: map[string]*Pod{}, now: time.Now}
	p.lastEvent = p.now()
	p.lastSnap = p.lastEvent
	return p
}

// tick accumulates the concurrency integral; call with mu held before any
// change of inflight or queued.
func (p *Pool) tick() {
	now := p.now()
	p.integral += float64(p.inflight+p.queued) * now.Sub(p.lastEvent).Seconds()
	p.lastEvent = now
}

// Acquire returns a slot on a ready pod, waiting in the queue while there is
// none. It returns ErrQueueFull when the queue is at its bound, or ctx's
// error when ctx ends first.
func (p *Pool) Acquire(ctx context.Context) (*Lease, error) {
	return p.acquire(ctx, arrival, time.Time{})
}

// Reservation is a place in the queue, held for a request accepted now
// and served later (an Event invocation answered 202 at once): the place
// is taken when the answer is given, so no accepted request finds the
// queue full afterwards.
type Reservation struct {
	pool *Pool
	once sync.Once
}

// Reserve holds a place in the queue, or returns ErrQueueFull, or the
// function's failure (Fail) while it has no ready pod. Pass the
// reservation to TryReserved, or Cancel it.
func (p *Pool) Reserve() (*Reservation, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failure != nil && len(p.pods) == 0 {
		// Accepted, the event could only fail later, out of sight.
		return nil, p.failure
	}
	if p.queued+p.reserved >= p.maxQueue {
		return nil, ErrQueueFull
	}
	p.reserved++
	return &Reservation{pool: p}, nil
}

// Cancel gives an unused place back.
func (r *Reservation) Cancel() {
	r.once.Do(func() {
		r.pool.mu.Lock()
		r.pool.reserved--
		r.pool.mu.Unlock()
	})
}

// entry says how a request comes to acquire a slot.
type entry int

const (
	// arrival: a new request, refused when the queue is at its bound.
	arrival entry = iota
	// reserved: a request whose place was reserved (Reserve) when it was
	// accepted; the reservation becomes its place.
	reserved
	// again: a request that had a slot and must wait anew (its pod was
	// busy): it goes first in the queue, and is neither counted as an
	// arrival again nor refused for the bound.
	again
	// retry: a request that must go to another pod (its pod could not
	// take it): it queues last, and is neither counted nor refused.
	retry
)

// enqueue takes a slot at once, or puts a waiter with deliver in the
// queue (nil, nil: it waits), or refuses an arrival when the queue is at
// its bound, or any request with the function's failure when it has no
// ready pod and its pods cannot run.
func (p *Pool) enqueue(e entry, deliver func(*Lease, error) bool) (*Lease, *waiter, error) {
	p.mu.Lock()
	p.tick()
	switch e {
	case arrival:
		p.requests++
	case reserved:
		p.requests++
		p.reserved--
	}
	if pod := p.pickLocked(); pod != nil {
		pod.inflight++
		p.inflight++
		p.mu.Unlock()
		return &Lease{Pod: pod, pool: p}, nil, nil
	}
	if err := p.failure; err != nil && len(p.pods) == 0 {
		p.mu.Unlock()
		return nil, nil, err
	}
	if e == arrival && p.queued+p.reserved >= p.maxQueue {
		p.mu.Unlock()
		return nil, nil, ErrQueueFull
	}
	w := &waiter{deliver: deliver, start: p.now(), cold: len(p.pods) == 0}
	if e == again {
		p.pushFrontLocked(w)
	} else {
		p.pushLocked(w)
	}
	p.mu.Unlock()
	if w.cold && p.OnCold != nil {
		p.OnCold()
	}
	return nil, w, nil
}

// TryAcquire takes a slot on a ready pod if one is free now, counting the
// request as arrived; nil (and nothing counted) when it would wait.
func (p *Pool) TryAcquire() *Lease {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod := p.pickLocked()
	if pod == nil {
		return nil
	}
	p.tick()
	p.requests++
	pod.inflight++
	p.inflight++
	return &Lease{Pod: pod, pool: p}
}

// LongWait reports whether a request that waits now is likely to wait
// long: the function has no ready pod (a cold start: seconds), or at least
// queued requests wait already.
func (p *Pool) LongWait(queued int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pods) == 0 || p.queued >= queued
}

// acquire is Acquire for a request that comes as e says and waits at most
// until startBy (zero: no bound but ctx), when it gets
// context.DeadlineExceeded.
func (p *Pool) acquire(ctx context.Context, e entry, startBy time.Time) (*Lease, error) {
	type handed struct {
		l   *Lease
		err error
	}
	ch := make(chan handed, 1) // the dispatcher never blocks
	lease, w, err := p.enqueue(e, func(l *Lease, err error) bool { ch <- handed{l, err}; return true })
	if w == nil {
		return lease, err
	}
	// The bound's timer is made here, for a request that waits, rather
	// than as a context deadline around every attempt: most requests take
	// a slot at once.
	var expired <-chan time.Time
	if !startBy.IsZero() {
		t := time.NewTimer(time.Until(startBy))
		defer t.Stop()
		expired = t.C
	}
	var end error
	select {
	case h := <-ch:
		return h.l, h.err
	case <-ctx.Done():
		end = ctx.Err()
	case <-expired:
		end = context.DeadlineExceeded
	}
	if p.dequeue(w) {
		return nil, end
	}
	// A slot (or the failure) was handed over as the wait ended: give the
	// slot back.
	if h := <-ch; h.l != nil {
		h.l.Release()
	}
	return nil, end
}

// dequeue takes w out of the queue; false if a lease was handed to it
// already.
func (p *Pool) dequeue(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.unlinkLocked(w) {
		return false
	}
	p.tick()
	p.queued--
	return true
}

// Park is Acquire for a request that waits without a goroutine: it
// returns a lease at once when a pod has a free slot; otherwise the
// request takes its place in the queue (ErrQueueFull at the bound; the
// function's failure, see Fail, when it has no ready pod), and deliver is
// called with its lease when a slot frees up, or with no lease and the
// failure when the function's pods turn out not to run. deliver runs
// under the pool's lock: it must not block nor call the pool, and returns
// false when the request is gone (the slot then goes to the next waiter).
// Unpark takes a request that stops waiting out of the queue.
func (p *Pool) Park(deliver func(*Lease, error) bool) (*Lease, *Waiter, error) {
	lease, w, err := p.enqueue(arrival, deliver)
	if w == nil {
		return lease, nil, err
	}
	return nil, &Waiter{w: w}, nil
}

// Unpark takes a parked request out of the queue; false if its lease was
// delivered (or refused) already.
func (p *Pool) Unpark(w *Waiter) bool { return p.dequeue(w.w) }

// NotRun is what a Try callback returns when its request never ran on the
// lease's pod (it could not be reached, or answered that it is shutting
// down or busy): Try then sends the request to another pod. Retire takes
// the pod out of the ready set first, for a pod that said it is shutting
// down before its EndpointSlice did. Busy means the pod's slots are all
// taken by other activators' requests: the pod rests a while, and the
// request waits at the head of the queue, within the same wait bound, as
// many times as it takes (it is no failed attempt). Unreachable means the
// pod could not be connected to: it rests a while too, since a pod that
// refuses at once always has the fewest requests in flight and would be
// picked again for the retry, and the attempt counts only when no ready
// pod is left that was not found unreachable.
type NotRun struct {
	Err         error
	Retire      bool
	Busy        bool
	Unreachable bool
}

func (e *NotRun) Error() string { return "not run: " + e.Err.Error() }
func (e *NotRun) Unwrap() error { return e.Err }

// Unreachable is Try's error when every pod tried returned NotRun.
type Unreachable struct {
	Attempts int
	// Last is the last pod's error.
	Last error
}

func (e *Unreachable) Error() string {
	return fmt.Sprintf("no pod took the request in %d attempts: %v", e.Attempts, e.Last)
}

// Try runs fn on a slot of a ready pod, holding the request in the queue
// (at most wait in all) while there is none; the slot is released when fn
// returns. When fn returns *NotRun, nothing ran, and Try takes a slot on
// another pod, up to attempts times, then returns *Unreachable. It returns
// ErrQueueFull when the queue is at its bound, ctx's error when ctx ends
// while waiting (context.DeadlineExceeded once wait has passed), and fn's
// other errors as they are.
func (p *Pool) Try(ctx context.Context, wait time.Duration, attempts int, fn func(*Lease) error) error {
	return p.tryFrom(ctx, arrival, nil, time.Now().Add(wait), attempts, fn)
}

// TryReserved is Try for a request whose place r holds: it is never
// refused for the queue's bound.
func (p *Pool) TryReserved(ctx context.Context, r *Reservation, wait time.Duration, attempts int, fn func(*Lease) error) error {
	first := arrival
	r.once.Do(func() { first = reserved })
	return p.tryFrom(ctx, first, nil, time.Now().Add(wait), attempts, fn)
}

// TryLeased is Try for a request that holds a lease already (a parked
// request that was handed one): its first attempt runs on it, and the
// wait for any other ends at startBy.
func (p *Pool) TryLeased(ctx context.Context, l *Lease, startBy time.Time, attempts int, fn func(*Lease) error) error {
	return p.tryFrom(ctx, retry, l, startBy, attempts, fn)
}

func (p *Pool) tryFrom(ctx context.Context, first entry, lease *Lease, startBy time.Time, attempts int, fn func(*Lease) error) error {
	var last error
	e := first
	for attempt := 1; attempt <= max(attempts, 1); {
		nr, err := p.try(ctx, e, lease, startBy, fn)
		lease = nil
		if nr == nil || ctx.Err() != nil {
			return err
		}
		e = retry
		if nr.Busy {
			e = again
		}
		// A pod that could not be reached costs no attempt while another
		// pod may still take the request: it is the pod's failure, not
		// the request's (it rests meanwhile). With every pod unreachable
		// the attempts run out as before.
		if !nr.Busy && !(nr.Unreachable && p.anyReachable()) {
			attempt++
			last = nr.Err
		}
	}
	return &Unreachable{Attempts: max(attempts, 1), Last: last}
}

// pickLocked returns the ready pod with the most free slots, or nil.
func (p *Pool) pickLocked() *Pod {
	var best *Pod
	var now time.Time
	n := len(p.pods)
	for i := 0; i < n; i++ {
		pod := p.pods[(p.rr+i)%n]
		if pod.inflight >= p.capacity {
			continue
		}
		if !pod.busyUntil.IsZero() {
			if now.IsZero() {
				now = p.now()
			}
			if now.Before(pod.busyUntil) {
				continue
			}
		}
		if best == nil || pod.inflight < best.inflight {
			best = pod
			if pod.inflight == 0 {
				break
			}
		}
	}
	if n > 0 {
		p.rr = (p.rr + 1) % n
	}
	return best
}

// try is one attempt of Try. The slot is released however fn returns, a
// panic included, so that no slot leaks.
func (p *Pool) try(ctx context.Context, e entry, lease *Lease, startBy time.Time, fn func(*Lease) error) (*NotRun, error) {
	if lease == nil {
		var err error
		if lease, err = p.acquire(ctx, e, startBy); err != nil {
			return nil, err
		}
	}
	defer lease.Release()
	lease.StartBy = startBy
	err := fn(lease)
	var nr *NotRun
	errors.As(err, &nr)
	switch {
	case nr != nil && nr.Retire:
		// Before the release, so that the slot goes to no waiter.
		lease.Retire()
	case nr != nil && (nr.Busy || nr.Unreachable):
		p.rest(lease.Pod, nr.Unreachable)
	default:
		p.calm(lease.Pod)
	}
	return nr, err
}

// rest keeps the pod out of this pool's picks for a while after it said it
// was busy or could not be reached, and hands its slots out again when the
// while is over.
func (p *Pool) rest(pod *Pod, unreachable bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if unreachable {
		pod.unreachable = true
	}
	streak := pod.busyStreak.Add(1)
	d := min(busyFirstWait<<min(streak-1, 8), busyMaxWait)
	pod.busyUntil = p.now().Add(d)
	if pod.wake == nil {
		pod.wake = time.AfterFunc(d, func() {
			p.mu.Lock()
			p.dispatchLocked()
			p.mu.Unlock()
		})
		return
	}
	pod.wake.Reset(d)
}

// calm forgets that the pod was busy: it took a request. On every
// request, so it takes no lock when there is nothing to forget.
func (p *Pool) calm(pod *Pod) {
	if pod.busyStreak.Load() != 0 {
		pod.busyStreak.Store(0)
		p.mu.Lock()
		pod.unreachable = false
		p.mu.Unlock()
	}
}

// anyReachable reports whether a ready pod is not known to be unreachable.
func (p *Pool) anyReachable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pod := range p.pods {
		if !pod.unreachable {
			return true
		}
	}
	return false
}

func (p *Pool) pushFrontLocked(w *waiter) {
	p.tick()
	p.queued++
	if p.head == nil {
		p.head, p.tail = w, w
		return
	}
	w.next = p.head
	p.head.prev = w
	p.head = w
}

func (p *Pool) pushLocked(w *waiter) {
	p.tick()
	p.queued++
	if p.tail == nil {
		p.head, p.tail = w, w
		return
	}
	w.prev = p.tail
	p.tail.next = w
	p.tail = w
}

// unlinkLocked removes w from the queue; false if it was not queued.
func (p *Pool) unlinkLocked(w *waiter) bool {
	if w.prev == nil && p.head != w {
		return false
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		p.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		p.tail = w.prev
	}
	w.next, w.prev = nil, nil
	return true
}

// dispatchLocked hands free slots to waiters, oldest first.
func (p *Pool) dispatchLocked() {
	for p.head != nil {
		pod := p.pickLocked()
		if pod == nil {
			return
		}
		w := p.head
		p.unlinkLocked(w)
		p.tick()
		p.queued--
		l := &Lease{Pod: pod, pool: p, Waited: p.now().Sub(w.start), Cold: w.cold}
		if w.deliver(l, nil) {
			pod.inflight++
			p.inflight++
		}
	}
}

func (p *Pool) release(pod *Pod) {
	p.mu.Lock()
	p.tick()
	pod.inflight--
	p.inflight--
	if !pod.removed {
		p.dispatchLocked()
	}
	p.mu.Unlock()
}

func (p *Pool) retire(pod *Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pod.removed {
		return
	}
	pod.removed = true
	delete(p.byAddr, pod.Addr)
	p.pods = slices.DeleteFunc(p.pods, func(x *Pod) bool { return x == pod })
	p.failWaitersLocked()
}

// Fail says that the function's pods cannot run, err why (nil: they can
// again). While it is set and no pod is ready, no request waits: one that
// would gets err at once, and those waiting get it now, or when the last
// ready pod goes. Ready pods keep serving: a rollout whose new pods fail
// leaves the old ones.
func (p *Pool) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failure = err
	p.failWaitersLocked()
}

// failWaitersLocked hands the failure to every waiter, oldest first, when
// there is one and no ready pod.
func (p *Pool) failWaitersLocked() {
	if p.failure == nil || len(p.pods) > 0 {
		return
	}
	for p.head != nil {
		w := p.head
		p.unlinkLocked(w)
		p.tick()
		p.queued--
		w.deliver(nil, p.failure)
	}
}

// SetEndpoints replaces the ready pods. Pods that left keep their in-flight
// requests until these finish but get no new ones.
func (p *Pool) SetEndpoints(addrs []string) { p.setEndpoints(addrs) }

// setEndpoints is SetEndpoints; it returns the addresses that left.
func (p *Pool) setEndpoints(addrs []string) (gone []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := make(map[string]bool, len(addrs))
	pods := make([]*Pod, 0, len(addrs))
	for _, a := range addrs {
		if keep[a] {
			continue
		}
		keep[a] = true
		pod := p.byAddr[a]
		if pod == nil {
			pod = &Pod{Addr: a}
			p.byAddr[a] = pod
		}
		pods = append(pods, pod)
	}
	for a, pod := range p.byAddr {
		if !keep[a] {
			pod.removed = true
			delete(p.byAddr, a)
			gone = append(gone, a)
		}
	}
	p.pods = pods
	p.dispatchLocked()
	p.failWaitersLocked()
	return gone
}

// SetCapacity sets the concurrent requests one pod takes.
func (p *Pool) SetCapacity(n int) {
	if n < 1 {
		n = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capacity = n
	p.dispatchLocked()
}

// SetMaxQueue sets the queue's bound; waiting requests stay.
func (p *Pool) SetMaxQueue(n int) {
	p.mu.Lock()
	p.maxQueue = n
	p.mu.Unlock()
}

// Ready returns the number of ready pods.
func (p *Pool) Ready() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pods)
}

// Snapshot returns the stats since the previous snapshot and starts a new
// period.
func (p *Pool) Snapshot() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tick()
	s := Stats{InFlight: p.inflight, Queued: p.queued, Requests: p.requests, Pods: len(p.pods)}
	if d := p.lastEvent.Sub(p.lastSnap).Seconds(); d > 0 {
		s.Concurrency = p.integral / d
	} else {
		s.Concurrency = float64(p.inflight + p.queued)
	}
	p.integral = 0
	p.requests = 0
	p.lastSnap = p.lastEvent
	return s
}

// Idle reports whether the pool has no request in flight or waiting.
func (p *Pool) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight == 0 && p.queued == 0
}

// Key names a function: namespace and name.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Registry holds one Pool per function, created on first use.
type Registry struct {
	mu       sync.RWMutex
	pools    map[Key]*Pool
	maxQueue int
	// OnCold is called with the function's key when one of its requests
	// starts waiting at zero ready pods.
	OnCold func(Key)
	// Capacity returns a function's per-pod concurrency for a new pool.
	Capacity func(Key) int
	// OnGone, if set, is called with the address of a pod that left a
	// function's endpoints, so that connections to it are closed.
	OnGone func(addr string)
}

// NewRegistry returns a registry whose pools queue at most maxQueue requests.
func NewRegistry(maxQueue int) *Registry {
	return &Registry{pools: map[Key]*Pool{}, maxQueue: maxQueue}
}

// Get returns the function's pool, creating it.
func (r *Registry) Get(k Key) *Pool {
	r.mu.RLock()
	p := r.pools[k]
	r.mu.RUnlock()
	if p != nil {
		return p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p = r.pools[k]; p != nil {
		return p
	}
	c := 1
	if r.Capacity != nil {
		c = r.Capacity(k)
	}
	p = New(c, r.maxQueue)
	if r.OnCold != nil {
		onCold := r.OnCold
		p.OnCold = func() { onCold(k) }
	}
	r.pools[k] = p
	return p
}

// Lookup returns the function's pool or nil.
func (r *Registry) Lookup(k Key) *Pool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.pools[k]
}

// Each calls f for every pool.
func (r *Registry) Each(f func(Key, *Pool)) {
	r.mu.RLock()
	keys := make([]Key, 0, len(r.pools))
	pools := make([]*Pool, 0, len(r.pools))
	for k, p := range r.pools {
		keys = append(keys, k)
		pools = append(pools, p)
	}
	r.mu.RUnlock()
	for i := range keys {
		f(keys[i], pools[i])
	}
}

// Delete forgets a function's pool when it has no request left.
func (r *Registry) Delete(k Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pools[k]; p != nil && p.Idle() && p.Ready() == 0 {
		delete(r.pools, k)
	}
}

// Counts returns the in-flight and queued requests and the ready pods now.
func (p *Pool) Counts() (inflight, queued, pods int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inflight, p.queued, len(p.pods)
}

// MaxQueue returns the bound of every pool's queue.
func (r *Registry) MaxQueue() int { return r.maxQueue }

// SetEndpoints sets a function's ready pod addresses.
func (r *Registry) SetEndpoints(k Key, addrs []string) {
	if len(addrs) == 0 && r.Lookup(k) == nil {
		return
	}
	for _, a := range r.Get(k).setEndpoints(addrs) {
		if r.OnGone != nil {
			r.OnGone(a)
		}
	}
}

// Fail sets or clears (nil) the failure of a function's pool (see
// Pool.Fail); a function without a pool gets one only to fail.
func (r *Registry) Fail(k Key, err error) {
	p := r.Lookup(k)
	if p == nil {
		if err == nil {
			return
		}
		p = r.Get(k)
	}
	p.Fail(err)
}

// SetCapacity sets a function's per-pod concurrency, if it has a pool.
func (r *Registry) SetCapacity(k Key, n int) {
	if p := r.Lookup(k); p != nil {
		p.SetCapacity(n)
	}
}

package invocation

// Queue is the bounded FIFO queue invocations wait in until a bootstrap
// calls /next. Every bootstrap slot takes from the same queue, so an
// invocation goes to whichever bootstrap is free first.
type Queue struct {
	main chan *Invocation
	// retry holds invocations that a slot took but could not hand over
	// (its bootstrap died in between); they go before the main queue.
	retry chan *Invocation
}

// NewQueue returns a queue that holds at most size waiting invocations.
func NewQueue(size int) *Queue {
	if size < 0 {
		size = 0
	}
	return &Queue{main: make(chan *Invocation, size), retry: make(chan *Invocation, 64)}
}

// Offer enqueues inv; false means the queue is full.
func (q *Queue) Offer(inv *Invocation) bool {
	select {
	case q.main <- inv:
		return true
	default:
		return false
	}
}

// Requeue puts back an invocation that could not be handed over; it goes
// before everything in the main queue.
func (q *Queue) Requeue(inv *Invocation) {
	select {
	case q.retry <- inv:
	default:
		go func() { q.retry <- inv }()
	}
}

// Take blocks until an invocation is available or done or done2 is closed
// (nil).
func (q *Queue) Take(done, done2 <-chan struct{}) *Invocation {
	select {
	case inv := <-q.retry:
		return inv
	default:
	}
	select {
	case inv := <-q.retry:
		return inv
	case inv := <-q.main:
		return inv
	case <-done:
		return nil
	case <-done2:
		return nil
	}
}

// TryTake returns a waiting invocation without blocking, or nil.
func (q *Queue) TryTake() *Invocation {
	select {
	case inv := <-q.retry:
		return inv
	default:
	}
	select {
	case inv := <-q.retry:
		return inv
	case inv := <-q.main:
		return inv
	default:
		return nil
	}
}

// Len is the number of waiting invocations.
func (q *Queue) Len() int { return len(q.main) + len(q.retry) }

// Cap is the queue bound.
func (q *Queue) Cap() int { return cap(q.main) }

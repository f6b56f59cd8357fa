package supervisor

import (
	"encoding/json"
	"errors"
	"log"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// control reads the sidecar's messages and writes the platform lines of
// each slot's invocations in order with the bootstrap's output, without
// the sidecar waiting for them on the way to the bootstrap (the hello's
// "ordered").
//
// The sidecar writes an invoke to the control socket before it hands the
// invocation to the bootstrap, so anything the bootstrap prints of it
// reaches its pipe after the invoke reached the socket. Before a read of
// the bootstrap's output is written out, its barrier reads whatever the
// socket holds, under the lock the reader reads it with (so that no byte
// is between the socket and the parser), and waits until the slot's
// worker has written the START of every invoke so far. END comes before
// the next START because each slot's invokes and ends are written by one
// worker, in order, and the sidecar sends an invoke only after the
// previous end was answered.
//
// Nothing under the lock waits (the workers' and the main loop's queues
// have no bound), so a barrier cannot wait on something that waits on it;
// it gives up after barrierLimit all the same.
type control struct {
	raw    syscall.RawConn
	logger *log.Logger
	// handle writes an invoke's or an end's lines, on its slot's worker.
	handle func(process.Message)

	mu      sync.Mutex // reading and parsing
	rbuf    []byte     // what a read takes from the socket
	buf     []byte     // read, not a whole line yet
	workers map[int]*worker
	// others: the other messages, in order, for the main loop.
	others []process.Message
	more   chan struct{} // others grew (capacity 1)
	closed bool
}

// worker writes one slot's platform lines, one message at a time.
type worker struct {
	mu      sync.Mutex
	queue   []process.Message
	more    chan struct{}
	pending int           // invokes given and not written yet (under mu)
	written chan struct{} // closed (and replaced) when pending went down
	done    bool
}

const (
	barrierLimit = 50 * time.Millisecond
	maxLine      = 4 << 20 // a batch of forwarded lines fits
)

func newControl(conn net.Conn, logger *log.Logger, handle func(process.Message)) (*control, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("control connection has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &control{raw: raw, logger: logger, handle: handle, rbuf: make([]byte, 64<<10), workers: map[int]*worker{}, more: make(chan struct{}, 1)}, nil
}

// run reads until the connection ends, then ends the workers.
func (c *control) run() {
	for {
		var stop bool
		err := c.raw.Read(func(fd uintptr) bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			n, err := syscall.Read(int(fd), c.rbuf)
			if errors.Is(err, syscall.EAGAIN) {
				return false // wait until readable
			}
			if n <= 0 || err != nil {
				stop = true
				return true
			}
			if !c.takeLocked(c.rbuf[:n]) {
				stop = true
			}
			return true
		})
		if err != nil || stop {
			break
		}
	}
	c.mu.Lock()
	c.closed = true
	for _, w := range c.workers {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
		notify(w.more)
	}
	c.mu.Unlock()
	notify(c.more)
}

// catchUpLocked reads what the socket holds now (mu held by the caller).
func (c *control) catchUpLocked() {
	for !c.closed {
		n := 0
		var rerr error
		if err := c.raw.Control(func(fd uintptr) { n, rerr = syscall.Read(int(fd), c.rbuf) }); err != nil || n <= 0 || rerr != nil {
			return // EAGAIN (nothing there), or the reader sees the end
		}
		if !c.takeLocked(c.rbuf[:n]) {
			return
		}
	}
}

// takeLocked parses b's whole lines: invokes and ends to their slot's
// worker, the others to the main loop's queue. False: a line too long.
func (c *control) takeLocked(b []byte) bool {
	c.buf = append(c.buf, b...)
	for {
		i := indexNL(c.buf)
		if i < 0 {
			if len(c.buf) > maxLine {
				c.logger.Printf("control message over %d bytes: disconnecting", maxLine)
				return false
			}
			return true
		}
		line := c.buf[:i]
		var m process.Message
		if err := json.Unmarshal(line, &m); err != nil {
			c.logger.Printf("bad control message: %v", err)
		} else if m.Op == "invoke" || m.Op == "end" {
			c.workerLocked(m.Slot).give(m)
		} else {
			c.others = append(c.others, m)
			notify(c.more)
		}
		c.buf = c.buf[i+1:]
	}
}

func indexNL(b []byte) int {
	for i, x := range b {
		if x == '\n' {
			return i
		}
	}
	return -1
}

// next returns the main loop's messages, in order, waiting for some; false
// once the connection ended and all were taken.
func (c *control) next() ([]process.Message, bool) {
	for {
		c.mu.Lock()
		ms, closed := c.others, c.closed
		c.others = nil
		c.mu.Unlock()
		if len(ms) > 0 {
			return ms, true
		}
		if closed {
			return nil, false
		}
		<-c.more
	}
}

func (c *control) workerLocked(slot int) *worker {
	w := c.workers[slot]
	if w == nil {
		w = &worker{more: make(chan struct{}, 1), written: make(chan struct{}), done: c.closed}
		c.workers[slot] = w
		go w.run(c.handle)
	}
	return w
}

func (w *worker) give(m process.Message) {
	w.mu.Lock()
	w.queue = append(w.queue, m)
	if m.Op == "invoke" && m.Seq == 0 {
		w.pending++
	}
	w.mu.Unlock()
	notify(w.more)
}

func (w *worker) run(handle func(process.Message)) {
	for {
		w.mu.Lock()
		q, done := w.queue, w.done
		w.queue = nil
		w.mu.Unlock()
		for _, m := range q {
			handle(m)
			if m.Op == "invoke" && m.Seq == 0 {
				w.mu.Lock()
				w.pending--
				close(w.written)
				w.written = make(chan struct{})
				w.mu.Unlock()
			}
		}
		if len(q) == 0 {
			if done {
				return
			}
			<-w.more
		}
	}
}

// caughtUp reports whether no invoke waits to be written, and if one
// does, a channel closed when one more is.
func (w *worker) caughtUp() (bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending == 0 || w.done, w.written
}

// barrier is the output barrier of slot's bootstrap (Child.SetOutputBarrier).
func (c *control) barrier(slot int) func() {
	c.mu.Lock()
	w := c.workerLocked(slot)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.catchUpLocked()
		c.mu.Unlock()
		ok, written := w.caughtUp()
		if ok {
			return
		}
		t := time.NewTimer(barrierLimit)
		defer t.Stop()
		for !ok {
			select {
			case <-written:
			case <-t.C:
				return
			}
			ok, written = w.caughtUp()
		}
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

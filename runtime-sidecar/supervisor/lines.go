package supervisor

import (
	"slices"
	"sync"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// The output lines of bootstraps and extensions go to the sidecar (for its
// Telemetry and Logs API subscribers) only while it asks for them: it
// sends "forward" when a subscriber wants function or extension records.
// Lines are batched and bounded: the copiers never wait for the socket;
// past maxPending, lines are dropped and counted.
const (
	// linesDelay is how long a batch waits for more lines.
	linesDelay = 5 * time.Millisecond
	// maxBatch is the text one "lines" message carries (the sidecar reads
	// messages of up to 4 MiB; JSON escapes a byte to at most 6).
	maxBatch = 256 << 10
	// maxPending bounds the lines waiting to be sent.
	maxPending = 2 << 20
)

// forwarder batches the lines of one connection to the sidecar.
type forwarder struct {
	send func(process.Message)
	// sendMu keeps batches in order: an invocation's end flushes while
	// the timer's flush may be sending.
	sendMu sync.Mutex

	mu      sync.Mutex
	lines   []process.Line
	size    int
	dropped int64

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newForwarder(send func(process.Message)) *forwarder {
	f := &forwarder{send: send, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

// set starts or stops forwarding the streams named in types.
func (f *forwarder) set(types []string) {
	process.ForwardLines(f.add, slices.Contains(types, "function"), slices.Contains(types, "extension"))
}

// add is the process.LineSink: called by the copiers, it never blocks on
// the socket.
func (f *forwarder) add(s process.Stream, t time.Time, line []byte) {
	f.mu.Lock()
	if f.size+len(line) > maxPending {
		f.dropped++
		f.mu.Unlock()
		return
	}
	first := len(f.lines) == 0
	f.lines = append(f.lines, process.Line{Stream: s.String(), Time: t.UnixNano(), Text: string(line)})
	f.size += len(line)
	full := f.size >= maxBatch
	f.mu.Unlock()
	if first || full {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

func (f *forwarder) run() {
	defer close(f.done)
	for {
		select {
		case <-f.kick:
		case <-f.quit:
			return
		}
		f.mu.Lock()
		full := f.size >= maxBatch
		f.mu.Unlock()
		if !full {
			select {
			case <-time.After(linesDelay):
			case <-f.quit:
				return
			}
		}
		f.flush()
	}
}

// flush sends what is pending, in messages of at most maxBatch bytes of
// text (a longer line alone).
func (f *forwarder) flush() {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	f.mu.Lock()
	lines, dropped := f.lines, f.dropped
	f.lines, f.size, f.dropped = nil, 0, 0
	f.mu.Unlock()
	for len(lines) > 0 || dropped > 0 {
		n, size := 0, 0
		for n < len(lines) && (n == 0 || size+len(lines[n].Text) <= maxBatch) {
			size += len(lines[n].Text)
			n++
		}
		f.send(process.Message{Op: "lines", Lines: lines[:n], Dropped: dropped})
		lines, dropped = lines[n:], 0
	}
}

// stop ends forwarding (the connection is gone).
func (f *forwarder) stop() {
	process.ForwardLines(nil, false, false)
	close(f.quit)
	<-f.done
}

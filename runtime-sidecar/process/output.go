package process

import (
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The bootstrap's stdout and stderr reach this process's own through
// pipes, copied as they arrive (chunk by chunk, byte for byte), so that
// the platform lines Lambda writes to a function's log stream (START, END,
// REPORT) can be written between them in order, and so that the output
// of one invocation can be kept for X-Amz-Log-Type: Tail.

// TailSize is how much of an invocation's log a Tail invocation gets back:
// its last 4 KB, as on Lambda.
const TailSize = 4096

// Report is what the END and REPORT lines of an invocation say.
type Report struct {
	RequestID string `json:"req"`
	// Duration from the dispatch (/next answered) to the end.
	Duration time.Duration `json:"dur"`
	// Init is the bootstrap's init (spawn to first /next) on the first
	// invocation after it; 0 on the others.
	Init time.Duration `json:"init,omitempty"`
	// Timeout marks an invocation that timed out (Duration is then the
	// function timeout): "Status: timeout".
	Timeout bool `json:"timeout,omitempty"`
	// ErrorType, when set, is the platform error that ended it
	// (Runtime.ExitError): "Status: error\tError Type: ...".
	ErrorType string `json:"errorType,omitempty"`
	// MemoryMB is the function's memory size (Memory Size).
	MemoryMB int `json:"mem,omitempty"`
}

// sink is one of this process's output streams, shared by every
// bootstrap it runs.
type sink struct {
	mu sync.Mutex
	f  *os.File
	// nl: the last byte written ended a line (or nothing was written).
	nl bool
}

func (s *sink) write(b []byte) {
	if len(b) == 0 {
		return
	}
	_, _ = s.f.Write(b)
	s.nl = b[len(b)-1] == '\n'
}

var (
	stdoutSink = &sink{f: os.Stdout, nl: true}
	stderrSink = &sink{f: os.Stderr, nl: true}
)

// output is the copy of one bootstrap's stdout and stderr.
type output struct {
	mu     sync.Mutex
	active atomic.Bool // between START and END (changed under mu)
	tail   []byte      // the current invocation's log since START (its end kept)
	// copied counts the bytes copied from each pipe, held those read and
	// not copied yet; drained is closed once both pipes hit EOF.
	copied  [2]atomic.Int64
	held    [2]atomic.Int64
	pipes   [2]*os.File
	fds     [2]int         // the pipes' descriptors, for FIONREAD
	closed  [2]atomic.Bool // set before a pipe is closed (its fd is then not ours)
	pending int
	drained chan struct{}
	pid     func() int
}

func newOutput(stdout, stderr *os.File, pid func() int) *output {
	o := &output{pipes: [2]*os.File{stdout, stderr}, drained: make(chan struct{}), pending: 2, pid: pid}
	for i, p := range o.pipes {
		o.fds[i] = -1
		if raw, err := p.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) { o.fds[i] = int(fd) })
		}
	}
	go o.copy(0, stdoutSink)
	go o.copy(1, stderrSink)
	return o
}

func (o *output) copy(i int, dst *sink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := o.pipes[i].Read(buf)
		if n > 0 {
			o.held[i].Store(int64(n))
			o.mu.Lock()
			dst.mu.Lock()
			dst.write(buf[:n])
			dst.mu.Unlock()
			if o.active.Load() {
				o.keep(buf[:n])
			}
			o.copied[i].Add(int64(n))
			o.held[i].Store(0)
			o.mu.Unlock()
		}
		if err != nil {
			if err != io.EOF {
				// Keep the child's writes from failing: drop what follows.
				_, _ = io.Copy(io.Discard, o.pipes[i])
			}
			o.closed[i].Store(true)
			o.pipes[i].Close()
			o.mu.Lock()
			o.pending--
			if o.pending == 0 {
				close(o.drained)
			}
			o.mu.Unlock()
			return
		}
	}
}

// keep appends b to the invocation's tail, keeping at least its last
// TailSize bytes; o.mu is held.
func (o *output) keep(b []byte) {
	if len(b) >= TailSize {
		o.tail = append(o.tail[:0], b[len(b)-TailSize:]...)
		return
	}
	if len(o.tail)+len(b) > 2*TailSize {
		n := copy(o.tail, o.tail[len(o.tail)-TailSize:])
		o.tail = o.tail[:n]
	}
	o.tail = append(o.tail, b...)
}

// platform writes a platform line to stdout, on a line of its own; o.mu
// is held.
func (o *output) platform(line []byte) {
	stdoutSink.mu.Lock()
	if !stdoutSink.nl {
		stdoutSink.write(newline)
	}
	stdoutSink.write(line)
	stdoutSink.mu.Unlock()
}

var newline = []byte{'\n'}

// catchUp waits (briefly) until whatever the bootstrap wrote to its pipes
// so far has been copied: what it printed before posting its response
// comes before END. FIONREAD says how much is waiting in each pipe.
func (o *output) catchUp() {
	var target [2]int64
	waiting := false
	for i := range o.pipes {
		target[i] = o.copied[i].Load()
		if h := o.held[i].Load(); h > 0 {
			target[i] += h
			waiting = true
		}
		if o.fds[i] < 0 || o.closed[i].Load() {
			continue
		}
		// The fd stays open while the copier reads it (it closes it only
		// after EOF, setting closed first); at worst a wait is cut short
		// by drained.
		var v int32
		n := 0
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(o.fds[i]), syscall.TIOCINQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			n = int(v)
		}
		if n > 0 {
			target[i] += int64(n)
			waiting = true
		}
	}
	if !waiting {
		return
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
		if o.copied[0].Load() >= target[0] && o.copied[1].Load() >= target[1] {
			return
		}
		select {
		case <-o.drained:
			return
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// start writes the START line and begins keeping the invocation's log.
func (o *output) start(requestID, version string) {
	var b [128]byte
	line := append(b[:0], "START RequestId: "...)
	line = append(line, requestID...)
	line = append(line, " Version: "...)
	line = append(line, version...)
	line = append(line, '\n')
	o.mu.Lock()
	o.platform(line)
	o.active.Store(true)
	o.tail = append(o.tail[:0], line...)
	o.mu.Unlock()
}

// end writes the END and REPORT lines after what the bootstrap printed so
// far and returns the invocation's last TailSize bytes of log when tail.
func (o *output) end(r Report, tail bool) []byte {
	o.catchUp()
	maxMB := maxMemoryMB(o.pid())
	var b [512]byte
	lines := appendReport(b[:0], r, maxMB)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.platform(lines)
	if !o.active.Load() {
		return nil
	}
	o.active.Store(false)
	if !tail {
		return nil
	}
	if n := len(o.tail); n > 0 && o.tail[n-1] != '\n' {
		o.keep(newline)
	}
	o.keep(lines)
	t := o.tail
	if len(t) > TailSize {
		t = t[len(t)-TailSize:]
	}
	return append([]byte(nil), t...)
}

// appendReport appends the END and REPORT lines, as Lambda prints them.
func appendReport(b []byte, r Report, maxMB int) []byte {
	b = append(b, "END RequestId: "...)
	b = append(b, r.RequestID...)
	b = append(b, "\nREPORT RequestId: "...)
	b = append(b, r.RequestID...)
	ms := float64(r.Duration) / float64(time.Millisecond)
	initMs := float64(r.Init) / float64(time.Millisecond)
	b = append(b, "\tDuration: "...)
	b = strconv.AppendFloat(b, ms, 'f', 2, 64)
	b = append(b, " ms\tBilled Duration: "...)
	// Billed: the invocation and, on a cold start, the init, rounded up
	// to the millisecond.
	b = strconv.AppendInt(b, int64(math.Ceil(ms+initMs)), 10)
	b = append(b, " ms\tMemory Size: "...)
	b = strconv.AppendInt(b, int64(r.MemoryMB), 10)
	b = append(b, " MB\tMax Memory Used: "...)
	b = strconv.AppendInt(b, int64(maxMB), 10)
	b = append(b, " MB\t"...)
	if r.Init > 0 {
		b = append(b, "Init Duration: "...)
		b = strconv.AppendFloat(b, initMs, 'f', 2, 64)
		b = append(b, " ms\t"...)
	}
	switch {
	case r.Timeout:
		b = append(b, "Status: timeout"...)
	case r.ErrorType != "":
		b = append(b, "Status: error\tError Type: "...)
		b = append(b, r.ErrorType...)
	}
	return append(b, '\n')
}

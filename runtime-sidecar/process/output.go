package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/lambdapod/lambdapod/runtime-sidecar/telemetry"
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
	// FunctionError is the errorType of an error the function reported
	// (or of its invalid response). The text REPORT does not show it, as
	// on Lambda; the JSON records' status does ("error").
	FunctionError string `json:"fnError,omitempty"`
}

// Status is the invocation's status and error type in the JSON records
// and the Telemetry API: success, timeout, or error.
func (r *Report) Status() (status, errorType string) {
	switch {
	case r.Timeout:
		return telemetry.StatusTimeout, "Sandbox.Timedout"
	case r.ErrorType != "":
		return telemetry.StatusError, r.ErrorType
	case r.FunctionError != "":
		return telemetry.StatusError, r.FunctionError
	}
	return telemetry.StatusSuccess, ""
}

// Record is the platform.report record of the invocation.
func (r *Report) Record(maxMB int) telemetry.Report {
	rec := telemetry.Report{RequestID: r.RequestID, Metrics: telemetry.ReportMetrics{
		DurationMs:       telemetry.Millis(r.Duration),
		BilledDurationMs: billedMs(r),
		MemorySizeMB:     r.MemoryMB,
		MaxMemoryUsedMB:  maxMB,
	}}
	if r.Init > 0 {
		rec.Metrics.InitDurationMs = telemetry.Millis(r.Init)
	}
	rec.Status, rec.ErrorType = r.Status()
	return rec
}

// RuntimeDone is the platform.runtimeDone record of the invocation.
func (r *Report) RuntimeDone() telemetry.RuntimeDone {
	rec := telemetry.RuntimeDone{RequestID: r.RequestID, Metrics: &telemetry.RuntimeDoneMetrics{DurationMs: telemetry.Millis(r.Duration)}}
	rec.Status, rec.ErrorType = r.Status()
	return rec
}

// billedMs is Billed Duration: the invocation and, on a cold start, the
// init, rounded up to the millisecond.
func billedMs(r *Report) int64 {
	ms := float64(r.Duration) / float64(time.Millisecond)
	initMs := float64(r.Init) / float64(time.Millisecond)
	return int64(math.Ceil(ms + initMs))
}

// LogFormat is how the platform lines are written: Lambda's text lines
// (START, END, REPORT), or with JSON its platform.* records, those at or
// above the system log level. With JSON, App is the application log
// level: the function's lines below it are dropped.
type LogFormat struct {
	JSON  bool
	Level telemetry.Level
	App   AppLevel
}

// AppLevel is an application log level, TRACE (the zero value, which
// drops nothing) to FATAL.
type AppLevel int8

// appLevels are the application log levels, least first.
var appLevels = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// levelInfo is Lambda's application log level when none is set, and the
// level of a line that names none.
const levelInfo AppLevel = 2

// parseAppLevel reads TRACE ... FATAL in any case; "" is INFO.
func parseAppLevel(s string) (AppLevel, bool) {
	if s == "" {
		return levelInfo, true
	}
	for i, l := range appLevels {
		if strings.EqualFold(s, l) {
			return AppLevel(i), true
		}
	}
	return levelInfo, false
}

// filters reports whether the function's lines are filtered by level.
func (f LogFormat) filters() bool { return f.JSON && f.App > 0 }

// logFormat is set once, before any bootstrap starts.
var logFormat LogFormat

// SetLogFormat sets the format of the platform lines of the bootstraps
// started afterwards.
func SetLogFormat(f LogFormat) { logFormat = f }

// ParseLogFormat reads Lambda's log format (AWS_LAMBDA_LOG_FORMAT: Text or
// JSON, any case, "" for Text), system log level (DEBUG, INFO, WARN, ""
// for INFO) and application log level (AWS_LAMBDA_LOG_LEVEL: TRACE ...
// FATAL, "" for INFO; JSON only, as on Lambda).
func ParseLogFormat(format, systemLevel, appLevel string) (LogFormat, error) {
	var f LogFormat
	switch strings.ToUpper(format) {
	case "", "TEXT":
	case "JSON":
		f.JSON = true
	default:
		return f, fmt.Errorf("invalid log format %q: want Text or JSON", format)
	}
	lvl, ok := telemetry.ParseLevel(systemLevel)
	if !ok {
		return f, fmt.Errorf("invalid system log level %q: want DEBUG, INFO or WARN", systemLevel)
	}
	f.Level = lvl
	if f.JSON {
		app, ok := parseAppLevel(appLevel)
		if !ok {
			return f, fmt.Errorf("invalid application log level %q: want TRACE, DEBUG, INFO, WARN, ERROR or FATAL", appLevel)
		}
		f.App = app
	}
	return f, nil
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
	// not copied yet; drained is closed once both pipes hit EOF. readMu
	// makes a read from a pipe and its held count one step for catchUp.
	copied  [2]atomic.Int64
	held    [2]atomic.Int64
	readMu  sync.Mutex
	pipes   [2]*os.File
	raws    [2]syscall.RawConn // the pipes', for reads under readMu (nil: plain reads)
	fds     [2]int             // the pipes' descriptors, for FIONREAD
	closed  [2]atomic.Bool     // set before a pipe is closed (its fd is then not ours)
	pending int
	drained chan struct{}
	pid     func() int
	// stream is whose output this is, for the Telemetry API; partial
	// holds each pipe's unfinished line while lines are forwarded (each
	// only touched by its pipe's copier).
	stream  Stream
	partial [2][]byte
	// With an application log level (JSON), levelled holds each pipe's
	// unfinished line until it can be judged, and passed is the scratch
	// of what a read lets through (each touched under mu).
	levelled [2][]byte
	passed   [2][]byte
	// barrier, if set, runs before each read is written out (not under mu:
	// what it waits for may take mu).
	barrier atomic.Pointer[func()]
}

func newOutput(stdout, stderr *os.File, pid func() int, stream Stream) *output {
	o := &output{pipes: [2]*os.File{stdout, stderr}, drained: make(chan struct{}), pending: 2, pid: pid, stream: stream}
	for i, p := range o.pipes {
		o.fds[i] = -1
		if raw, err := p.SyscallConn(); err == nil {
			o.raws[i] = raw
			_ = raw.Control(func(fd uintptr) { o.fds[i] = int(fd) })
		}
	}
	go o.copy(0, stdoutSink)
	go o.copy(1, stderrSink)
	return o
}

// read reads pipe i into buf and counts what it read as held, in one
// step under readMu (the wait for something to read is outside it), so
// that catchUp sees every byte either in the pipe or held.
func (o *output) read(i int, buf []byte) (int, error) {
	raw := o.raws[i]
	if raw == nil {
		n, err := o.pipes[i].Read(buf)
		o.held[i].Store(int64(max(n, 0)))
		return n, err
	}
	n := 0
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		o.readMu.Lock()
		defer o.readMu.Unlock()
		n, rerr = syscall.Read(int(fd), buf)
		if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
			return false // wait until readable
		}
		if n > 0 {
			o.held[i].Store(int64(n))
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (o *output) copy(i int, dst *sink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := o.read(i, buf)
		if n > 0 {
			if b := o.barrier.Load(); b != nil {
				(*b)()
			}
			o.mu.Lock()
			b := buf[:n]
			if o.stream == StreamFunction && logFormat.filters() {
				b = o.filterLevel(i, b, false)
			}
			o.write(i, dst, b)
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
			if len(o.levelled[i]) > 0 {
				o.write(i, dst, o.filterLevel(i, nil, true))
			}
			if len(o.partial[i]) > 0 && lineStreams.Load()&(1<<o.stream) != 0 {
				o.lines(i, nil, true)
			}
			o.pending--
			if o.pending == 0 {
				close(o.drained)
			}
			o.mu.Unlock()
			return
		}
	}
}

// write passes what pipe i let through to dst, the invocation's tail and
// the line forwarding; o.mu is held.
func (o *output) write(i int, dst *sink, b []byte) {
	if len(b) > 0 {
		dst.mu.Lock()
		dst.write(b)
		dst.mu.Unlock()
		if o.active.Load() {
			o.keep(b)
		}
	}
	if lineStreams.Load()&(1<<o.stream) != 0 {
		// Before copied moves: an invocation's END waits for its lines.
		o.lines(i, b, false)
	} else if o.partial[i] != nil {
		o.partial[i] = nil
	}
}

// filterLevel is Lambda's application log-level filtering for runtimes
// that do not do it themselves: a line that is a JSON object with a
// "level" below the application log level is dropped; any other line
// counts as INFO. It returns the whole lines of b that pass, keeping an
// unfinished one for the next read (at flush, judging it as it is); a
// line longer than MaxLine passes unjudged. o.mu is held.
func (o *output) filterLevel(i int, b []byte, flush bool) []byte {
	out := o.passed[i][:0]
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			o.levelled[i] = append(o.levelled[i], b...)
			if len(o.levelled[i]) > MaxLine {
				out = append(out, o.levelled[i]...)
				o.levelled[i] = o.levelled[i][:0]
			}
			break
		}
		line := b[:j+1]
		b = b[j+1:]
		if len(o.levelled[i]) > 0 {
			o.levelled[i] = append(o.levelled[i], line...)
			line = o.levelled[i]
		}
		if lineLevel(line) >= logFormat.App {
			out = append(out, line...)
		}
		o.levelled[i] = o.levelled[i][:0]
	}
	if flush && len(o.levelled[i]) > 0 {
		if lineLevel(o.levelled[i]) >= logFormat.App {
			out = append(out, o.levelled[i]...)
		}
		o.levelled[i] = o.levelled[i][:0]
	}
	o.passed[i] = out
	return out
}

// lineLevel is the level a function's log line is at: its "level" if it
// is a JSON object naming a valid one, else INFO.
func lineLevel(line []byte) AppLevel {
	t := bytes.TrimSpace(line)
	if len(t) < 2 || t[0] != '{' {
		return levelInfo
	}
	var v struct {
		Level string `json:"level"`
	}
	if json.Unmarshal(t, &v) != nil {
		return levelInfo
	}
	l, _ := parseAppLevel(v.Level)
	return l
}

// Stream is whose output a child's is, for the Telemetry API's function
// and extension log records.
type Stream uint8

// Streams.
const (
	StreamFunction Stream = iota
	StreamExtension
)

// String is the stream's Telemetry API category.
func (s Stream) String() string {
	if s == StreamExtension {
		return "extension"
	}
	return "function"
}

// LineSink takes the output lines of children (without the newline; line
// is only valid during the call). It must not block.
type LineSink func(stream Stream, t time.Time, line []byte)

var (
	lineSink atomic.Pointer[LineSink]
	// lineStreams has bit 1<<Stream set for the streams whose lines go to
	// lineSink: while it is 0 the output is copied as before, with no
	// line splitting at all.
	lineStreams atomic.Uint32
)

// MaxLine is the longest line forwarded whole; a longer one is cut into
// records of MaxLine bytes.
const MaxLine = 256 << 10

// ForwardLines sends the output lines of bootstraps (function) and of
// extensions to sink, each stream while it is wanted; with neither, no
// line is collected.
func ForwardLines(sink LineSink, function, extension bool) {
	var m uint32
	if function {
		m |= 1 << StreamFunction
	}
	if extension {
		m |= 1 << StreamExtension
	}
	if sink == nil {
		m = 0
	} else {
		lineSink.Store(&sink)
	}
	lineStreams.Store(m)
}

// lines splits what pipe i read into lines for the sink, keeping an
// unfinished one for the next read (or, at eof, sending it).
func (o *output) lines(i int, b []byte, eof bool) {
	sink := lineSink.Load()
	if sink == nil {
		return
	}
	now := time.Now()
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			if len(o.partial[i])+len(b) <= MaxLine {
				o.partial[i] = append(o.partial[i], b...)
				break
			}
			j = MaxLine - len(o.partial[i])
			o.partial[i] = append(o.partial[i], b[:j]...)
			(*sink)(o.stream, now, o.partial[i])
			o.partial[i] = o.partial[i][:0]
			b = b[j:]
			continue
		}
		line := b[:j]
		b = b[j+1:]
		if len(o.partial[i]) > 0 {
			o.partial[i] = append(o.partial[i], line...)
			line = o.partial[i]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		for len(line) > MaxLine {
			(*sink)(o.stream, now, line[:MaxLine])
			line = line[MaxLine:]
		}
		(*sink)(o.stream, now, line)
		o.partial[i] = o.partial[i][:0]
	}
	if eof && len(o.partial[i]) > 0 {
		(*sink)(o.stream, now, o.partial[i])
		o.partial[i] = o.partial[i][:0]
	}
	if cap(o.partial[i]) > 64<<10 && len(o.partial[i]) == 0 {
		o.partial[i] = nil
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
	o.readMu.Lock()
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
	o.readMu.Unlock()
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
	if logFormat.JSON {
		o.startJSON(requestID, version)
		return
	}
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
// far and returns the invocation's last TailSize bytes of log when tail,
// and Max Memory Used.
func (o *output) end(r Report, tail bool) ([]byte, int) {
	o.catchUp()
	maxMB := maxMemoryMB(o.pid())
	var b [512]byte
	var lines []byte
	if logFormat.JSON {
		lines = appendJSONEnd(b[:0], &r, maxMB, time.Now())
	} else {
		lines = appendReport(b[:0], r, maxMB)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, dst := range [2]*sink{stdoutSink, stderrSink} {
		// A line the function left unfinished when it answered is
		// judged now, as it is: it belongs to this invocation.
		if len(o.levelled[i]) > 0 {
			o.write(i, dst, o.filterLevel(i, nil, true))
		}
	}
	if len(lines) > 0 {
		o.platform(lines)
	}
	if !o.active.Load() {
		return nil, maxMB
	}
	o.active.Store(false)
	if !tail {
		return nil, maxMB
	}
	if n := len(o.tail); n > 0 && o.tail[n-1] != '\n' {
		o.keep(newline)
	}
	o.keep(lines)
	t := o.tail
	if len(t) > TailSize {
		t = t[len(t)-TailSize:]
	}
	return append([]byte(nil), t...), maxMB
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
	b = strconv.AppendInt(b, billedMs(&r), 10)
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

// startJSON is start in JSON format: a platform.start record (INFO).
func (o *output) startJSON(requestID, version string) {
	var line []byte
	if logFormat.Level <= telemetry.LevelOf(telemetry.TypeStart) {
		ev := telemetry.Event{Time: time.Now(), Type: telemetry.TypeStart, Record: telemetry.Start{RequestID: requestID, Version: version}}
		line = append(ev.Encode(), '\n')
	}
	o.mu.Lock()
	if line != nil {
		o.platform(line)
	}
	o.active.Store(true)
	o.tail = append(o.tail[:0], line...)
	o.mu.Unlock()
}

// appendJSONEnd appends the JSON records that end an invocation, those
// the system log level lets through: platform.runtimeDone (DEBUG) and
// platform.report (INFO).
func appendJSONEnd(b []byte, r *Report, maxMB int, now time.Time) []byte {
	if logFormat.Level <= telemetry.LevelOf(telemetry.TypeRuntimeDone) {
		b = append(b, telemetry.Event{Time: now, Type: telemetry.TypeRuntimeDone, Record: r.RuntimeDone()}.Encode()...)
		b = append(b, '\n')
	}
	if logFormat.Level <= telemetry.LevelOf(telemetry.TypeReport) {
		b = append(b, telemetry.Event{Time: now, Type: telemetry.TypeReport, Record: r.Record(maxMB)}.Encode()...)
		b = append(b, '\n')
	}
	return b
}

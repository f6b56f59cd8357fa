// Package invocation holds one Lambda invocation as it travels from the
// invoke side of the runtime sidecar to a bootstrap and back, the bounded
// FIFO queue invocations wait in, and the error documents Lambda answers
// with when an invocation fails outside the function's control.
//
// # Life of an invocation
//
// Several parties race to move an invocation: its caller (going away), a
// bootstrap slot (/next, /response, /error, its exit), the function timeout
// and the drain. Each move is a compare-and-swap from the state the mover
// expects, so exactly one of them wins and the others see false. The
// allowed moves are the table transitions; the methods name them:
//
//	                 New
//	                  |
//	                  v          CompleteQueued (init error served during
//	Canceled <---- Queued ---------------------------------------------+
//	        Cancel  |  ^         the back-off, or drain)               |
//	       (caller  |  |                                               |
//	        gone)   |  | Undispatch (the slot's bootstrap changed      |
//	       Dispatch |  | before the hand-over: requeued)               |
//	        (/next) v  |                                               v
//	             Dispatched --------------------------------------->  Done
//	                  |      Complete (/response, /error, a bad        ^
//	                  |      response, timeout, bootstrap exit)        |
//	      StartStream |                                                |
//	      (streamed   v                                                |
//	      /response) Streaming ----------------------------------------+
//	                         EndStream (stream finished),
//	                         TimeoutStream (timeout)
//
// Done and Canceled are final. OnEnd runs once, on the move into either.
package invocation

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// State is where an invocation is in its life.
type State int32

const (
	// Queued: accepted, waiting for a bootstrap to call /next.
	Queued State = iota
	// Dispatched: handed to a bootstrap by /next; no response yet.
	Dispatched
	// Streaming: the bootstrap is streaming its response to the caller.
	Streaming
	// Done: answered (success, error, timeout, exit ...).
	Done
	// Canceled: the caller went away before a bootstrap took it.
	Canceled
)

// transitions is the state machine drawn in the package doc: for each
// state, the states an invocation may move to from it. The callers race
// only between these moves, so anything else is a bug, not a race.
var transitions = [...][]State{
	Queued:     {Dispatched, Canceled, Done},
	Dispatched: {Queued, Streaming, Done},
	Streaming:  {Done},
	Done:       nil,
	Canceled:   nil,
}

var stateNames = [...]string{Queued: "Queued", Dispatched: "Dispatched", Streaming: "Streaming", Done: "Done", Canceled: "Canceled"}

// String returns the state's name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

func allowed(from, to State) bool {
	return from >= 0 && int(from) < len(transitions) && slices.Contains(transitions[from], to)
}

// transition moves inv from from to to, if it is still in from. False means
// another party moved it first, which every caller must expect; a move the
// table lacks is a bug in this package, so it panics rather than corrupt
// the state.
func (inv *Invocation) transition(from, to State) bool {
	if !allowed(from, to) {
		panic("invocation: transition from " + from.String() + " to " + to.String() + " is not allowed")
	}
	return inv.state.CompareAndSwap(int32(from), int32(to))
}

// Outcome labels how an invocation ended (a metrics label value).
type Outcome string

// Outcomes.
const (
	OutcomeSuccess          Outcome = "success"
	OutcomeFunctionError    Outcome = "function_error"
	OutcomeTimeout          Outcome = "timeout"
	OutcomeRuntimeExit      Outcome = "runtime_exit"
	OutcomeInitError        Outcome = "init_error"
	OutcomeResponseTooLarge Outcome = "response_too_large"
	OutcomeInvalidResponse  Outcome = "invalid_response"
	OutcomeCanceled         Outcome = "canceled"
	OutcomeShutdown         Outcome = "shutdown"
)

// Outcomes lists every outcome, for pre-creating metric series.
var Outcomes = []Outcome{OutcomeSuccess, OutcomeFunctionError, OutcomeTimeout, OutcomeRuntimeExit,
	OutcomeInitError, OutcomeResponseTooLarge, OutcomeInvalidResponse, OutcomeCanceled, OutcomeShutdown}

// Result is what the caller of a RequestResponse invocation gets.
type Result struct {
	// Body is the buffered response or error document.
	Body []byte
	// ContentType of Body.
	ContentType string
	// FunctionError marks the result as a function failure
	// (X-Amz-Function-Error: Unhandled).
	FunctionError bool
	// Outcome of the invocation.
	Outcome Outcome
	// Stream, when set, replaces Body: the bootstrap streams its response.
	Stream *Stream
	// Unavailable marks an invocation that never reached a bootstrap
	// (sidecar shutting down); the invoke side answers with a service error.
	Unavailable bool
	// LogResult is the invocation's log tail (X-Amz-Log-Result, base64),
	// when its caller asked for it.
	LogResult string

	buf *bytes.Buffer
}

// Release returns the result's buffer to the pool. Call it once the body
// has been written.
func (r *Result) Release() {
	if r.buf != nil {
		PutBuffer(r.buf)
		r.buf = nil
		r.Body = nil
	}
}

// NewBufferedResult wraps a pooled buffer as a result; Release returns it.
func NewBufferedResult(buf *bytes.Buffer, contentType string, functionError bool, outcome Outcome) *Result {
	return &Result{Body: buf.Bytes(), ContentType: contentType, FunctionError: functionError, Outcome: outcome, buf: buf}
}

// Stream is a response the bootstrap streams
// (Lambda-Runtime-Function-Response-Mode: streaming). The invoke side copies
// Body to its caller as it arrives, reads Trailer once Body is exhausted and
// then closes Done; the Runtime API side waits for Done before answering the
// bootstrap.
type Stream struct {
	ContentType string
	Body        io.Reader
	// Trailer is the bootstrap request's trailer; valid after Body hit EOF.
	Trailer http.Header
	// Done is closed by the invoke side when it has finished with Body.
	Done chan struct{}
	// Err is the copy error seen by the invoke side (set before Done closes).
	Err error
}

// ErrStreamTooLarge is a Stream's Err when the invoke side stopped reading
// its body at the streamed response limit (invokeapi.MaxStreamedResponse).
var ErrStreamTooLarge = errors.New("the streamed response exceeds its limit")

// Invocation is one invoke of the function.
type Invocation struct {
	ID              string
	Payload         []byte
	ContentType     string
	ClientContext   string // JSON, already base64-decoded; "" when absent
	CognitoIdentity string // JSON; "" when absent
	TraceID         string
	FunctionARN     string
	Event           bool // X-Amz-Invocation-Type: Event: nobody waits for the result
	LogTail         bool // X-Amz-Log-Type: Tail: the result carries the log tail
	Accepted        time.Time
	// ResponseStream: the caller called InvokeWithResponseStream, so the
	// bootstrap's /response is passed to it as it arrives, whether or not
	// the bootstrap says it streams (aws-lambda-go posts an io.Reader
	// result chunked, without the response-mode header).
	ResponseStream bool

	// OnEnd is called exactly once when the invocation ends for good.
	OnEnd func(inv *Invocation, outcome Outcome)

	// Dispatch time, set by the Runtime API when a bootstrap takes it.
	StartTime time.Time
	// OnFinish, set by the Runtime API when a bootstrap takes it, runs
	// once when a dispatched invocation ends, before its result is
	// delivered (r is nil for a streamed response): the END and REPORT
	// lines, and the log tail in r.LogResult.
	OnFinish func(inv *Invocation, outcome Outcome, r *Result)

	state   atomic.Int32
	ended   atomic.Bool
	result  chan *Result
	timerMu sync.Mutex
	timer   *time.Timer
	payBuf  *bytes.Buffer
}

// New returns a queued invocation with request id id (a fresh one when
// empty). payload is a pooled buffer owned by the invocation from now on.
func New(payload *bytes.Buffer, id string) *Invocation {
	if id == "" {
		id = invokeapi.NewRequestID()
	}
	inv := &Invocation{ID: id, result: make(chan *Result, 1), payBuf: payload, Accepted: time.Now()}
	if payload != nil {
		inv.Payload = payload.Bytes()
	}
	return inv
}

// State returns the current state.
func (inv *Invocation) State() State { return State(inv.state.Load()) }

// Result delivers the result of a RequestResponse invocation (once).
func (inv *Invocation) Result() <-chan *Result { return inv.result }

// Dispatch moves a queued invocation to a bootstrap. It fails if the caller
// canceled it meanwhile.
func (inv *Invocation) Dispatch() bool {
	return inv.transition(Queued, Dispatched)
}

// Undispatch puts a dispatched invocation back (it could not be handed over).
func (inv *Invocation) Undispatch() bool {
	return inv.transition(Dispatched, Queued)
}

// Cancel drops a still-queued invocation whose caller went away.
func (inv *Invocation) Cancel() bool {
	if inv.transition(Queued, Canceled) {
		inv.end(OutcomeCanceled)
		return true
	}
	return false
}

// SetTimer arms the function timeout when a bootstrap takes the
// invocation; f runs when it fires.
func (inv *Invocation) SetTimer(d time.Duration, f func()) {
	inv.timerMu.Lock()
	inv.timer = time.AfterFunc(d, f)
	inv.timerMu.Unlock()
}

func (inv *Invocation) stopTimer() {
	inv.timerMu.Lock()
	if inv.timer != nil {
		inv.timer.Stop()
	}
	inv.timerMu.Unlock()
}

// Complete answers a dispatched invocation. It returns false (and releases
// r) if the invocation was already answered, e.g. because it timed out.
func (inv *Invocation) Complete(r *Result) bool {
	return inv.completeFrom(Dispatched, r)
}

// CompleteQueued answers an invocation that never reached a bootstrap (an
// init error served from the cache, or a shutdown).
func (inv *Invocation) CompleteQueued(r *Result) bool {
	return inv.completeFrom(Queued, r)
}

func (inv *Invocation) completeFrom(from State, r *Result) bool {
	if !inv.transition(from, Done) {
		r.Release()
		return false
	}
	inv.stopTimer()
	if inv.OnFinish != nil {
		inv.OnFinish(inv, r.Outcome, r)
	}
	// Ended before the caller has its answer: a caller that sends the next
	// invocation as soon as it has this one's answer (the activator, to a
	// pod it thinks has a free slot) must find the slot free, not busy.
	inv.end(r.Outcome)
	inv.deliver(r)
	return true
}

func (inv *Invocation) deliver(r *Result) {
	if inv.Event {
		r.Release()
		return
	}
	inv.result <- r
}

// StartStream hands a streamed response to the caller. The invocation ends
// with EndStream.
func (inv *Invocation) StartStream(s *Stream) bool {
	if !inv.transition(Dispatched, Streaming) {
		return false
	}
	if inv.Event {
		// Nobody reads it: drain here.
		go func() {
			_, s.Err = io.Copy(io.Discard, s.Body)
			close(s.Done)
		}()
		return true
	}
	inv.result <- &Result{Stream: s, ContentType: s.ContentType, Outcome: OutcomeSuccess}
	return true
}

// EndStream ends a streaming invocation. It returns false if the stream was
// cut by a timeout (TimeoutStream) first.
func (inv *Invocation) EndStream(outcome Outcome) bool {
	if !inv.transition(Streaming, Done) {
		return false
	}
	inv.stopTimer()
	if inv.OnFinish != nil {
		inv.OnFinish(inv, outcome, nil)
	}
	inv.end(outcome)
	return true
}

// TimeoutStream marks a streaming invocation as timed out.
func (inv *Invocation) TimeoutStream() bool {
	if !inv.transition(Streaming, Done) {
		return false
	}
	if inv.OnFinish != nil {
		inv.OnFinish(inv, OutcomeTimeout, nil)
	}
	inv.end(OutcomeTimeout)
	return true
}

func (inv *Invocation) end(o Outcome) {
	if !inv.ended.CompareAndSwap(false, true) {
		return
	}
	if inv.OnEnd != nil {
		inv.OnEnd(inv, o)
	}
	if inv.payBuf != nil {
		PutBuffer(inv.payBuf)
		inv.payBuf = nil
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// GetBuffer returns an empty pooled buffer.
func GetBuffer() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

// PutBuffer returns a buffer to the pool; big buffers are dropped so a few
// 6 MB payloads don't pin memory.
func PutBuffer(b *bytes.Buffer) {
	if b.Cap() > 256<<10 {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

// NewTraceID returns an X-Ray trace header for an invocation that arrived
// without one, as Lambda generates: Root=1-<epoch hex>-<96-bit random>;Sampled=0.
func NewTraceID(now time.Time) string {
	var r [12]byte
	_, _ = rand.Read(r[:])
	var b [64]byte
	out := append(b[:0], "Root=1-"...)
	out = appendHex32(out, uint32(now.Unix()))
	out = append(out, '-')
	out = hex.AppendEncode(out, r[:])
	out = append(out, ";Sampled=0"...)
	return string(out)
}

func appendHex32(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		b = append(b, digits[(v>>uint(i))&0xf])
	}
	return b
}

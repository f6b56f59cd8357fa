// Package extensions is the Lambda Extensions API of the runtime sidecar
// (/2020-01-01/extension/...): the registry of the extensions of a pod's
// execution environment, their states and the events they are sent.
//
// External extensions are the executables of the extensions directory; the
// sidecar starts them (see runtimeapi) and each registers under its file
// name. Any other name registers an internal extension, one that lives in
// a runtime process (aws-lambda-go's GoLangEnableSIGTERM): it belongs to
// the slot whose Runtime API it called and goes away with that bootstrap.
//
// States and refusals follow the runtime interface emulator, whose names
// extensions see in InvalidExtensionState messages:
//
//	Started --register--> Registered --next--> Ready --event--> Running --next--> Ready
//	Registered --init/error--> InitError
//	Registered, Ready, Running --exit/error--> ExitError
//	(process exit) --> Exited
package extensions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Event types an extension registers for.
const (
	Invoke   = "INVOKE"
	Shutdown = "SHUTDOWN"
)

// Shutdown reasons.
const (
	ReasonSpindown = "spindown"
	ReasonTimeout  = "timeout"
	ReasonFailure  = "failure"
)

// Lambda's fatal error types for extensions (the errorType callers see).
const (
	ErrorInit   = "Extension.InitError"
	ErrorExit   = "Extension.ExitError"
	ErrorCrash  = "Extension.Crash"
	ErrorLaunch = "Extension.LaunchError"
)

type state int

const (
	stStarted state = iota
	stRegistered
	stReady
	stRunning
	stInitError
	stExitError
	stExited
)

var stateNames = [...]string{"Started", "Registered", "Ready", "Running", "InitError", "ExitError", "Exited"}

// Info describes a registered extension, for the Telemetry and Logs APIs.
type Info struct {
	ID       string
	Name     string
	External bool
	// Slot is the bootstrap slot an internal extension registered through
	// (-1 for an external one).
	Slot   int
	Events []string
}

// Failure is a fatal error of the environment's extensions: what the
// callers of the invocations it fails get.
type Failure struct {
	Extension string
	Type      string // ErrorInit, ErrorExit, ErrorCrash, ErrorLaunch
	Message   string
}

func (f *Failure) Error() string { return f.Type + ": " + f.Message }

// Function is what /register answers.
type Function struct {
	Name, Version, Handler, AccountID string
}

// Config configures a Registry.
type Config struct {
	Function Function
	Log      *slog.Logger
	// OnFailure is called (without locks held) when an extension posts
	// /init/error or /exit/error.
	OnFailure func(Failure)
}

// Registry is the set of extensions of the environment, shared by all
// slots.
type Registry struct {
	cfg Config

	mu       sync.Mutex
	byID     map[string]*ext
	external map[string]*ext // launched, by name
	internal map[int]map[string]*ext
	changed  chan struct{} // closed and replaced at every change waiters look at
}

type ext struct {
	Info
	state    state
	invoke   bool
	shutdown bool
	everNext bool
	waiting  bool     // a /next is held
	queue    []*event // not yet handed over
	current  *event   // handed over, not yet followed by a /next
	wake     chan struct{}
	errType  string // from /init/error or /exit/error
}

type event struct {
	body []byte
	done chan struct{} // closed at the extension's next /next (or when it is gone)
}

func (e *event) finish() {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
}

// New returns an empty registry.
func New(cfg Config) *Registry {
	return &Registry{cfg: cfg, byID: map[string]*ext{}, external: map[string]*ext{},
		internal: map[int]map[string]*ext{}, changed: make(chan struct{})}
}

// broadcast wakes the waiters of changes; r.mu must be held.
func (r *Registry) broadcast() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Lookup resolves an extension identifier.
func (r *Registry) Lookup(id string) (Info, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	if !ok || e.state == stStarted {
		return Info{}, false
	}
	return e.Info, true
}

// Registered lists the registered extensions, by name (for the Telemetry
// API's platform.extension).
func (r *Registry) Registered() []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Info
	for _, e := range r.byID {
		if e.state != stStarted && e.state != stExited {
			out = append(out, e.Info)
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Launch replaces the external extensions with names, not yet registered:
// the sidecar is about to start them.
func (r *Registry) Launch(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropExternalLocked()
	for _, n := range names {
		e := &ext{Info: Info{ID: uuid.NewString(), Name: n, External: true, Slot: -1}, wake: make(chan struct{}, 1)}
		r.external[n] = e
		r.byID[e.ID] = e
	}
	r.broadcast()
}

// DropExternal forgets the external extensions (they were stopped).
func (r *Registry) DropExternal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropExternalLocked()
	r.broadcast()
}

func (r *Registry) dropExternalLocked() {
	for n, e := range r.external {
		r.goneLocked(e)
		delete(r.external, n)
	}
}

// DropSlot forgets the internal extensions of slot's bootstrap (it was
// replaced).
func (r *Registry) DropSlot(slot int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.internal[slot] {
		r.goneLocked(e)
	}
	delete(r.internal, slot)
	r.broadcast()
}

// goneLocked releases everything that waits for e.
func (r *Registry) goneLocked(e *ext) {
	delete(r.byID, e.ID)
	e.state = stExited
	if e.current != nil {
		e.current.finish()
		e.current = nil
	}
	for _, ev := range e.queue {
		ev.finish()
	}
	e.queue = nil
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// ExitFailure is the failure the exit of the external extension name
// stands for while the environment lives: Extension.Crash, or
// Extension.ExitError after /exit/error, Extension.InitError after
// /init/error.
func (r *Registry) ExitFailure(name, desc string) Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := Failure{Extension: name, Type: ErrorCrash, Message: fmt.Sprintf("extension %s exited: %s", name, desc)}
	if e := r.external[name]; e != nil {
		switch e.state {
		case stExitError:
			f.Type = ErrorExit
		case stInitError:
			f.Type = ErrorInit
		}
	}
	return f
}

// Exited forgets the external extension name, which exited; what waited
// for it goes on.
func (r *Registry) Exited(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.external[name]; e != nil {
		r.goneLocked(e)
		delete(r.external, name)
		r.broadcast()
	}
}

// WaitRegistered waits until every launched external extension has
// registered. It fails with the first one that exited, or when ctx ends.
func (r *Registry) WaitRegistered(ctx context.Context) (pending []string, err error) {
	for {
		r.mu.Lock()
		pending = pending[:0]
		for n, e := range r.external {
			switch e.state {
			case stStarted:
				pending = append(pending, n)
			case stExited:
				// not reached: gone ones leave the map
			}
		}
		ch := r.changed
		r.mu.Unlock()
		if len(pending) == 0 {
			return nil, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return pending, ctx.Err()
		}
	}
}

// WaitInit waits until every registered extension that slot's bootstrap
// depends on (the external ones and its own internal ones) has called
// /next once: Lambda's Init phase ends then. When ctx ends first it
// returns the names of those that have not.
func (r *Registry) WaitInit(ctx context.Context, slot int) (late []string) {
	for {
		late = late[:0]
		r.mu.Lock()
		for _, e := range r.external {
			if e.state != stStarted && !e.everNext {
				late = append(late, e.Name)
			}
		}
		for _, e := range r.internal[slot] {
			if !e.everNext {
				late = append(late, e.Name)
			}
		}
		ch := r.changed
		r.mu.Unlock()
		if len(late) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return late
		}
	}
}

// InvokeEvent is the INVOKE event, field for field the emulator's model.
type InvokeEvent struct {
	EventType          string   `json:"eventType"`
	DeadlineMs         int64    `json:"deadlineMs"`
	RequestID          string   `json:"requestId"`
	InvokedFunctionArn string   `json:"invokedFunctionArn"`
	Tracing            *Tracing `json:"tracing,omitempty"`
}

// Tracing is the X-Ray trace of an INVOKE event.
type Tracing struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ShutdownEvent is the SHUTDOWN event.
type ShutdownEvent struct {
	EventType      string `json:"eventType"`
	DeadlineMs     int64  `json:"deadlineMs"`
	ShutdownReason string `json:"shutdownReason"`
}

// Invoke sends the INVOKE event of an invocation running in slot to every
// extension registered for it (the external ones and slot's internal
// ones). Each returned channel closes when that extension has called /next
// after the event: the Invoke phase ends then.
func (r *Registry) Invoke(slot int, requestID, arn, traceID string, deadline time.Time) []<-chan struct{} {
	r.mu.Lock()
	none := len(r.external) == 0 && len(r.internal[slot]) == 0
	r.mu.Unlock()
	if none {
		// Most functions have none: nothing to build on their hot path.
		return nil
	}
	ev := InvokeEvent{EventType: Invoke, DeadlineMs: deadline.UnixMilli(), RequestID: requestID, InvokedFunctionArn: arn}
	if traceID != "" {
		ev.Tracing = &Tracing{Type: "X-Amzn-Trace-Id", Value: traceID}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var body []byte
	var dones []<-chan struct{}
	send := func(e *ext) {
		if !e.invoke || e.state == stExited || e.state == stStarted {
			return
		}
		if body == nil {
			body, _ = json.Marshal(ev)
		}
		dones = append(dones, r.queueLocked(e, body))
	}
	for _, e := range r.external {
		send(e)
	}
	for _, e := range r.internal[slot] {
		send(e)
	}
	return dones
}

// Shutdown sends SHUTDOWN to the external extensions registered for it
// and returns the names of those it was sent to.
func (r *Registry) Shutdown(reason string, deadline time.Time) []string {
	body, _ := json.Marshal(ShutdownEvent{EventType: Shutdown, DeadlineMs: deadline.UnixMilli(), ShutdownReason: reason})
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for n, e := range r.external {
		// One that reported an error cannot call /next any more.
		if e.shutdown && (e.state == stRegistered || e.state == stReady || e.state == stRunning) {
			r.queueLocked(e, body)
			names = append(names, n)
		}
	}
	return names
}

func (r *Registry) queueLocked(e *ext, body []byte) <-chan struct{} {
	ev := &event{body: body, done: make(chan struct{})}
	e.queue = append(e.queue, ev)
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return ev.done
}

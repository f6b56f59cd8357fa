package runtimeapi

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// Slot is one bootstrap: its Runtime API listener, its process and the one
// invocation it may hold.
type Slot struct {
	idx  int
	pool *Pool
	log  *slog.Logger
	ln   net.Listener
	addr string
	srv  *http.Server

	mu          sync.Mutex
	state       slotState // only transition changes it, so the table is the whole story
	gen         uint64
	proc        process.Process
	current     *invocation.Invocation
	readyCh     chan struct{}
	initErrBody []byte
	resetReason string

	initErrCh chan struct{}
	everReady atomic.Bool

	// Extensions: initPassed once the runtime and the extensions have
	// called /next (Init is over); acks close when the extensions have
	// called /next after the INVOKE of the last invocation (its Invoke
	// phase is over), which the next one waits for until acksDeadline;
	// extFailure is an extension failure that stopped the bootstrap.
	initPassed   bool
	acks         []<-chan struct{}
	acksDeadline time.Time
	extFailure   *extensions.Failure

	// The platform log lines: procSet is closed once proc is set (or its
	// start failed); spawned is when it was started, initDur its init,
	// for the first invocation it gets; curProc and curInit are those of
	// the invocation it runs; finishFn is s.finish, made once.
	procSet  chan struct{}
	spawned  time.Time
	initDur  time.Duration
	curProc  process.Process
	curInit  time.Duration
	finishFn func(*invocation.Invocation, invocation.Outcome, *invocation.Result)
}

// run is the slot's life cycle: start the bootstrap, watch it, restart it
// after a reset or an exit, back off after init failures.
func (s *Slot) run() {
	defer s.pool.wg.Done()
	failures := 0
	for !s.pool.isStopping() {
		if f := s.pool.ensureExtensions(); f != nil || s.pool.isStopping() {
			if s.pool.isStopping() {
				return
			}
			s.log.Warn("extensions failed to initialize", "errorType", f.Type, "error", f.Message)
			failures++
			s.pool.cfg.Metrics.Restarts.WithLabelValues("init_error").Inc()
			if !s.initFailed(failures, failureDoc(f)) {
				return
			}
			continue
		}
		// Internal extensions live in the bootstrap they registered from.
		s.pool.ext.DropSlot(s.idx)
		s.mu.Lock()
		s.gen++
		s.initPassed = false
		s.acks = nil
		s.mustTransition(evSpawn)
		s.readyCh = make(chan struct{})
		readyCh := s.readyCh
		s.procSet = make(chan struct{})
		procSet := s.procSet
		s.initErrBody = nil
		s.mu.Unlock()
		select {
		case <-s.initErrCh:
		default:
		}

		proc, err := s.pool.ctrl.Start(s.pool.ctx, s.idx, s.pool.cfg.Env(s.idx, s.addr))
		// Init counts from the bootstrap's spawn: in pod mode Start first
		// waits for the function container's supervisor to connect.
		start := time.Now()
		if err != nil {
			s.mu.Lock()
			s.mustTransition(evStop)
			close(procSet)
			s.mu.Unlock()
			if s.pool.isStopping() {
				return
			}
			s.log.Error("cannot start bootstrap", "err", err)
			msg := err.Error()
			failures++
			s.pool.cfg.Metrics.Restarts.WithLabelValues("init_error").Inc()
			if !s.initFailed(failures, func(id string) []byte {
				return invokeapi.ErrorDocument("Runtime.InvalidEntrypoint", "RequestId: "+id+" Error: "+msg)
			}) {
				return
			}
			continue
		}
		s.telInitStart(start)
		s.mu.Lock()
		s.proc = proc
		s.spawned = start
		close(procSet)
		failed := s.extFailure != nil
		s.mu.Unlock()
		if failed {
			// An extension failed while this bootstrap was being started.
			proc.Stop(s.pool.cfg.StopGrace)
		}
		s.log.Debug("bootstrap started", "pid", proc.Pid())

		exit, initDone := s.watch(proc, readyCh, start)

		s.mu.Lock()
		cur := s.current
		s.current = nil
		s.mustTransition(evStop)
		s.proc = nil
		reason := s.resetReason
		s.resetReason = ""
		initBody := s.initErrBody
		s.initErrBody = nil
		extFail := s.extFailure
		s.extFailure = nil
		s.mu.Unlock()

		if cur != nil {
			res := invocation.ExitResult(cur.ID, exit, invocation.OutcomeRuntimeExit)
			if extFail != nil {
				res = failureResult(extFail, cur.ID)
			}
			if cur.Complete(res) {
				s.log.Warn("bootstrap exited during an invocation", "requestId", cur.ID, "exit", exit)
			}
		}
		if s.pool.isStopping() {
			s.log.Debug("bootstrap stopped", "exit", exit)
			return
		}
		if extFail != nil && !initDone {
			failures++
			s.pool.cfg.Metrics.Restarts.WithLabelValues("init_error").Inc()
			if !s.initFailed(failures, failureDoc(extFail)) {
				return
			}
			continue
		}
		if extFail == nil && len(s.pool.slots) == 1 {
			// Lambda's model: one runtime per environment, so its reset
			// is the environment's, extensions included.
			r := extensions.ReasonFailure
			if reason == "timeout" {
				r = extensions.ReasonTimeout
			}
			s.pool.extensionsDown(r)
		}
		if extFail != nil {
			reason = "extension"
		}
		if initDone {
			failures = 0
			if reason == "" {
				reason = "exit"
			}
			s.log.Info("restarting bootstrap", "reason", reason, "exit", exit)
			s.pool.cfg.Metrics.Restarts.WithLabelValues(reason).Inc()
			continue
		}
		// The bootstrap never reached /next: an init failure.
		failures++
		s.pool.cfg.Metrics.Restarts.WithLabelValues("init_error").Inc()
		initType := "Runtime.ExitError"
		if initBody != nil {
			initType = errorTypeOf(&invocation.Result{Body: initBody})
		}
		s.telInitDone(time.Since(start), initType)
		var cached func(id string) []byte
		if initBody != nil {
			s.log.Warn("bootstrap init error", "exit", exit, "error", string(initBody))
			cached = func(string) []byte { return initBody }
		} else {
			s.log.Warn("bootstrap exited before its first /next", "exit", exit)
			cached = func(id string) []byte {
				return invokeapi.ErrorDocument("Runtime.ExitError", invocation.ExitMessage(id, exit))
			}
		}
		if !s.initFailed(failures, cached) {
			return
		}
	}
}

// watch waits for the bootstrap to exit; it reports whether it reached
// /next.
func (s *Slot) watch(proc process.Process, readyCh chan struct{}, start time.Time) (string, bool) {
	initDone := false
	stopping := s.pool.stopping
	for {
		select {
		case <-readyCh:
			readyCh = nil
			initDone = true
			d := time.Since(start)
			s.pool.cfg.Metrics.InitSeconds.Observe(d.Seconds())
			if !s.everReady.Swap(true) {
				s.log.Info("bootstrap ready", "pid", proc.Pid(), "init", d)
			}
		case <-s.initErrCh:
			// "Runtime should exit after reporting the error"; make sure.
			proc.Stop(s.pool.cfg.StopGrace)
		case exit := <-proc.Exited():
			return exit, initDone
		case <-stopping:
			stopping = nil
			proc.Stop(s.pool.cfg.StopGrace)
		}
	}
}

// initFailed waits out a bounded backoff before the next start. Invocations
// that arrive meanwhile get the init error (200, X-Amz-Function-Error:
// Unhandled, the error the bootstrap reported), as the RIE answers the
// first invoke after a failed init. It returns false when the pool stops.
func (s *Slot) initFailed(failures int, cached func(id string) []byte) bool {
	if failures > 7 {
		failures = 7
	}
	backoff := 50 * time.Millisecond << (failures - 1) // 50ms .. 3.2s
	done := make(chan struct{})
	t := time.AfterFunc(backoff, func() { close(done) })
	defer t.Stop()
	for {
		inv := s.pool.queue.Take(done, s.pool.stopping)
		if inv == nil {
			return !s.pool.isStopping()
		}
		if inv.CompleteQueued(invocation.FunctionErrorResult(cached(inv.ID), invocation.OutcomeInitError)) {
			s.log.Info("init error reported to caller", "requestId", inv.ID)
		}
	}
}

// failEnvironment stops the bootstrap after an extension failure (f), or
// the one being started; run starts the environment again.
func (s *Slot) failEnvironment(f *extensions.Failure) {
	s.mu.Lock()
	proc, cur := s.proc, s.current
	if s.extFailure == nil {
		s.extFailure = f
	}
	s.mu.Unlock()
	if cur != nil {
		// The invocation fails with the extension's failure, before
		// stopping its bootstrap can cut the bootstrap's response short
		// and fail it as truncated.
		cur.Complete(failureResult(f, cur.ID))
	}
	if proc != nil {
		proc.Stop(s.pool.cfg.StopGrace)
	}
}

// onTimeout runs when an invocation's timeout fires.
func (s *Slot) onTimeout(inv *invocation.Invocation) {
	if inv.Complete(invocation.TimeoutResult(inv.ID, s.pool.cfg.Timeout)) || inv.TimeoutStream() {
		s.log.Warn("invocation timed out; resetting bootstrap", "requestId", inv.ID, "timeout", s.pool.cfg.Timeout)
		s.reset(inv, "timeout")
	}
}

// reset stops the bootstrap holding inv; run starts a new one, which must
// call /next before it gets another invocation.
func (s *Slot) reset(inv *invocation.Invocation, reason string) {
	s.mu.Lock()
	if s.current != inv || s.proc == nil {
		s.mu.Unlock()
		return
	}
	s.current = nil
	s.mustTransition(evStop)
	s.resetReason = reason
	proc := s.proc
	s.mu.Unlock()
	proc.Stop(s.pool.cfg.StopGrace)
}

// finish is the invocations' OnFinish: the END and REPORT lines in the
// bootstrap's log, and the log tail for a caller that asked for it.
func (s *Slot) finish(inv *invocation.Invocation, o invocation.Outcome, r *invocation.Result) {
	s.mu.Lock()
	proc, initDur := s.curProc, s.curInit
	s.curProc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	rep := process.Report{RequestID: inv.ID, Duration: time.Since(inv.StartTime), Init: initDur, MemoryMB: s.pool.cfg.MemoryMB}
	switch o {
	case invocation.OutcomeTimeout:
		rep.Timeout = true
		rep.Duration = s.pool.cfg.Timeout
	case invocation.OutcomeRuntimeExit:
		rep.ErrorType = "Runtime.ExitError"
	case invocation.OutcomeFunctionError, invocation.OutcomeInvalidResponse:
		rep.FunctionError = errorTypeOf(r)
	case invocation.OutcomeResponseTooLarge:
		rep.FunctionError = "Function.ResponseSizeTooLarge"
	}
	h := s.pool.tel()
	e := proc.InvokeEnd(rep, inv.LogTail && r != nil, h != nil)
	if e.Tail != nil && r != nil {
		r.LogResult = base64.StdEncoding.EncodeToString(e.Tail)
	}
	if h != nil {
		s.telEnd(h, &rep, e.MaxMemoryMB)
	}
}

// errorTypeOf is the errorType of a failed invocation's error document,
// for the status of its JSON records and telemetry.
func errorTypeOf(r *invocation.Result) string {
	var doc struct {
		ErrorType string `json:"errorType"`
	}
	if r != nil && len(r.Body) > 0 && json.Unmarshal(r.Body, &doc) == nil && doc.ErrorType != "" {
		return doc.ErrorType
	}
	return "Runtime.Unknown"
}

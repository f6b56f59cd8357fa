package runtimeapi

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
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
}

// run is the slot's life cycle: start the bootstrap, watch it, restart it
// after a reset or an exit, back off after init failures.
func (s *Slot) run() {
	defer s.pool.wg.Done()
	failures := 0
	for !s.pool.isStopping() {
		s.mu.Lock()
		s.gen++
		s.mustTransition(evSpawn)
		s.readyCh = make(chan struct{})
		readyCh := s.readyCh
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
		s.mu.Lock()
		s.proc = proc
		s.mu.Unlock()
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
		s.mu.Unlock()

		if cur != nil && cur.Complete(invocation.ExitResult(cur.ID, exit, invocation.OutcomeRuntimeExit)) {
			s.log.Warn("bootstrap exited during an invocation", "requestId", cur.ID, "exit", exit)
		}
		if s.pool.isStopping() {
			s.log.Debug("bootstrap stopped", "exit", exit)
			return
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

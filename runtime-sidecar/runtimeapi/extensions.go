package runtimeapi

import (
	"context"
	"errors"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// The external extensions of the pool: started before the bootstraps,
// shared by all slots, stopped after them.

const (
	// extensionInitTimeout bounds the wait for the external extensions to
	// register (Lambda's Init has 10 s).
	extensionInitTimeout = 10 * time.Second
	// shutdownTime is what Lambda gives the Shutdown phase with external
	// extensions registered.
	shutdownTime = 2 * time.Second
)

type extProc struct {
	name string
	proc process.Process
	done chan struct{} // closed when it exited
}

// failureDoc is the error document of an extension failure for the
// invocation id.
func failureDoc(f *extensions.Failure) func(id string) []byte {
	return func(id string) []byte {
		return invokeapi.ErrorDocument(f.Type, "RequestId: "+id+" Error: "+f.Message)
	}
}

// failureResult is the result of the invocation id when an extension's
// failure stopped its bootstrap.
func failureResult(f *extensions.Failure, id string) *invocation.Result {
	return invocation.FunctionErrorResult(failureDoc(f)(id), invocation.OutcomeRuntimeExit)
}

// ensureExtensions starts the external extensions unless they run, and
// waits for each to register: Lambda's Init starts them before the
// runtime. A failure is the init error of the environment. Slots call it
// before each start of their bootstrap; one starts them, the others wait.
func (p *Pool) ensureExtensions() *extensions.Failure {
	p.envMu.Lock()
	defer p.envMu.Unlock()
	p.extMu.Lock()
	up, reason := p.extUp, p.extResetReason
	p.extMu.Unlock()
	if up {
		return nil
	}
	// Those of the environment that is being replaced go first.
	p.stopExtensionsLocked(reason)

	ctx := p.ctx
	names, err := p.ctrl.Extensions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &extensions.Failure{Type: extensions.ErrorLaunch, Message: "cannot list extensions: " + err.Error()}
	}
	p.ext.Launch(names)
	ictx, cancel := context.WithTimeout(ctx, extensionInitTimeout)
	defer cancel()
	p.extMu.Lock()
	p.extGen++
	gen := p.extGen
	p.initFailure = nil
	p.initCancel = cancel
	p.extMu.Unlock()
	fail := func(f *extensions.Failure) *extensions.Failure {
		p.extMu.Lock()
		p.initCancel = nil
		if p.initFailure != nil {
			f = p.initFailure
		}
		p.extMu.Unlock()
		reason := extensions.ReasonFailure
		if p.isStopping() {
			reason = extensions.ReasonSpindown
		}
		p.stopExtensionsLocked(reason)
		return f
	}

	env := p.cfg.Env(0, p.slots[0].addr)
	for _, n := range names {
		proc, err := p.ctrl.StartExtension(ictx, n, env)
		if err != nil {
			if ctx.Err() != nil {
				return fail(nil)
			}
			p.cfg.Log.Warn("cannot start extension", "extension", n, "err", err)
			p.cfg.Metrics.ExtensionFailures.WithLabelValues(extensions.ErrorLaunch).Inc()
			return fail(&extensions.Failure{Extension: n, Type: extensions.ErrorLaunch, Message: "extension " + n + " could not be launched: " + err.Error()})
		}
		ep := &extProc{name: n, proc: proc, done: make(chan struct{})}
		p.extMu.Lock()
		p.extProcs = append(p.extProcs, ep)
		p.extMu.Unlock()
		p.cfg.Log.Info("extension started", "extension", n, "pid", proc.Pid())
		go p.watchExtension(gen, ep)
	}
	if pending, err := p.ext.WaitRegistered(ictx); err != nil {
		if ctx.Err() != nil {
			return fail(nil)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			p.cfg.Metrics.ExtensionFailures.WithLabelValues(extensions.ErrorInit).Inc()
			return fail(&extensions.Failure{Extension: pending[0], Type: extensions.ErrorInit,
				Message: "extension " + pending[0] + " did not register within " + extensionInitTimeout.String()})
		}
		return fail(&extensions.Failure{Type: extensions.ErrorInit, Message: err.Error()})
	}
	p.extMu.Lock()
	p.initCancel = nil
	f := p.initFailure
	if f == nil {
		p.extUp = true
	}
	p.extMu.Unlock()
	if f != nil {
		return fail(f)
	}
	if len(names) > 0 {
		p.cfg.Log.Info("extensions registered", "extensions", names)
	}
	return nil
}

// watchExtension reports the exit of an extension that nobody stopped.
func (p *Pool) watchExtension(gen uint64, ep *extProc) {
	desc := <-ep.proc.Exited()
	close(ep.done)
	p.extMu.Lock()
	current := p.extGen == gen
	p.extMu.Unlock()
	if !current || p.isStopping() {
		return
	}
	p.cfg.Log.Warn("extension exited", "extension", ep.name, "exit", desc)
	// The environment is failed before what waits for the extension (an
	// invocation's end) goes on, so that nothing more runs in it.
	p.extensionFailed(p.ext.ExitFailure(ep.name, desc))
	p.ext.Exited(ep.name)
}

// extensionFailed fails the environment: during the extensions' own
// registration it fails their Init; later every bootstrap is stopped and
// the environment starts again, extensions first (as after a reset on
// Lambda). The bootstraps that had not finished their Init report f as
// their init error, an invocation running gets it as its error.
func (p *Pool) extensionFailed(f extensions.Failure) {
	if p.isStopping() {
		return
	}
	p.cfg.Metrics.ExtensionFailures.WithLabelValues(f.Type).Inc()
	p.extMu.Lock()
	if p.initCancel != nil {
		if p.initFailure == nil {
			p.initFailure = &f
		}
		p.initCancel()
		p.extMu.Unlock()
		return
	}
	if !p.extUp {
		p.extMu.Unlock()
		return
	}
	p.extUp = false
	p.extResetReason = extensions.ReasonFailure
	p.extMu.Unlock()
	p.cfg.Log.Warn("extension failure: resetting the execution environment", "extension", f.Extension, "errorType", f.Type, "error", f.Message)
	for _, s := range p.slots {
		s.failEnvironment(&f)
	}
}

// extensionsDown marks the extensions for a restart before the next
// bootstrap starts (concurrency 1: Lambda resets the whole environment
// after a timeout or a runtime failure).
func (p *Pool) extensionsDown(reason string) {
	p.extMu.Lock()
	if p.extUp {
		p.extUp = false
		p.extResetReason = reason
	}
	p.extMu.Unlock()
}

// stopExtensionsLocked ends the external extensions: SHUTDOWN to those
// registered for it, which get until its deadline to exit; the others,
// and those still running then, are killed. p.envMu must be held.
func (p *Pool) stopExtensionsLocked(reason string) {
	p.extMu.Lock()
	p.extGen++ // their exits are expected now
	procs := p.extProcs
	p.extProcs = nil
	p.extUp = false
	p.extMu.Unlock()
	// The subscribers get what is pending before they are told to shut
	// down; their subscriptions end with them.
	p.telFlush()
	defer p.telReset()
	if len(procs) == 0 {
		p.ext.DropExternal()
		return
	}
	deadline := time.Now().Add(shutdownTime)
	sent := p.ext.Shutdown(reason, deadline)
	p.cfg.Metrics.ExtensionEvents.WithLabelValues(extensions.Shutdown).Add(float64(len(sent)))
	subscribed := map[string]bool{}
	for _, n := range sent {
		subscribed[n] = true
	}
	for _, ep := range procs {
		if !subscribed[ep.name] {
			ep.proc.Stop(0)
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for _, ep := range procs {
		select {
		case <-ep.done:
		case <-t.C:
			t.Reset(0)
		}
	}
	for _, ep := range procs {
		select {
		case <-ep.done:
			continue
		default:
		}
		p.cfg.Log.Warn("extension did not exit by the shutdown deadline: killed", "extension", ep.name)
		ep.proc.Stop(0)
		select {
		case <-ep.done:
		case <-time.After(time.Second):
		}
	}
	p.ext.DropExternal()
	if reason != "" {
		p.cfg.Log.Info("extensions stopped", "reason", reason)
	}
}

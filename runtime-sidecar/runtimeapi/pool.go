package runtimeapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
	"github.com/lambdapod/lambdapod/runtime-sidecar/metrics"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
	"github.com/lambdapod/lambdapod/runtime-sidecar/telemetry"
)

// Config configures a Pool.
type Config struct {
	// Timeout is the function timeout, counted from /next.
	Timeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL on a reset.
	StopGrace time.Duration
	// Env returns the environment of the bootstrap in slot with the Runtime
	// API at addr.
	Env     func(slot int, addr string) lambdaenv.Env
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Version and MemoryMB are what the START and REPORT lines say.
	Version  string
	MemoryMB int
	// Function is what the Extensions API's /register answers.
	Function extensions.Function
	// Telemetry takes the Telemetry and Logs API subscriptions and the
	// platform events (nil: none).
	Telemetry *telemetry.Hub
}

// Pool is the set of bootstrap slots.
type Pool struct {
	cfg      Config
	ctrl     process.Controller
	queue    *invocation.Queue
	slots    []*Slot
	ctx      context.Context
	cancel   context.CancelFunc
	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	// The external extensions (extensions.go). envMu serializes starting
	// and stopping them; extMu guards the rest.
	ext            *extensions.Registry
	envMu          sync.Mutex
	extMu          sync.Mutex
	extUp          bool // started and registered
	extResetReason string
	extGen         uint64 // exits of older generations were asked for
	extProcs       []*extProc
	initCancel     context.CancelFunc // set while they register
	initFailure    *extensions.Failure

	// telInitReported: platform.extension was sent and subscriptions
	// closed for the current environment (telemetry.go).
	telMu           sync.Mutex
	telInitReported bool
}

// NewPool returns a pool with one slot per listener.
func NewPool(cfg Config, ctrl process.Controller, queue *invocation.Queue, listeners []net.Listener) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, ctrl: ctrl, queue: queue, ctx: ctx, cancel: cancel, stopping: make(chan struct{})}
	p.ext = extensions.New(extensions.Config{Function: cfg.Function, Log: cfg.Log, OnFailure: p.extensionFailed})
	for i, ln := range listeners {
		s := &Slot{idx: i, pool: p, ln: ln, addr: ln.Addr().String(), initErrCh: make(chan struct{}, 1)}
		s.finishFn = s.finish
		s.log = cfg.Log.With("slot", i)
		s.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 30 * time.Second,
			// No read, write or idle timeout: /next is held open as long as
			// needed and responses may stream for the whole function timeout.
			ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
		}
		p.slots = append(p.slots, s)
	}
	return p
}

// Start serves the Runtime API and starts the bootstraps.
func (p *Pool) Start() {
	for _, s := range p.slots {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("runtime API server failed", "err", err)
			}
		}()
		p.wg.Add(1)
		go s.run()
	}
}

// Extensions is the registry of the extensions, for the APIs that
// identify them by Lambda-Extension-Identifier (Telemetry, Logs).
func (p *Pool) Extensions() *extensions.Registry { return p.ext }

// Ready reports whether every bootstrap and every extension registered
// has called /next at least once (Lambda's Init is over).
func (p *Pool) Ready() bool {
	for _, s := range p.slots {
		if !s.everReady.Load() {
			return false
		}
	}
	return true
}

// Addrs returns the Runtime API address of every slot.
func (p *Pool) Addrs() []string {
	a := make([]string, len(p.slots))
	for i, s := range p.slots {
		a[i] = s.addr
	}
	return a
}

// Pids returns the pid of every slot's running bootstrap (0 if none).
func (p *Pool) Pids() []int {
	a := make([]int, len(p.slots))
	for i, s := range p.slots {
		s.mu.Lock()
		if s.proc != nil {
			a[i] = s.proc.Pid()
		}
		s.mu.Unlock()
	}
	return a
}

// Stop stops every bootstrap (SIGTERM, SIGKILL after the grace), waits for
// them to exit, then sends SHUTDOWN (spindown) to the external extensions
// and waits for them until its deadline, and closes the Runtime API
// listeners. Invocations still running are answered with
// Runtime.ExitError.
func (p *Pool) Stop() {
	p.stopOnce.Do(func() {
		close(p.stopping)
		p.cancel()
	})
	p.wg.Wait()
	p.envMu.Lock()
	p.stopExtensionsLocked(extensions.ReasonSpindown)
	p.envMu.Unlock()
	for _, s := range p.slots {
		_ = s.srv.Close()
	}
}

func (p *Pool) isStopping() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invoke"
	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
	"github.com/lambdapod/lambdapod/runtime-sidecar/metrics"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
	"github.com/lambdapod/lambdapod/runtime-sidecar/runtimeapi"
	"github.com/lambdapod/lambdapod/runtime-sidecar/telemetry"
)

// Main runs the sidecar and returns the process exit code: 0 after a clean
// shutdown, 1 on a runtime failure, 2 on bad configuration.
func Main(args []string, stderr io.Writer) int {
	cfg, err := ParseConfig(args, os.Getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "runtime-sidecar:", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	if err := Run(cfg, log); err != nil {
		log.Error("runtime sidecar failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Run serves until SIGTERM/SIGINT (or the supervisor's termination), then
// drains and returns.
func Run(cfg Config, log *slog.Logger) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)

	fn := lambdaenv.Function{Name: cfg.FunctionName, Version: cfg.Version, Memory: cfg.Memory, Region: cfg.Region, Handler: cfg.Handler,
		LogFormat: cfg.FunctionLogFormat, LogLevel: cfg.ApplicationLogLevel}
	// Standalone, this process writes the platform lines (in pod mode the
	// supervisor does, reading the same variables from its environment).
	process.SetLogFormat(cfg.PlatformLog)

	addrs, err := slotAddrs(cfg.RuntimeAPI, cfg.Concurrency)
	if err != nil {
		return err
	}
	listeners := make([]net.Listener, 0, len(addrs))
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("runtime API: %w", err)
		}
		listeners = append(listeners, ln)
	}
	invokeLn, err := net.Listen("tcp", cfg.InvokeAddr)
	if err != nil {
		closeAll()
		return fmt.Errorf("invoke API: %w", err)
	}

	var ctrl process.Controller
	var remote *process.Remote
	if cfg.Mode == ModeSocket {
		remote, err = process.ListenRemote(cfg.ControlSocket, log)
		if err != nil {
			closeAll()
			invokeLn.Close()
			return fmt.Errorf("control socket: %w", err)
		}
		defer remote.Close()
		ctrl = remote
		log.Info("control socket listening", "path", cfg.ControlSocket)
	} else {
		ctrl = &process.Local{Argv: cfg.Bootstrap, Env: os.Environ(), Dir: cfg.BootstrapDir, ExtensionsDir: cfg.ExtensionsDir}
	}

	memoryMB, _ := strconv.Atoi(cfg.Memory) // checked by ParseConfig
	hub := newTelemetry(cfg, log, remote)
	queue := invocation.NewQueue(cfg.QueueSize)
	var pool *runtimeapi.Pool
	var handler *invoke.Handler
	m := metrics.New(func() float64 { return float64(queue.Len()) }, func() float64 {
		if handler != nil && handler.Ready() {
			return 1
		}
		return 0
	})
	pool = runtimeapi.NewPool(runtimeapi.Config{
		Timeout:   cfg.Timeout,
		StopGrace: cfg.StopGrace,
		Env:       func(_ int, addr string) lambdaenv.Env { return lambdaenv.For(fn, addr) },
		Log:       log,
		Metrics:   m,
		Version:   cfg.Version,
		MemoryMB:  memoryMB,
		Telemetry: hub,
		Function: extensions.Function{Name: cfg.FunctionName, Version: cfg.Version, Handler: cfg.Handler,
			AccountID: invokeapi.AccountID},
	}, ctrl, queue, listeners)
	handler = invoke.New(invoke.Config{
		FunctionName: cfg.FunctionName,
		Version:      cfg.Version,
		Region:       cfg.Region,
		Timeout:      cfg.Timeout,
		Log:          log,
		Metrics:      m,
		Ready:        pool.Ready,
		MaxInFlight:  cfg.MaxInFlight,
		BodyTimeout:  cfg.BodyTimeout,
	}, queue)
	if cfg.InvokeKey != nil {
		handler.RequireTokens(invoketoken.NewVerifier(cfg.InvokeKey, cfg.Namespace, cfg.FunctionName))
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// No read or write timeout: an invocation may take the whole
		// function timeout (up to 15 minutes). The payload has the
		// handler's own deadline (--body-timeout).
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	for i, a := range pool.Addrs() {
		log.Info("runtime API listening", "slot", i, "addr", a)
	}
	log.Info("invoke API listening", "addr", invokeLn.Addr().String(), "function", cfg.FunctionName,
		"timeout", cfg.Timeout, "concurrency", cfg.Concurrency, "mode", cfg.Mode)
	pool.Start()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(netutil.LimitListener(invokeLn, cfg.MaxConns)) }()

	var terminating <-chan struct{}
	if remote != nil {
		terminating = remote.Terminating()
	}
	select {
	case s := <-sig:
		log.Info("shutting down: draining", "signal", s.String())
	case <-terminating:
		log.Info("supervisor is terminating: draining")
	case err := <-serveErr:
		pool.Stop()
		return fmt.Errorf("invoke API: %w", err)
	}

	// Drain: not ready any more, refuse new invocations, finish those
	// running and queued (each bounded by the function timeout).
	idle := handler.Drain()
	t := time.NewTimer(cfg.DrainTimeout)
	select {
	case <-idle:
	case <-t.C:
		log.Warn("drain timeout: stopping with invocations still in flight", "inFlight", handler.InFlight())
	case s := <-sig:
		log.Warn("second signal: stopping now", "signal", s.String())
	}
	t.Stop()
	handler.FailQueued()
	pool.Stop()
	stopTelemetry(hub)
	if remote != nil {
		remote.Exit()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	log.Info("stopped")
	return nil
}

// newTelemetry is the hub of the Telemetry and Logs API subscriptions. The
// output lines of bootstraps and extensions are collected only while a
// subscriber wants them: split by this process standalone, forwarded by
// the supervisor in pod mode.
func newTelemetry(cfg Config, log *slog.Logger, remote *process.Remote) *telemetry.Hub {
	var hub *telemetry.Hub
	sink := func(s process.Stream, t time.Time, line []byte) { hub.Line(s.String(), t, line) }
	hub = telemetry.NewHub(telemetry.HubConfig{
		Log:      log,
		JSONLogs: cfg.PlatformLog.JSON,
		OnWant: func(function, extension bool) {
			if remote != nil {
				remote.Forward(function, extension)
			} else {
				process.ForwardLines(sink, function, extension)
			}
		},
	})
	if remote != nil {
		remote.OnLines(func(lines []process.Line, dropped int64) {
			if dropped > 0 {
				hub.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: time.Now(), Type: telemetry.TypeLogsDropped,
					Record: telemetry.LogsDropped{DroppedRecords: dropped, Reason: "Some logs were dropped because the function container's log forwarding fell behind"}})
			}
			for _, l := range lines {
				hub.Line(l.Stream, time.Unix(0, l.Time), []byte(l.Text))
			}
		})
	}
	return hub
}

// stopTelemetry delivers what is left (briefly) and ends the
// subscriptions.
func stopTelemetry(hub *telemetry.Hub) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hub.Stop(ctx)
}

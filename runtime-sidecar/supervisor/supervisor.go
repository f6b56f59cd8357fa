// Package supervisor is the small program that runs a function's bootstrap
// inside the function container on behalf of the runtime sidecar (pod
// mode). It connects to the sidecar's control socket and starts, stops and
// restarts bootstraps when asked, reporting each exit at once, so that a
// reset after a timeout or a crash never waits for the kubelet's crash-loop
// back-off. Images that lambdapod builds carry it (label
// lambdapod.io/supervisor); for other images the sidecar's postStart hook
// copies it into a shared emptyDir ("supervisor install
// /lambdapod/supervisor"), the way Tekton injects its entrypoint.
package supervisor

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// DefaultBootstraps are tried in order when no command is given.
var DefaultBootstraps = []string{"/var/runtime/bootstrap", "/var/task/bootstrap", "/opt/bootstrap"}

const usage = `Usage:
  supervisor install DEST                  copy this binary to DEST (mode 0755)
  supervisor [flags] [-- bootstrap args...] run bootstraps for the runtime sidecar

Without a command the first existing of /var/runtime/bootstrap,
/var/task/bootstrap, /opt/bootstrap is run (working directory /var/task if it
exists). The bootstrap inherits this process's environment, with
AWS_LAMBDA_RUNTIME_API and the function identity set by the sidecar. The
executables of the extensions directory are started as external extensions
when the sidecar asks for them (before the bootstrap, as Lambda does).

Flags (environment variable in brackets):
`

// Main runs the supervisor and returns its exit code.
func Main(args []string, stderr io.Writer) int {
	logger := log.New(stderr, "supervisor: ", log.LstdFlags|log.Lmsgprefix)
	if len(args) > 0 && args[0] == "install" {
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: supervisor install DEST")
			return 2
		}
		if err := Install(args[1]); err != nil {
			logger.Print(err)
			return 1
		}
		return 0
	}
	fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	sock := os.Getenv(contract.EnvControlSocket)
	if sock == "" {
		sock = contract.ControlSocket
	}
	socket := fs.String("control-socket", sock, "the sidecar's control socket [LAMBDAPOD_CONTROL_SOCKET]")
	connectTimeout := fs.Duration("connect-timeout", 2*time.Minute, "how long to wait for the sidecar's socket before giving up")
	extDir := os.Getenv(contract.EnvExtensionsDir)
	if extDir == "" {
		extDir = contract.ExtensionsDir
	}
	extensionsDir := fs.String("extensions-dir", extDir, "the external extensions (executables) to start before the bootstrap ["+contract.EnvExtensionsDir+"]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	argv := fs.Args()
	dir := ""
	if len(argv) == 0 {
		for _, b := range DefaultBootstraps {
			if st, err := os.Stat(b); err == nil && !st.IsDir() {
				argv = []string{b}
				break
			}
		}
		if len(argv) == 0 {
			logger.Printf("no bootstrap: pass a command after -- or install one at %s", strings.Join(DefaultBootstraps, ", "))
			return 2
		}
		// Lambda runs a bootstrap found there in /var/task; a command given
		// explicitly keeps the image's working directory.
		if st, err := os.Stat("/var/task"); err == nil && st.IsDir() {
			dir = "/var/task"
		}
	}
	// The platform lines' format is the function's (the manager sets the
	// variables on this container); bad values fall back to Lambda's
	// defaults rather than keep the function from running.
	lf, err := process.ParseLogFormat(os.Getenv(contract.EnvLogFormat), os.Getenv(contract.EnvSystemLogLevel), os.Getenv(contract.EnvLogLevel))
	if err != nil {
		logger.Printf("%v: using %s", err, map[bool]string{false: "Text", true: "JSON at INFO"}[lf.JSON])
	}
	process.SetLogFormat(lf)
	s := &supervisor{log: logger, socket: *socket, connectTimeout: *connectTimeout, argv: argv, dir: dir, extDir: *extensionsDir}
	return s.run()
}

// Install copies the running executable to dest with mode 0755.
func Install(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".supervisor-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), dest)
}

type supervisor struct {
	log            *log.Logger
	socket         string
	connectTimeout time.Duration
	argv           []string
	dir            string
	extDir         string
	terminating    bool
}

type exitEvent struct {
	id   uint64
	desc string
}

func (s *supervisor) run() int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	for {
		conn, code := s.connect(sigs)
		if conn == nil {
			return code
		}
		if code, done := s.serve(conn, sigs); done {
			return code
		}
		// The sidecar went away: bootstraps were stopped; wait for it to
		// come back (a restarted sidecar container).
	}
}

func (s *supervisor) connect(sigs chan os.Signal) (net.Conn, int) {
	deadline := time.Now().Add(s.connectTimeout)
	for {
		c, err := net.Dial("unix", s.socket)
		if err == nil {
			return c, 0
		}
		if time.Now().After(deadline) {
			s.log.Printf("cannot reach the runtime sidecar at %s: %v", s.socket, err)
			return nil, 1
		}
		select {
		case <-sigs:
			return nil, 0
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// serve runs one connection; done reports whether the supervisor should
// exit with code.
func (s *supervisor) serve(conn net.Conn, sigs chan os.Signal) (code int, done bool) {
	defer conn.Close()
	enc := json.NewEncoder(conn)
	var wmu sync.Mutex
	send := func(m process.Message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := enc.Encode(m); err != nil {
			conn.Close()
		}
	}
	// The bootstrap of each slot, for the invocations' platform lines:
	// written by the reader as it reads them (START then comes before
	// anything the bootstrap prints of the invocation), and kept after
	// the bootstrap exited for the END of the invocation it was running.
	var slotsMu sync.Mutex
	slots := map[int]*process.Child{}
	child := func(slot int) *process.Child {
		slotsMu.Lock()
		defer slotsMu.Unlock()
		return slots[slot]
	}
	// Output lines for the sidecar's telemetry subscribers, while it asks.
	fw := newForwarder(send)
	defer fw.stop()
	// The sidecar's messages; the platform lines, each slot's written by a
	// worker of its own.
	ctl, err := newControl(conn, s.log, func(m process.Message) {
		switch m.Op {
		case "invoke":
			if c := child(m.Slot); c != nil {
				c.InvokeStart(m.Req, m.Version)
			}
			if m.Seq != 0 {
				// An older sidecar hands the invocation to the bootstrap
				// once START is written.
				send(process.Message{Op: "log", ID: m.Seq})
			}
		case "end":
			var e process.Ended
			if c := child(m.Slot); c != nil && m.Report != nil {
				e = c.InvokeEnd(*m.Report, m.Tail, m.Memory)
			}
			if m.Tail || m.Memory {
				// The invocation's lines before its report.
				fw.flush()
			}
			if m.Seq != 0 {
				send(process.Message{Op: "log", ID: m.Seq, Log: e.Tail, MaxMB: e.MaxMemoryMB})
			}
		}
	})
	if err != nil {
		s.log.Printf("control connection: %v", err)
		return 0, false
	}
	// Read at each connection: a restarted sidecar initialises again.
	exts, err := process.ListExtensions(s.extDir)
	if err != nil {
		s.log.Printf("cannot list extensions in %s: %v", s.extDir, err)
	}
	send(process.Message{Op: "hello", Pid: os.Getpid(), Logs: true, Ordered: true, Extensions: exts})
	if s.terminating {
		send(process.Message{Op: "terminating"})
	}

	msgs := make(chan process.Message)
	readDone := make(chan struct{})
	quit := make(chan struct{})
	defer close(quit)
	go ctl.run()
	go func() {
		defer close(readDone)
		for {
			ms, ok := ctl.next()
			if !ok {
				return
			}
			for _, m := range ms {
				if m.Op == "forward" {
					fw.set(m.Types)
					continue
				}
				select {
				case msgs <- m:
				case <-quit:
					return
				}
			}
		}
	}()

	children := map[uint64]*process.Child{}
	exits := make(chan exitEvent, 16)
	stopAll := func(grace time.Duration) {
		for _, c := range children {
			c.Stop(grace)
		}
		for id, c := range children {
			<-c.Done()
			delete(children, id)
		}
	}
	for {
		select {
		case m := <-msgs:
			switch m.Op {
			case "start":
				env := lambdaenv.Env{}
				if m.Env != nil {
					env = *m.Env
				}
				var c *process.Child
				var err error
				if m.Ext != "" {
					if !process.ValidExtensionName(m.Ext) {
						send(process.Message{Op: "failed", ID: m.ID, Error: "invalid extension name " + m.Ext})
						continue
					}
					c, err = process.StartExtensionChild([]string{filepath.Join(s.extDir, m.Ext)}, lambdaenv.Apply(os.Environ(), env), "")
				} else {
					c, err = process.StartChild(s.argv, lambdaenv.Apply(os.Environ(), env), s.dir)
				}
				if err != nil {
					send(process.Message{Op: "failed", ID: m.ID, Error: err.Error()})
					continue
				}
				children[m.ID] = c
				if m.Ext == "" {
					c.SetOutputBarrier(ctl.barrier(m.Slot))
					slotsMu.Lock()
					slots[m.Slot] = c
					slotsMu.Unlock()
				}
				send(process.Message{Op: "started", ID: m.ID, Pid: c.Pid()})
				go func(id uint64) {
					e := exitEvent{id, <-c.Exited()}
					select {
					case exits <- e:
					case <-quit:
					}
				}(m.ID)
			case "stop":
				if c := children[m.ID]; c != nil {
					c.Stop(time.Duration(m.GraceMs) * time.Millisecond)
				}
			case "exit":
				stopAll(2 * time.Second)
				return 0, true
			}
		case e := <-exits:
			if _, ok := children[e.id]; ok {
				delete(children, e.id)
				send(process.Message{Op: "exited", ID: e.id, Exit: e.desc})
			}
		case sig := <-sigs:
			if s.terminating {
				s.log.Printf("second %s: stopping bootstraps now", sig)
				stopAll(0)
				return 0, true
			}
			// Pod termination: the sidecar drains (finishes invocations) and
			// then tells us to exit.
			s.terminating = true
			send(process.Message{Op: "terminating"})
		case <-readDone:
			s.log.Printf("runtime sidecar disconnected: stopping bootstraps")
			stopAll(2 * time.Second)
			if s.terminating {
				return 0, true
			}
			return 0, false
		}
	}
}

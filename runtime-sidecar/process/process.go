// Package process starts, stops and watches bootstrap processes for the
// runtime sidecar. Two controllers share one interface: Local runs the
// bootstrap as a child of the sidecar (standalone mode, like the runtime
// interface emulator), Remote asks a supervisor in the function container
// to do it over a unix socket (pod mode).
package process

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
)

// Controller starts bootstraps and external extensions. Slot is the
// bootstrap's index (0..N-1); env is applied to the environment the
// process inherits.
type Controller interface {
	Start(ctx context.Context, slot int, env lambdaenv.Env) (Process, error)
	// Extensions lists the external extensions, the executables of the
	// extensions directory by file name, sorted (Lambda starts them in
	// that order).
	Extensions(ctx context.Context) ([]string, error)
	// StartExtension starts the external extension name (one that
	// Extensions listed).
	StartExtension(ctx context.Context, name string, env lambdaenv.Env) (Process, error)
}

// ListExtensions returns the names of the executable regular files in dir,
// sorted; a missing dir has none.
func ListExtensions(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range entries {
		// Follow symlinks: layers often link their extension there.
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// ValidExtensionName reports whether name can only name a file directly in
// the extensions directory.
func ValidExtensionName(name string) bool {
	return name != "" && name != "." && name != ".." && filepath.Base(name) == name
}

// Process is one running bootstrap.
type Process interface {
	// Pid of the bootstrap (in its own pid namespace in pod mode).
	Pid() int
	// Stop sends SIGTERM to the bootstrap's process group and SIGKILL after
	// grace. It returns at once; Exited reports the end.
	Stop(grace time.Duration)
	// Exited delivers the exit description ("exit status 1",
	// "signal: killed") once the bootstrap has exited.
	Exited() <-chan string
	// InvokeStart writes the START line of an invocation to the
	// bootstrap's log, before the bootstrap gets the invocation.
	InvokeStart(requestID, version string)
	// InvokeEnd writes its END and REPORT lines after what the bootstrap
	// printed before it ended; with tail, it returns the invocation's last
	// TailSize bytes of log (nil if they cannot be had), with memory the
	// Max Memory Used it reported (0 if it cannot be had).
	InvokeEnd(r Report, tail, memory bool) Ended
}

// Ended is what InvokeEnd gives back.
type Ended struct {
	Tail        []byte
	MaxMemoryMB int
}

// Local runs bootstraps as children of this process.
type Local struct {
	Argv []string
	// Env is the base environment (KEY=VALUE) Start's env is applied to.
	Env []string
	// Dir is the working directory ("" = inherit).
	Dir string
	// ExtensionsDir holds the external extensions ("" = none).
	ExtensionsDir string
}

// Extensions implements Controller.
func (l *Local) Extensions(context.Context) ([]string, error) { return ListExtensions(l.ExtensionsDir) }

// StartExtension implements Controller.
func (l *Local) StartExtension(_ context.Context, name string, env lambdaenv.Env) (Process, error) {
	if !ValidExtensionName(name) {
		return nil, errors.New("invalid extension name " + name)
	}
	return StartExtensionChild([]string{filepath.Join(l.ExtensionsDir, name)}, lambdaenv.Apply(l.Env, env), "")
}

// Start implements Controller.
func (l *Local) Start(_ context.Context, _ int, env lambdaenv.Env) (Process, error) {
	return StartChild(l.Argv, lambdaenv.Apply(l.Env, env), l.Dir)
}

// Child is a bootstrap started by StartChild.
type Child struct {
	cmd    *exec.Cmd
	out    *output
	exited chan string
	done   chan struct{}
	once   sync.Once
}

// StartChild starts argv in its own process group with env, killed if this
// process dies. Its stdout and stderr are copied to this process's as they
// come, with the platform lines of its invocations (InvokeStart,
// InvokeEnd) between them.
func StartChild(argv []string, env []string, dir string) (*Child, error) {
	return startChild(argv, env, dir, StreamFunction)
}

// StartExtensionChild starts an extension as StartChild starts a
// bootstrap; its output lines are the Telemetry API's extension stream.
func StartExtensionChild(argv []string, env []string, dir string) (*Child, error) {
	return startChild(argv, env, dir, StreamExtension)
}

func startChild(argv []string, env []string, dir string, stream Stream) (*Child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin = nil
	var pipes [2][2]*os.File // read, write ends of stdout and stderr
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			for _, p := range pipes[:i] {
				p[0].Close()
				p[1].Close()
			}
			return nil, err
		}
		pipes[i] = [2]*os.File{r, w}
	}
	cmd.Stdout = pipes[0][1]
	cmd.Stderr = pipes[1][1]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err := cmd.Start()
	pipes[0][1].Close()
	pipes[1][1].Close()
	if err != nil {
		pipes[0][0].Close()
		pipes[1][0].Close()
		return nil, err
	}
	c := &Child{cmd: cmd, exited: make(chan string, 1), done: make(chan struct{})}
	c.out = newOutput(pipes[0][0], pipes[1][0], c.Pid, stream)
	go c.wait()
	return c, nil
}

// InvokeStart implements Process.
func (c *Child) InvokeStart(requestID, version string) { c.out.start(requestID, version) }

// SetOutputBarrier makes every read of the child's output wait for f
// before it is written out: the supervisor's, which lets the START of an
// invocation the sidecar announced be written first (see
// supervisor.orderedLogs).
func (c *Child) SetOutputBarrier(f func()) { c.out.barrier.Store(&f) }

// InvokeEnd implements Process.
func (c *Child) InvokeEnd(r Report, tail, _ bool) Ended {
	t, mb := c.out.end(r, tail)
	return Ended{Tail: t, MaxMemoryMB: mb}
}

func (c *Child) wait() {
	err := c.cmd.Wait()
	desc := ""
	if c.cmd.ProcessState != nil {
		desc = c.cmd.ProcessState.String()
	} else if err != nil {
		desc = err.Error()
	}
	// Leave nothing of the bootstrap behind (curl started by a bash
	// bootstrap, for instance).
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	// Its last words come before the exit is reported (and before the END
	// of an invocation it was running). A grandchild that kept the pipes
	// open is dead by now too.
	select {
	case <-c.out.drained:
	case <-time.After(time.Second):
	}
	close(c.done)
	c.exited <- desc
}

// Pid implements Process.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Exited implements Process.
func (c *Child) Exited() <-chan string { return c.exited }

// Done is closed when the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// Stop implements Process.
func (c *Child) Stop(grace time.Duration) {
	c.once.Do(func() {
		pid := c.cmd.Process.Pid
		if grace <= 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			return
		}
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		go func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-c.done:
			case <-t.C:
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}()
	})
}

// Package process starts, stops and watches bootstrap processes for the
// runtime sidecar. Two controllers share one interface: Local runs the
// bootstrap as a child of the sidecar (standalone mode, like the runtime
// interface emulator), Remote asks a supervisor in the function container
// to do it over a unix socket (pod mode).
package process

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
)

// Controller starts bootstraps. Slot is the bootstrap's index (0..N-1);
// env is applied to the environment the bootstrap inherits.
type Controller interface {
	Start(ctx context.Context, slot int, env lambdaenv.Env) (Process, error)
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
}

// Local runs bootstraps as children of this process.
type Local struct {
	Argv []string
	// Env is the base environment (KEY=VALUE) Start's env is applied to.
	Env []string
	// Dir is the working directory ("" = inherit).
	Dir string
}

// Start implements Controller.
func (l *Local) Start(_ context.Context, _ int, env lambdaenv.Env) (Process, error) {
	return StartChild(l.Argv, lambdaenv.Apply(l.Env, env), l.Dir)
}

// Child is a bootstrap started by StartChild.
type Child struct {
	cmd    *exec.Cmd
	exited chan string
	done   chan struct{}
	once   sync.Once
}

// StartChild starts argv in its own process group with env, wired to this
// process's stdout and stderr, killed if this process dies.
func StartChild(argv []string, env []string, dir string) (*Child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Child{cmd: cmd, exited: make(chan string, 1), done: make(chan struct{})}
	go c.wait()
	return c, nil
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

package conformance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/testproc"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
)

// supervisorProc is a running supervisor (the function container's
// process in pod mode).
type supervisorProc struct {
	cmd    *exec.Cmd
	out    *testproc.Buffer
	exited chan struct{}
	code   int
}

func startSupervisor(t *testing.T, socket string, args ...string) *supervisorProc {
	t.Helper()
	return startSupervisorEnv(t, socket, nil, args...)
}

// startSupervisorEnv starts a supervisor with env added to its environment.
func startSupervisorEnv(t *testing.T, socket string, env []string, args ...string) *supervisorProc {
	t.Helper()
	p := &supervisorProc{out: &testproc.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin.supervisor, args...)
	// The controller gives the function container the Lambda environment.
	p.cmd.Env = append(cleanEnv("LAMBDAPOD_CONTROL_SOCKET="+socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "FROM_CONTAINER=1"), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("supervisor output:\n%s", p.out.String())
		}
	})
	return p
}

// Pod mode: the sidecar drives a supervisor over the control socket; the
// bootstrap runs under the supervisor with the sidecar's Runtime API
// address; timeouts and crashes restart it through the supervisor; SIGTERM
// of the supervisor (pod termination: the kubelet stops the function
// container before the native sidecar) drains and both exit 0.
//
// Both kinds of control socket: the abstract one the controller gives pods
// (no file, so no volume) and a file socket.
func TestPodModeWithSupervisor(t *testing.T) {
	t.Run("abstract socket", func(t *testing.T) {
		podModeWithSupervisor(t, fmt.Sprintf("@lambdapod-conformance-%d/control.sock", os.Getpid()))
	})
	t.Run("file socket", func(t *testing.T) {
		podModeWithSupervisor(t, filepath.Join(t.TempDir(), "control.sock"))
	})
}

func podModeWithSupervisor(t *testing.T, socket string) {
	s := startSidecar(t, sidecarOpts{
		env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "LAMBDAPOD_TIMEOUT=1s", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256"},
		noWait: true,
	})
	if !strings.HasPrefix(socket, "@") {
		st, err := os.Stat(socket)
		if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o666 {
			t.Fatalf("control socket %v mode %v, want a 0666 socket", err, st.Mode())
		}
	}
	if resp, _ := s.get("/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz without a supervisor: %d", resp.StatusCode)
	}
	sup := startSupervisor(t, socket, "--", bin.bootstrap)
	s.waitReady()

	c := s.client()
	fn := func(in *lambdaInvokeInput) { in.FunctionName = aws.String("fn-pod") }
	in := decodeInspect(t, sdkInvokeFn(t, c, `{"action":"inspect"}`, fn).Payload)
	if in.Env["AWS_LAMBDA_RUNTIME_API"] != s.Runtime[0] || in.Env["AWS_LAMBDA_FUNCTION_NAME"] != "fn-pod" ||
		in.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "256" || in.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:fn-pod" {
		t.Errorf("bootstrap saw env %v, ARN %q", in.Env, in.FunctionArn)
	}
	if _, ok := in.Env["LAMBDAPOD_CONTROL_SOCKET"]; ok {
		t.Errorf("LAMBDAPOD_CONTROL_SOCKET leaked to the bootstrap")
	}

	// Timeout: reset through the supervisor, next invocation in a new process.
	out := sdkInvokeFn(t, c, `{"action":"sleep","sleepMs":3000}`, fn)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	assertBody(t, out.Payload, `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: `+id+` Error: Task timed out after 1.00 seconds"}`)
	in2 := decodeInspect(t, sdkInvokeFn(t, c, `{"action":"inspect"}`, fn).Payload)
	if in2.Pid == in.Pid || processAlive(in.Pid) {
		t.Errorf("bootstrap not reset: pid %d → %d (old alive: %v)", in.Pid, in2.Pid, processAlive(in.Pid))
	}

	// Crash: reported at once by the supervisor.
	out = sdkInvokeFn(t, c, `{"action":"crash"}`, fn)
	id, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	assertBody(t, out.Payload, `{"errorType":"Runtime.ExitError","errorMessage":"RequestId: `+id+` Error: Runtime exited with error: exit status 3"}`)
	in3 := decodeInspect(t, sdkInvokeFn(t, c, `{"action":"inspect"}`, fn).Payload)

	// Pod termination: the kubelet sends SIGTERM to the function container
	// first; in-flight work finishes, then the supervisor exits 0.
	done := make(chan string, 1)
	go func() {
		out := sdkInvokeFn(t, c, `{"action":"sleep","sleepMs":300}`, fn)
		done <- string(out.Payload)
	}()
	time.Sleep(100 * time.Millisecond)
	_ = sup.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case got := <-done:
		if want := `{"pid":` + itoa(in3.Pid) + `,"slept":300}`; got != want {
			t.Errorf("in-flight during termination: %s, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight invocation did not finish")
	}
	select {
	case <-sup.exited:
		if sup.code != 0 {
			t.Errorf("supervisor exit code %d", sup.code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor did not exit")
	}
	if processAlive(in3.Pid) {
		t.Errorf("bootstrap %d survived the supervisor", in3.Pid)
	}
	// The sidecar drained for the supervisor and exits 0 as well (the
	// kubelet restarts it if the pod is not terminating).
	if code := s.wait(5 * time.Second); code != 0 {
		t.Errorf("sidecar exit code %d", code)
	}
}

// If the sidecar dies, the supervisor stops the bootstrap (no orphans),
// and starts it again when a sidecar comes back.
func TestSupervisorOutlivesSidecar(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	env := []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod"}
	s := startSidecar(t, sidecarOpts{env: env, noWait: true})
	startSupervisor(t, socket, "--", bin.bootstrap)
	s.waitReady()
	fn := func(in *lambdaInvokeInput) { in.FunctionName = aws.String("fn-pod") }
	pid := decodeInspect(t, sdkInvokeFn(t, s.client(), `{"action":"inspect"}`, fn).Payload).Pid

	_ = s.cmd.Process.Kill()
	s.wait(5 * time.Second)
	waitFor(t, 5*time.Second, "the bootstrap to be stopped", func() bool { return !processAlive(pid) })

	s2 := startSidecar(t, sidecarOpts{env: env, noWait: true})
	s2.waitReady()
	out := sdkInvokeFn(t, s2.client(), `{"action":"echo"}`, fn)
	assertBody(t, out.Payload, `{"action":"echo"}`)
}

func TestSupervisorInstall(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "supervisor")
	if out, err := exec.Command(bin.supervisor, "install", dest).CombinedOutput(); err != nil {
		t.Fatalf("install: %v %s", err, out)
	}
	a, _ := os.ReadFile(bin.supervisor)
	b, err := os.ReadFile(dest)
	st, _ := os.Stat(dest)
	if err != nil || !bytes.Equal(a, b) || st.Mode().Perm() != 0o755 {
		t.Errorf("installed copy differs or mode %v (%v)", st.Mode(), err)
	}
}

// Package conformance tests the runtime sidecar as a user sees it: the real
// binary, real bootstraps (aws-lambda-go programs built here, the bash+curl
// bootstrap of the Lambda docs, the supervisor in pod mode) and real
// clients (the AWS SDK for Go v2 Lambda client and plain net/http).
package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/streamtest"

	"github.com/lambdapod/lambdapod/internal/testproc"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

var bin struct {
	sidecar, supervisor, bootstrap string
	// extension is the raw-API external extension; sigterm the
	// aws-lambda-go bootstrap with WithEnableSIGTERM.
	extension, sigterm string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdapod-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.sidecar = filepath.Join(dir, "runtime-sidecar")
	bin.supervisor = filepath.Join(dir, "supervisor")
	bin.bootstrap = filepath.Join(dir, "bootstrap")
	bin.extension = filepath.Join(dir, "extension")
	bin.sigterm = filepath.Join(dir, "sigterm")
	for _, b := range []struct{ out, pkg string }{
		{bin.sidecar, "../cmd"},
		{bin.supervisor, "../supervisor/cmd"},
		{bin.bootstrap, "./testdata/bootstrap"},
		{bin.extension, "./testdata/extension"},
		{bin.sigterm, "./testdata/sigterm"},
	} {
		args := []string{"build", "-o", b.out}
		if os.Getenv("SIDECAR_RACE") != "" && (b.out == bin.sidecar || b.out == bin.supervisor) {
			// SIDECAR_RACE=1 builds the sidecar and supervisor with the race detector.
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		if os.Getenv("SIDECAR_RACE") == "" {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	// A wedged exchange must fail its test, not hang the whole run.
	http.DefaultClient.Timeout = 2 * time.Minute
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sidecar is a running runtime-sidecar process.
type sidecar struct {
	t          *testing.T
	cmd        *exec.Cmd
	URL        string   // invoke side, http://127.0.0.1:port
	Runtime    []string // Runtime API address per slot
	logs       *testproc.Buffer
	exited     chan struct{}
	exitCode   int
	addrsReady chan struct{}
}

type sidecarOpts struct {
	flags     []string
	env       []string
	bootstrap []string // nil: pod mode (no "--")
	noWait    bool     // don't wait for /readyz
	// listenOnly: return as soon as the sidecar listens. A bootstrap that
	// exits at once may never be seen running, so waiting for one can fail.
	listenOnly bool
}

var (
	reInvokeAddr  = regexp.MustCompile(`msg="invoke API listening" addr=(\S+)`)
	reRuntimeAddr = regexp.MustCompile(`msg="runtime API listening" slot=(\d+) addr=(\S+)`)
)

// cleanEnv is the test process environment without Lambda or lambdapod
// variables, so tests control them.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "LAMBDAPOD_") || strings.HasPrefix(kv, "_HANDLER") ||
			strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "TZ=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func startSidecar(t *testing.T, o sidecarOpts) *sidecar {
	t.Helper()
	args := append([]string{"--invoke-addr", "127.0.0.1:0", "--runtime-api", "127.0.0.1:0"}, o.flags...)
	if o.bootstrap != nil {
		args = append(append(args, "--"), o.bootstrap...)
	}
	s := &sidecar{t: t, logs: &testproc.Buffer{}, exited: make(chan struct{}), addrsReady: make(chan struct{})}
	s.cmd = exec.Command(bin.sidecar, args...)
	s.cmd.Env = cleanEnv(o.env...)
	s.cmd.Stdout = s.logs
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			if m := reRuntimeAddr.FindStringSubmatch(line); m != nil {
				s.Runtime = append(s.Runtime, m[2])
			}
			if m := reInvokeAddr.FindStringSubmatch(line); m != nil {
				s.URL = "http://" + m[1]
				once.Do(func() { close(s.addrsReady) })
			}
		}
		_ = s.cmd.Wait()
		s.exitCode = s.cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if strings.Contains(s.logs.String(), "WARNING: DATA RACE") {
			t.Error("the sidecar reported a data race")
		}
		if t.Failed() {
			t.Logf("sidecar output:\n%s", s.logs.String())
		}
	})
	select {
	case <-s.addrsReady:
	case <-s.exited:
		t.Fatalf("sidecar exited early (%d):\n%s", s.exitCode, s.logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("sidecar did not report its addresses:\n%s", s.logs.String())
	}
	if o.listenOnly {
		return s
	}
	if !o.noWait {
		s.waitReady()
	} else if o.bootstrap != nil {
		// The test will act as the runtime itself: it may only call /next
		// once the sidecar has started its bootstrap, as a real runtime
		// can, or the call meets a slot that has no bootstrap yet.
		s.waitChild()
	}
	return s
}

// waitChild waits until the sidecar has a child process: its bootstrap.
func (s *sidecar) waitChild() {
	s.t.Helper()
	// Each thread lists the children it started; Go starts them from any.
	pattern := "/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/task/*/children"
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) > 0 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("the sidecar started no bootstrap within 10s:\n%s", s.logs.String())
}

func (s *sidecar) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("sidecar not ready after 10s:\n%s", s.logs.String())
}

func (s *sidecar) signal(sig syscall.Signal) {
	_ = s.cmd.Process.Signal(sig)
}

// wait waits for the sidecar to exit and returns its exit code.
func (s *sidecar) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.exitCode
	case <-time.After(d):
		s.t.Fatalf("sidecar still running after %s", d)
		return -1
	}
}

func (s *sidecar) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// client is the AWS SDK for Go v2 Lambda client pointed at the sidecar,
// without retries so every answer is seen as sent.
func (s *sidecar) client() *lambda.Client {
	return lambda.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("x", "y", ""),
	}, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(s.URL)
		o.RetryMaxAttempts = 1
		// The sidecar answers as soon as the function has: around the
		// SDK's race with a fast answer (internal/streamtest).
		o.HTTPClient = streamtest.ReadOnlyBodies(o.HTTPClient)
	})
}

const invokePath = "/2015-03-31/functions/function/invocations"

// post sends a plain HTTP request to the invoke side.
func (s *sidecar) post(path string, body string, hdr map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

func (s *sidecar) get(path string) (*http.Response, []byte) {
	s.t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// sdkInvoke invokes through the SDK with a JSON payload.
func sdkInvoke(t *testing.T, c *lambda.Client, payload string, opts ...func(*lambda.InvokeInput)) *lambda.InvokeOutput {
	t.Helper()
	in := &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(payload)}
	for _, o := range opts {
		o(in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.Invoke(ctx, in)
	if err != nil {
		t.Fatalf("Invoke(%s): %v", payload, err)
	}
	return out
}

type inspected struct {
	RequestID     string            `json:"requestId"`
	FunctionArn   string            `json:"functionArn"`
	DeadlineMs    int64             `json:"deadlineMs"`
	TraceID       string            `json:"traceId"`
	Pid           int               `json:"pid"`
	Env           map[string]string `json:"env"`
	FunctionName  string            `json:"functionName"`
	Memory        int               `json:"memory"`
	Version       string            `json:"version"`
	ClientContext struct {
		Custom map[string]string `json:"custom"`
		Client struct {
			InstallationID string `json:"installation_id"`
		} `json:"client"`
	} `json:"clientContext"`
}

func decodeInspect(t *testing.T, b []byte) inspected {
	t.Helper()
	var in inspected
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatalf("bad inspect output %q: %v", b, err)
	}
	return in
}

var reUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func assertHeader(t *testing.T, h http.Header, key, want string) {
	t.Helper()
	if got := h.Values(key); len(got) != 1 || got[0] != want {
		t.Errorf("header %s = %q, want %q", key, got, want)
	}
}

func assertNoHeader(t *testing.T, h http.Header, key string) {
	t.Helper()
	if got := h.Values(key); len(got) != 0 {
		t.Errorf("header %s = %q, want none", key, got)
	}
}

func assertBody(t *testing.T, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("body = %s\nwant   %s", truncate(got), want)
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return string(b)
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie ("Z") has exited.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// metric returns the value of one sample line of /metrics ("" if absent).
func (s *sidecar) metric(series string) string {
	_, b := s.get("/metrics")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

func command(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

type lambdaInvokeInput = lambda.InvokeInput

func sdkInvokeFn(t *testing.T, c *lambda.Client, payload string, opts ...func(*lambda.InvokeInput)) *lambda.InvokeOutput {
	t.Helper()
	return sdkInvoke(t, c, payload, opts...)
}

func itoa(i int) string { return fmt.Sprint(i) }

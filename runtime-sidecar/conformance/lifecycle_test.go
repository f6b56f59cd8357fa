package conformance

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The bootstrap's life cycle as the README documents it: refused Runtime
// API calls, the init back-off, stopping (--stop-grace), draining
// (--drain-timeout) and the sidecar's exit codes.

// What the bootstrap's init-error mode posts (testdata/bootstrap).
const initErrorDoc = `{"errorMessage":"missing config","errorType":"Runtime.ConfigInvalid"}`

// readTimes reads the Unix-ns times the bootstrap appended to path.
func readTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []time.Time
	for _, line := range strings.Fields(string(b)) {
		ns, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			t.Fatalf("%s: bad line %q", path, line)
		}
		out = append(out, time.Unix(0, ns))
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// A /next from a bootstrap that holds an invocation is refused with 403
// InvalidStateTransition and changes nothing: the outstanding invocation
// stays the bootstrap's to answer, and the one queued behind it is neither
// taken nor lost.
func TestNextWhileAnInvocationIsOutstanding(t *testing.T) {
	s := rawRuntime(t, "--timeout", "60s")
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"

	first := s.invokeAsync(`{"n":1}`, nil)
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	second := s.invokeAsync(`{"n":2}`, nil)
	waitFor(t, 5*time.Second, "the second invocation to wait in the queue", func() bool {
		return s.metric("lambdapod_sidecar_queue_depth") == "1"
	})

	// A /next that the sidecar wrongly held open must fail here, not after
	// the default client's two minutes.
	short := &http.Client{Timeout: 5 * time.Second}
	resp, err := short.Get(rt + "/invocation/next")
	if err != nil {
		t.Fatalf("/next while Running: %v (want an immediate 403)", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 {
		t.Errorf("/next while Running: %d, want 403", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertBody(t, body, `{"errorMessage":"State transition from Running to Ready failed for runtime. Error: State transition is not allowed","errorType":"InvalidStateTransition"}`)
	if got := s.metric("lambdapod_sidecar_queue_depth"); got != "1" {
		t.Errorf("queue depth after the refused /next: %s, want 1 (the queued invocation untouched)", got)
	}

	// The outstanding invocation is still the bootstrap's.
	assertAccepted(t, runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(`{"answer":1}`), nil))
	got := awaitCall(t, first)
	if got.resp.StatusCode != 200 {
		t.Errorf("first caller: %d", got.resp.StatusCode)
	}
	assertHeader(t, got.resp.Header, "X-Amzn-RequestId", id)
	assertNoHeader(t, got.resp.Header, "X-Amz-Function-Error")
	assertBody(t, got.body, `{"answer":1}`)

	// And the queued one comes next.
	next = runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	assertBody(t, next.body, `{"n":2}`)
	id2 := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	assertAccepted(t, runtimeDo(t, http.MethodPost, rt+"/invocation/"+id2+"/response", strings.NewReader(`{"answer":2}`), nil))
	got = awaitCall(t, second)
	assertHeader(t, got.resp.Header, "X-Amzn-RequestId", id2)
	assertBody(t, got.body, `{"answer":2}`)
}

// A bootstrap that fails its init, by /init/error or by exiting before its
// first /next, is restarted after 50 ms, 100 ms, ... doubling up to 3.2 s,
// then every 3.2 s. An invocation that arrives meanwhile gets the init error
// at once (200, Unhandled), without waiting for the next start.
func TestInitFailureBackoff(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		answer func(id string) string
	}{
		{"exit-before-next", func(id string) string {
			return `{"errorType":"Runtime.ExitError","errorMessage":"RequestId: ` + id + ` Error: Runtime exited with error: exit status 7"}`
		}},
		// This bootstrap posts its error and hangs: the sidecar stops it.
		{"init-error", func(string) string { return initErrorDoc }},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			startLog := filepath.Join(t.TempDir(), "starts")
			s := startSidecar(t, sidecarOpts{
				bootstrap:  []string{bin.bootstrap, tc.mode},
				env:        []string{"START_LOG=" + startLog},
				listenOnly: true,
			})
			// The 7th failure is followed by the first 3.2 s back-off: an
			// invocation sent now falls inside it.
			waitFor(t, 10*time.Second, "7 starts", func() bool { return len(readTimes(t, startLog)) >= 7 })
			got := awaitCall(t, s.invokeAsync(`{}`, nil))
			answered := time.Now()
			if got.resp.StatusCode != 200 {
				t.Errorf("invocation during the back-off: %d", got.resp.StatusCode)
			}
			assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
			assertBody(t, got.body, tc.answer(got.resp.Header.Get("X-Amzn-RequestId")))
			if resp, _ := s.get("/readyz"); resp.StatusCode != 503 {
				t.Errorf("readyz during the back-off: %d, want 503", resp.StatusCode)
			}

			waitFor(t, 15*time.Second, "9 starts", func() bool { return len(readTimes(t, startLog)) >= 9 })
			starts := readTimes(t, startLog)
			if !answered.Before(starts[7]) {
				t.Errorf("invocation answered %s after the 8th start: it waited out the back-off", answered.Sub(starts[7]))
			}
			t.Logf("gaps between starts: %v", gaps(starts))
			// A gap is the back-off plus the end of one bootstrap and the
			// start of the next: at least the back-off, at most half as much
			// again plus 250 ms (a process start on a busy CI machine). A
			// schedule that starts higher, grows another way or has another
			// cap falls outside within a few steps.
			for k := range 8 {
				want := min(50*time.Millisecond<<k, 3200*time.Millisecond)
				if gap := starts[k+1].Sub(starts[k]); gap < want || gap > want+want/2+250*time.Millisecond {
					t.Errorf("start %d came %s after start %d, want a back-off of %s", k+2, gap, k+1, want)
				}
			}
		})
	}
}

func gaps(ts []time.Time) []string {
	var out []string
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]).Round(time.Millisecond).String())
	}
	return out
}

// On SIGTERM the sidecar sends its bootstrap SIGTERM and, if it is still
// there after --stop-grace, SIGKILL; then it exits 0.
func TestStopGraceKillsABootstrapThatIgnoresSIGTERM(t *testing.T) {
	const grace = time.Second // neither 0 nor the 2s default
	termLog := filepath.Join(t.TempDir(), "sigterm")
	s := startSidecar(t, sidecarOpts{
		bootstrap: []string{bin.bootstrap, "ignore-sigterm"},
		flags:     []string{"--stop-grace", "1s", "--log-level", "debug"},
		env:       []string{"SIGTERM_LOG=" + termLog},
	})
	pid := decodeInspect(t, sdkInvoke(t, s.client(), `{"action":"inspect"}`).Payload).Pid

	s.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the bootstrap to get SIGTERM", func() bool { return len(readTimes(t, termLog)) > 0 })
	waitFor(t, 5*time.Second, "the bootstrap to be killed", func() bool { return !processAlive(pid) })
	gone := time.Now()
	termed := readTimes(t, termLog)[0]
	if d := gone.Sub(termed); d < grace-100*time.Millisecond || d > grace+600*time.Millisecond {
		t.Errorf("bootstrap gone %s after its SIGTERM, want the 1s grace", d)
	}
	if code := s.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(s.logs.String(), `msg="bootstrap stopped" slot=0 exit="signal: killed"`) {
		t.Errorf("no log of the bootstrap stopped by SIGKILL:\n%s", s.logs.String())
	}
}

// SIGTERM with an invocation that outlasts --drain-timeout: when the drain
// timeout expires, the queued invocation gets 503 ServiceException marked
// not-run (it never reached a bootstrap, so a retry is safe), the bootstrap
// is stopped, the running invocation gets Runtime.ExitError, and the
// sidecar exits 0.
func TestDrainTimeoutStopsWhatStillRuns(t *testing.T) {
	const drain = time.Second
	mark := filepath.Join(t.TempDir(), "running")
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--timeout", "60s", "--drain-timeout", "1s"}})
	pid := decodeInspect(t, sdkInvoke(t, s.client(), `{"action":"inspect"}`).Payload).Pid

	running := s.invokeAsync(`{"action":"sleep","sleepMs":30000,"mark":"`+mark+`"}`, nil)
	waitFor(t, 5*time.Second, "the invocation to run", func() bool { return fileExists(mark) })
	queued := s.invokeAsync(`{}`, nil)
	waitFor(t, 5*time.Second, "the second invocation to wait in the queue", func() bool {
		return s.metric("lambdapod_sidecar_queue_depth") == "1"
	})

	sent := time.Now()
	s.signal(syscall.SIGTERM)
	got := awaitCall(t, running)
	// Not before the drain timeout, and not after the 30 s sleep or the
	// default drain timeout (timeout + 10s).
	if d := time.Since(sent); d < drain || d > drain+3*time.Second {
		t.Errorf("running invocation answered %s after SIGTERM, want the 1s drain timeout", d)
	}
	id := got.resp.Header.Get("X-Amzn-RequestId")
	if got.resp.StatusCode != 200 {
		t.Errorf("running invocation: status %d", got.resp.StatusCode)
	}
	assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, got.body, `{"errorType":"Runtime.ExitError","errorMessage":"RequestId: `+id+` Error: Runtime exited with error: signal: terminated"}`)

	q := awaitCall(t, queued)
	if q.resp.StatusCode != 503 {
		t.Errorf("queued invocation: status %d, want 503", q.resp.StatusCode)
	}
	assertHeader(t, q.resp.Header, "X-Amzn-ErrorType", "ServiceException")
	assertHeader(t, q.resp.Header, "Retry-After", "1")
	assertHeader(t, q.resp.Header, "X-Lambdapod-Not-Run", "shutting-down")
	assertBody(t, q.body, `{"Type":"Service","message":"The function instance is shutting down; retry."}`)

	if code := s.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if processAlive(pid) {
		t.Errorf("bootstrap %d still running after the sidecar exited", pid)
	}
}

// Exit codes: 2 on bad configuration, 1 on a runtime failure such as a port
// in use. (0 after a drain: TestSIGTERMDrains and the tests above.)
func TestExitCodes(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{"stop grace over 2s", []string{"--stop-grace", "3s"}, 2, `invalid stop grace "3s": want a duration from 0 to 2s`},
		{"negative drain timeout", []string{"--drain-timeout", "-1s"}, 2, `invalid drain timeout "-1s"`},
		{"invoke port in use", []string{"--invoke-addr", held.Addr().String()}, 1,
			"invoke API: listen tcp " + held.Addr().String() + ": bind: address already in use"},
		{"runtime API port in use", []string{"--runtime-api", held.Addr().String()}, 1,
			"runtime API: listen tcp " + held.Addr().String() + ": bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Ephemeral ports unless the case names one: a sidecar that
			// wrongly starts must not take the default ports of the
			// machine, and must fail the case rather than hang it.
			args := append([]string{"--invoke-addr", "127.0.0.1:0", "--runtime-api", "127.0.0.1:0"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin.sidecar, append(args, "--", bin.bootstrap)...)
			cmd.Env = cleanEnv()
			out, err := cmd.CombinedOutput()
			if code := exitCode(err); code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}

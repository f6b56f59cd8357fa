package conformance

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
)

// extensionsDir makes an extensions directory with the test extension
// under each name (its behaviour follows its name, see
// testdata/extension), plus a file that is not executable, which must not
// be started.
func extensionsDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(bin.extension)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not an extension"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// record returns the lines the extension name wrote to its record.
func record(dir, name string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

type extEvent struct {
	EventType          string `json:"eventType"`
	DeadlineMs         int64  `json:"deadlineMs"`
	RequestID          string `json:"requestId"`
	InvokedFunctionArn string `json:"invokedFunctionArn"`
	ShutdownReason     string `json:"shutdownReason"`
	Tracing            *struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"tracing"`
}

// events decodes the EVENT lines of a record.
func events(t *testing.T, lines []string) []extEvent {
	t.Helper()
	var out []extEvent
	for _, l := range lines {
		if js, ok := strings.CutPrefix(l, "EVENT "); ok {
			var e extEvent
			if err := json.Unmarshal([]byte(js), &e); err != nil {
				t.Fatalf("bad event %q: %v", js, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// An external extension in the extensions directory is started before the
// bootstrap, registers (200, the function's identity), gets one INVOKE per
// invocation with the request id the caller saw, the runtime's deadline,
// the ARN and the trace, and SHUTDOWN (spindown) when the sidecar stops;
// the sidecar waits for it to exit.
func TestExtensionLifecycle(t *testing.T) {
	dir := extensionsDir(t, "recorder")
	rec := t.TempDir()
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
	})
	lines := record(rec, "recorder")
	if len(lines) == 0 || lines[0] != `REGISTER 200 {"accountId":"000000000000","functionName":"function","functionVersion":"$LATEST","handler":""}` {
		t.Fatalf("registration: %q", lines)
	}
	if strings.Contains(s.logs.String(), "extension=README") {
		t.Errorf("a file that is not executable was started as an extension")
	}

	c := s.client()
	var ids []string
	var seen []inspected
	for range 3 {
		out := sdkInvoke(t, c, `{"action":"inspect"}`)
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		ids = append(ids, id)
		seen = append(seen, decodeInspect(t, out.Payload))
	}
	waitFor(t, 5*time.Second, "3 INVOKE events", func() bool { return len(events(t, record(rec, "recorder"))) == 3 })
	for i, e := range events(t, record(rec, "recorder")) {
		if e.EventType != "INVOKE" || e.RequestID != ids[i] || e.InvokedFunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:function" ||
			e.DeadlineMs != seen[i].DeadlineMs || e.Tracing == nil || e.Tracing.Type != "X-Amzn-Trace-Id" || e.Tracing.Value != seen[i].TraceID {
			t.Errorf("event %d = %+v, want INVOKE of %s (deadline %d, trace %s)", i, e, ids[i], seen[i].DeadlineMs, seen[i].TraceID)
		}
	}

	s.stop()
	if s.exitCode != 0 {
		t.Errorf("sidecar exit code %d", s.exitCode)
	}
	lines = record(rec, "recorder")
	evs := events(t, lines)
	if last := evs[len(evs)-1]; last.EventType != "SHUTDOWN" || last.ShutdownReason != "spindown" ||
		last.DeadlineMs < time.Now().Add(-5*time.Second).UnixMilli() || lines[len(lines)-1] != "EXIT" {
		t.Errorf("after stop: %q", lines)
	}
}

// Init ends when every extension has called next: /readyz stays 503 while
// an extension sleeps 1 s between its registration and its first next.
func TestExtensionReadinessWaitsForNext(t *testing.T) {
	dir := extensionsDir(t, "slow-ext")
	rec := t.TempDir()
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
		noWait:    true,
	})
	waitFor(t, 5*time.Second, "the registration", func() bool { return len(record(rec, "slow-ext")) > 0 })
	registered := time.Now()
	for {
		resp, _ := s.get("/readyz")
		if resp.StatusCode == 200 {
			break
		}
		if time.Since(registered) > 5*time.Second {
			t.Fatal("never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(registered); d < 800*time.Millisecond {
		t.Errorf("ready %s after the registration, before the extension's first next (1 s later)", d)
	}
	out := sdkInvoke(t, s.client(), `{"action":"echo"}`)
	assertBody(t, out.Payload, `{"action":"echo"}`)
}

type apiCall struct {
	method, path string
	hdr          map[string]string
	body         string
}

func extCall(t *testing.T, addr string, c apiCall) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(c.method, "http://"+addr+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const (
	pathRegister  = "/2020-01-01/extension/register"
	pathExtNext   = "/2020-01-01/extension/event/next"
	pathExitError = "/2020-01-01/extension/exit/error"
)

// The emulator's refusals: a registration without a name, with an unknown
// event, an internal extension asking SHUTDOWN, registering twice
// (internal and external), registering after the runtime's first next,
// next without or with a bad or unknown identifier, exit/error without its
// error type.
func TestExtensionAPIErrors(t *testing.T) {
	// "idle" never registers by itself: the test registers in its name.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "idle"), []byte("#!/bin/sh\nexec sleep 3600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A bootstrap that never calls /next keeps the runtime in its Init.
	s := startSidecar(t, sidecarOpts{
		flags:      []string{"--extensions-dir", dir},
		bootstrap:  []string{"/bin/sh", "-c", "exec sleep 3600"},
		listenOnly: true,
	})
	waitFor(t, 5*time.Second, "the runtime API address", func() bool { return len(s.Runtime) > 0 })
	addr := s.Runtime[0]
	reg := func(name, body string) (int, http.Header, string) {
		hdr := map[string]string{}
		if name != "" {
			hdr["Lambda-Extension-Name"] = name
		}
		return extCall(t, addr, apiCall{http.MethodPost, pathRegister, hdr, body})
	}
	check := func(what string, code int, body string, wantCode int, wantBody string) {
		t.Helper()
		if code != wantCode || body != wantBody {
			t.Errorf("%s: %d %s\nwant %d %s", what, code, body, wantCode, wantBody)
		}
	}

	// The external one: registered by name, once.
	var code int
	var hdr http.Header
	var body string
	waitFor(t, 5*time.Second, "the extension to be started", func() bool {
		code, hdr, body = reg("idle", `{"events":["INVOKE","SHUTDOWN"]}`)
		return code != 403
	})
	check("register idle", code, body, 200, `{"functionName":"function","functionVersion":"$LATEST","handler":""}`)
	if !reUUID.MatchString(hdr.Get("Lambda-Extension-Identifier")) {
		t.Errorf("identifier %q", hdr.Get("Lambda-Extension-Identifier"))
	}
	code, _, body = reg("idle", `{"events":["INVOKE"]}`)
	check("register idle again", code, body, 403,
		`{"errorMessage":"State transition from Registered to Registered failed for extension idle. Error: State transition is not allowed","errorType":"Extension.InvalidExtensionState"}`)

	code, _, body = reg("", `{"events":["INVOKE"]}`)
	check("no name", code, body, 403, `{"errorMessage":"Empty extension name","errorType":"Extension.InvalidExtensionName"}`)
	code, _, body = reg("idle", `{"events":["INVOKE","FOO"]}`)
	check("unknown event", code, body, 403, `{"errorMessage":"FOO: ErrorInvalidEventType","errorType":"Extension.InvalidEventType"}`)
	code, _, body = reg("inside", `{"events":["SHUTDOWN"]}`)
	check("internal SHUTDOWN", code, body, 403,
		`{"errorMessage":"SHUTDOWN: ShutdownEventNotSupportedForInternalExtension","errorType":"Extension.InvalidEventType"}`)
	code, _, body = reg("inside", `{"events":`)
	check("bad body", code, body, 403, `{"errorMessage":"unexpected end of JSON input","errorType":"InvalidRequestFormat"}`)

	// Internal: while the runtime is in its Init (the bootstrap has been
	// started once the external extension registered).
	waitFor(t, 5*time.Second, "the bootstrap to be started", func() bool {
		code, hdr, body = reg("inside", `{"events":["INVOKE"]}`)
		return code == 200
	})
	internalID := hdr.Get("Lambda-Extension-Identifier")
	code, _, body = reg("inside", `{"events":["INVOKE"]}`)
	check("register internal again", code, body, 403, `{"errorMessage":"Extension with this name already registered","errorType":"Extension.InvalidExtensionState"}`)

	next := func(id string) (int, string) {
		h := map[string]string{}
		if id != "" {
			h["Lambda-Extension-Identifier"] = id
		}
		code, _, body := extCall(t, addr, apiCall{http.MethodGet, pathExtNext, h, ""})
		return code, body
	}
	code, body = next("")
	check("next without identifier", code, body, 403, `{"errorMessage":"Missing Lambda-Extension-Identifier header","errorType":"Extension.MissingExtensionIdentifier"}`)
	code, body = next("nope")
	check("next with a bad identifier", code, body, 403, `{"errorMessage":"Invalid Lambda-Extension-Identifier","errorType":"Extension.InvalidExtensionIdentifier"}`)
	unknown := "3f1c7a52-9a43-4c1e-8d6e-2b7f0e6b1a9d"
	code, body = next(unknown)
	check("next with an unknown identifier", code, body, 403, `{"errorMessage":"Unknown extension `+unknown+`","errorType":"Extension.UnknownExtensionIdentifier"}`)
	code, _, body = extCall(t, addr, apiCall{http.MethodPost, pathExitError, map[string]string{"Lambda-Extension-Identifier": internalID}, ""})
	check("exit/error without its type", code, body, 403, `{"errorMessage":"Lambda-Extension-Function-Error-Type not found","errorType":"Extension.MissingHeader"}`)

	// The runtime's first next closes the registration.
	go func() {
		resp, err := http.Get("http://" + addr + "/2018-06-01/runtime/invocation/next")
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 5*time.Second, "the registration to close", func() bool {
		code, _, body = reg("late", `{"events":["INVOKE"]}`)
		return code == 403
	})
	check("register after the runtime's next", code, body, 403, `{"errorMessage":"Extension registration closed already","errorType":"Extension.RegistrationClosed"}`)
}

// An extension that posts /extension/init/error fails the Init: the
// caller gets 200, X-Amz-Function-Error Unhandled and Lambda's
// Extension.InitError document.
func TestExtensionInitError(t *testing.T) {
	dir := extensionsDir(t, "initerror-ext")
	rec := t.TempDir()
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
		noWait:    true,
	})
	waitFor(t, 5*time.Second, "the init error to be posted", func() bool {
		l := record(rec, "initerror-ext")
		return len(l) > 1
	})
	if l := record(rec, "initerror-ext"); l[1] != `INITERROR 202 {"status":"OK"}` {
		t.Errorf("init/error answered %q", l[1])
	}
	if resp, _ := s.get("/readyz"); resp.StatusCode == 200 {
		t.Errorf("ready although an extension failed its init")
	}
	out := sdkInvoke(t, s.client(), `{"action":"echo"}`)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if out.FunctionError == nil || *out.FunctionError != "Unhandled" {
		t.Errorf("FunctionError = %v, want Unhandled", out.FunctionError)
	}
	assertBody(t, out.Payload, `{"errorType":"Extension.InitError","errorMessage":"RequestId: `+id+` Error: extension initerror-ext failed to initialize: Extension.ConfigInvalid"}`)
}

// aws-lambda-go's WithEnableSIGTERM registers the internal extension
// GoLangEnableSIGTERM from the runtime process; it must be accepted, and
// the function gets SIGTERM (its handler runs) when the sidecar stops.
func TestEnableSIGTERMExtension(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: []string{bin.sigterm}})
	out := sdkInvoke(t, s.client(), `{}`)
	assertBody(t, out.Payload, `"ok"`)
	logs := s.logs.String()
	if !strings.Contains(logs, `msg="extension registered" extension=GoLangEnableSIGTERM kind=internal`) ||
		strings.Contains(logs, "Failed to register internal extension") {
		t.Errorf("GoLangEnableSIGTERM did not register:\n%s", logs)
	}
	s.stop()
	if !strings.Contains(s.logs.String(), "SIGTERM-HANDLER-RAN") {
		t.Errorf("the function's SIGTERM handler did not run:\n%s", s.logs.String())
	}
}

// Pod mode: the supervisor lists the extensions of its directory in its
// hello and starts the one the sidecar asks for; it gets INVOKE and
// SHUTDOWN as standalone.
func TestExtensionPodMode(t *testing.T) {
	dir := extensionsDir(t, "podext")
	rec := t.TempDir()
	socket := filepath.Join(t.TempDir(), "control.sock")
	s := startSidecar(t, sidecarOpts{
		env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod"},
		noWait: true,
	})
	startSupervisorEnv(t, socket, []string{"EXT_RECORD_DIR=" + rec}, "-extensions-dir", dir, "--", bin.bootstrap)
	waitFor(t, 10*time.Second, "the registration", func() bool { return len(record(rec, "podext")) > 0 })
	s.waitReady()
	if l := record(rec, "podext"); l[0] != `REGISTER 200 {"accountId":"000000000000","functionName":"fn-pod","functionVersion":"$LATEST","handler":""}` {
		t.Errorf("registration: %q", l)
	}
	fn := func(in *lambdaInvokeInput) { in.FunctionName = aws.String("fn-pod") }
	out := sdkInvokeFn(t, s.client(), `{"action":"echo"}`, fn)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	waitFor(t, 5*time.Second, "the INVOKE", func() bool { return len(events(t, record(rec, "podext"))) == 1 })
	if e := events(t, record(rec, "podext"))[0]; e.EventType != "INVOKE" || e.RequestID != id ||
		e.InvokedFunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:fn-pod" {
		t.Errorf("INVOKE = %+v, want request %s", e, id)
	}
	s.stop()
	lines := record(rec, "podext")
	if evs := events(t, lines); len(evs) != 2 || evs[1].EventType != "SHUTDOWN" || evs[1].ShutdownReason != "spindown" || lines[len(lines)-1] != "EXIT" {
		t.Errorf("after stop: %q", lines)
	}
}

// The Invoke phase ends when the runtime and the extensions are done: the
// caller has its answer as soon as the runtime responds, but the next
// invocation waits until the extension (500 ms on each INVOKE) has called
// next.
func TestExtensionInvokePhase(t *testing.T) {
	dir := extensionsDir(t, "lag-ext")
	rec := t.TempDir()
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
	})
	c := s.client()
	start := time.Now()
	sdkInvoke(t, c, `{"action":"echo"}`)
	first := time.Since(start)
	sdkInvoke(t, c, `{"action":"echo"}`)
	both := time.Since(start)
	if first > 300*time.Millisecond {
		t.Errorf("the first answer took %s: the caller waited for the extension", first)
	}
	if both < 450*time.Millisecond {
		t.Errorf("both invocations took %s: the second did not wait for the extension's next", both)
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// An extension that crashes after the environment's Init resets it
// (concurrency 1): the other extensions get SHUTDOWN (failure), and the
// extensions and the bootstrap start again before the next invocation,
// which the new extensions get.
func TestExtensionCrashResetsEnvironment(t *testing.T) {
	dir := extensionsDir(t, "crash-ext", "recorder")
	rec := t.TempDir()
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
	})
	c := s.client()
	out := sdkInvoke(t, c, `{"action":"inspect"}`)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	pid := 0
	if out.FunctionError != nil {
		// The crash came before the bootstrap's answer: the invocation
		// fails with it.
		assertBody(t, out.Payload, `{"errorType":"Extension.Crash","errorMessage":"RequestId: `+id+` Error: extension crash-ext exited: exit status 5"}`)
	} else {
		pid = decodeInspect(t, out.Payload).Pid
	}
	waitFor(t, 10*time.Second, "the extensions to register again", func() bool {
		return countPrefix(record(rec, "crash-ext"), "REGISTER 200") == 2 && countPrefix(record(rec, "recorder"), "REGISTER 200") == 2
	})
	evs := events(t, record(rec, "recorder"))
	if len(evs) < 2 || evs[1].EventType != "SHUTDOWN" || evs[1].ShutdownReason != "failure" {
		t.Errorf("recorder got %+v, want INVOKE then SHUTDOWN (failure)", evs)
	}
	out = sdkInvoke(t, c, `{"action":"inspect"}`)
	id2, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if in := decodeInspect(t, out.Payload); in.Pid == pid {
		t.Errorf("the bootstrap was not restarted (pid %d)", pid)
	}
	waitFor(t, 5*time.Second, "the new extension's INVOKE", func() bool {
		evs := events(t, record(rec, "crash-ext"))
		return len(evs) == 2 && evs[1].RequestID == id2
	})
	if got := s.metric(`lambdapod_sidecar_extension_failures_total{type="Extension.Crash"}`); got != "1" {
		t.Errorf("extension failures metric = %q, want 1", got)
	}
}

// A timeout resets the environment (concurrency 1): SHUTDOWN with reason
// timeout, and the extension starts and registers again. With concurrency
// 2 the extensions outlive one slot's reset.
func TestExtensionTimeoutReset(t *testing.T) {
	for _, tc := range []struct {
		concurrency string
		registers   int
	}{{"1", 2}, {"2", 1}} {
		t.Run("concurrency "+tc.concurrency, func(t *testing.T) {
			dir := extensionsDir(t, "recorder")
			rec := t.TempDir()
			s := startSidecar(t, sidecarOpts{
				flags:     []string{"--extensions-dir", dir, "--timeout", "1s", "--concurrency", tc.concurrency},
				env:       []string{"EXT_RECORD_DIR=" + rec},
				bootstrap: []string{bin.bootstrap},
			})
			c := s.client()
			out := sdkInvoke(t, c, `{"action":"sleep","sleepMs":3000}`)
			if out.FunctionError == nil || !strings.Contains(string(out.Payload), "Sandbox.Timedout") {
				t.Fatalf("want a timeout, got %s", out.Payload)
			}
			out = sdkInvoke(t, c, `{"action":"echo"}`)
			assertBody(t, out.Payload, `{"action":"echo"}`)
			id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
			// The extension writes its record as it gets the event.
			waitFor(t, 5*time.Second, "the INVOKE of "+id, func() bool {
				evs := events(t, record(rec, "recorder"))
				return len(evs) > 0 && evs[len(evs)-1].RequestID == id
			})
			lines := record(rec, "recorder")
			if n := countPrefix(lines, "REGISTER 200"); n != tc.registers {
				t.Errorf("registered %d times, want %d: %q", n, tc.registers, lines)
			}
			evs := events(t, lines)
			var shutdowns []string
			for _, e := range evs {
				if e.EventType == "SHUTDOWN" {
					shutdowns = append(shutdowns, e.ShutdownReason)
				}
			}
			if want := tc.registers - 1; len(shutdowns) != want || (want == 1 && shutdowns[0] != "timeout") {
				t.Errorf("SHUTDOWN reasons %q, want %d timeout", shutdowns, want)
			}
		})
	}
}

// An extension that exits before it registers fails the Init with
// Extension.Crash.
func TestExtensionCrashDuringInit(t *testing.T) {
	dir := extensionsDir(t, "noregister-ext")
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", dir},
		env:       []string{"EXT_RECORD_DIR=" + t.TempDir()},
		bootstrap: []string{bin.bootstrap},
		noWait:    true,
	})
	out := sdkInvoke(t, s.client(), `{"action":"echo"}`)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if out.FunctionError == nil || *out.FunctionError != "Unhandled" {
		t.Errorf("FunctionError = %v, want Unhandled", out.FunctionError)
	}
	assertBody(t, out.Payload, `{"errorType":"Extension.Crash","errorMessage":"RequestId: `+id+` Error: extension noregister-ext exited: exit status 4"}`)
	if resp, _ := s.get("/readyz"); resp.StatusCode == 200 {
		t.Errorf("ready although the extension crashed in its init")
	}
}

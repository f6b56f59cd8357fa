package conformance

import (
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// In these tests the test itself is the runtime: the sidecar's "bootstrap"
// is a process that never calls the Runtime API (sleep), and the test
// speaks raw HTTP to the Runtime API, checking every status, header and
// body that Lambda's Runtime API documents (and AWS's runtime interface
// emulator answers).

type call struct {
	resp *http.Response
	body []byte
}

func rawRuntime(t *testing.T, flags ...string) *sidecar {
	return startSidecar(t, sidecarOpts{bootstrap: []string{"/bin/sleep", "3600"}, flags: flags, noWait: true})
}

func runtimeDo(t *testing.T, method, url string, body io.Reader, hdr map[string]string) call {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return call{resp, b}
}

// invokeAsync sends an invocation and returns a channel with its answer.
func (s *sidecar) invokeAsync(body string, hdr map[string]string) <-chan call {
	ch := make(chan call, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL+invokePath, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- call{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- call{resp, b}
	}()
	return ch
}

func awaitCall(t *testing.T, ch <-chan call) call {
	t.Helper()
	select {
	case c := <-ch:
		if c.resp == nil {
			t.Fatal("invoke request failed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the invocation")
		return call{}
	}
}

func assertAccepted(t *testing.T, c call) {
	t.Helper()
	if c.resp.StatusCode != 202 {
		t.Errorf("status %d, want 202 (%s)", c.resp.StatusCode, c.body)
	}
	assertHeader(t, c.resp.Header, "Content-Type", "application/json")
	assertHeader(t, c.resp.Header, "Content-Length", "15")
	if len(c.resp.TransferEncoding) != 0 {
		t.Errorf("202 sent with Transfer-Encoding %v, want a Content-Length", c.resp.TransferEncoding)
	}
	assertBody(t, c.body, `{"status":"OK"}`)
}

func TestRuntimeAPIContract(t *testing.T) {
	s := rawRuntime(t, "--timeout", "5s")
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"

	// Not ready before the runtime's first /next.
	if resp, _ := s.get("/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz before /next: %d", resp.StatusCode)
	}

	// Telemetry/Logs APIs: an unknown extension gets 403 at once, as from
	// the emulator. (Both APIs are served: extensions_test.go,
	// telemetry_test.go.)
	for _, p := range []string{"/2020-08-15/logs", "/2022-07-01/telemetry"} {
		c := runtimeDo(t, http.MethodPut, "http://"+s.Runtime[0]+p, strings.NewReader(`{"events":[]}`),
			map[string]string{"Lambda-Extension-Identifier": "3f1c7a52-9a43-4c1e-8d6e-2b7f0e6b1a9d"})
		if c.resp.StatusCode != 403 {
			t.Errorf("%s: status %d", p, c.resp.StatusCode)
		}
		assertHeader(t, c.resp.Header, "Content-Type", "application/json")
		assertBody(t, c.body, `{"errorMessage":"Unknown extension 3f1c7a52-9a43-4c1e-8d6e-2b7f0e6b1a9d","errorType":"Extension.UnknownExtensionIdentifier"}`)
	}

	cc := `{"custom":{"a":"b"}}`
	trace := "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
	answer := s.invokeAsync(`{"hello":"world"}`, map[string]string{
		"X-Amz-Client-Context": base64.StdEncoding.EncodeToString([]byte(cc)),
		"X-Amzn-Trace-Id":      trace,
		"Content-Type":         "application/json",
	})
	before := time.Now()
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	if next.resp.StatusCode != 200 {
		t.Fatalf("/next: %d %s", next.resp.StatusCode, next.body)
	}
	h := next.resp.Header
	id := h.Get("Lambda-Runtime-Aws-Request-Id")
	if !reUUID.MatchString(id) {
		t.Errorf("request id %q", id)
	}
	// The invocation was taken between before and now, so its deadline is
	// in that window plus the timeout, to the millisecond.
	deadline, err := strconv.ParseInt(h.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if err != nil || deadline < before.Add(5*time.Second).UnixMilli() || deadline > time.Now().Add(5*time.Second).UnixMilli() {
		t.Errorf("deadline %q (%v), want /next + 5s in epoch ms", h.Get("Lambda-Runtime-Deadline-Ms"), err)
	}
	assertHeader(t, h, "Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:function")
	assertHeader(t, h, "Lambda-Runtime-Trace-Id", trace)
	assertHeader(t, h, "Lambda-Runtime-Client-Context", cc)
	assertHeader(t, h, "Content-Type", "application/json")
	assertNoHeader(t, h, "Lambda-Runtime-Cognito-Identity")
	assertBody(t, next.body, `{"hello":"world"}`)
	// Readiness follows the first /next (asynchronously, within moments).
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		resp, _ := s.get("/readyz")
		if resp.StatusCode == 200 {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("readyz after /next: %d", resp.StatusCode)
			break
		}
	}

	// Wrong request id: 400 InvalidRequestID.
	c := runtimeDo(t, http.MethodPost, rt+"/invocation/not-the-id/response", strings.NewReader(`{}`), nil)
	if c.resp.StatusCode != 400 {
		t.Errorf("wrong id: %d", c.resp.StatusCode)
	}
	assertHeader(t, c.resp.Header, "Content-Type", "application/json")
	assertBody(t, c.body, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)

	// /init/error after Init: 403.
	c = runtimeDo(t, http.MethodPost, rt+"/init/error", strings.NewReader(`{}`), nil)
	if c.resp.StatusCode != 403 {
		t.Errorf("init/error while running: %d", c.resp.StatusCode)
	}
	assertBody(t, c.body, `{"errorMessage":"State transition from Running to InitError failed for runtime. Error: State transition is not allowed","errorType":"InvalidStateTransition"}`)

	// The response, as curl -d sends it.
	c = runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(`{"ok":true}`),
		map[string]string{"Content-Type": "application/json"})
	assertAccepted(t, c)
	got := awaitCall(t, answer)
	if got.resp.StatusCode != 200 {
		t.Errorf("caller status %d", got.resp.StatusCode)
	}
	assertHeader(t, got.resp.Header, "X-Amzn-RequestId", id)
	assertHeader(t, got.resp.Header, "Content-Type", "application/json")
	assertNoHeader(t, got.resp.Header, "X-Amz-Function-Error")
	assertBody(t, got.body, `{"ok":true}`)

	// The same response again: 403 (the runtime already responded).
	c = runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(`{"ok":true}`), nil)
	if c.resp.StatusCode != 403 {
		t.Errorf("second /response: %d", c.resp.StatusCode)
	}
	assertBody(t, c.body, `{"errorMessage":"State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. Error: State transition is not allowed","errorType":"InvalidStateTransition"}`)
	c = runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/error", strings.NewReader(`{}`), nil)
	if c.resp.StatusCode != 403 {
		t.Errorf("/error after /response: %d", c.resp.StatusCode)
	}

	// /error: the body reaches the caller unchanged, with Unhandled.
	answer = s.invokeAsync(`{}`, nil)
	next = runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id = next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	assertHeader(t, next.resp.Header, "Content-Type", "application/json") // default
	doc := `{"errorMessage":"no such handler","errorType":"Runtime.NoSuchHandler","stackTrace":["a","b"]}`
	c = runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/error", strings.NewReader(doc),
		map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.NoSuchHandler", "Content-Type": "application/vnd.aws.lambda.error+json"})
	assertAccepted(t, c)
	got = awaitCall(t, answer)
	if got.resp.StatusCode != 200 {
		t.Errorf("caller status %d", got.resp.StatusCode)
	}
	assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertHeader(t, got.resp.Header, "X-Amzn-RequestId", id)
	assertBody(t, got.body, doc)
}

// Lambda-Runtime-Deadline-Ms and the function timeout count from the /next
// that took the invocation, not from its arrival: an invocation that waited
// behind another for 1.5 s still gets its whole timeout. The bounds have no
// slack, so a clock started at arrival, 1.5 s earlier, cannot pass.
func TestRuntimeAPIDeadlineCountsFromNext(t *testing.T) {
	const timeout, queued = 3 * time.Second, 1500 * time.Millisecond
	s := rawRuntime(t, "--timeout", "3s", "--stop-grace", "0s")
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"

	first := s.invokeAsync(`{"n":1}`, nil)
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	firstID := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	second := s.invokeAsync(`{"n":2}`, nil)
	waitFor(t, 5*time.Second, "the second invocation to wait in the queue", func() bool {
		return s.metric("lambdapod_sidecar_queue_depth") == "1"
	})
	arrived := time.Now()
	time.Sleep(queued) // the time spent queued is what this test measures
	assertAccepted(t, runtimeDo(t, http.MethodPost, rt+"/invocation/"+firstID+"/response", strings.NewReader(`{}`), nil))
	if got := awaitCall(t, first); got.resp.StatusCode != 200 {
		t.Fatalf("first invocation: %d %s", got.resp.StatusCode, got.body)
	}

	before := time.Now()
	next = runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	after := time.Now()
	assertBody(t, next.body, `{"n":2}`)
	id := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	deadline, err := strconv.ParseInt(next.resp.Header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if lo, hi := before.Add(timeout).UnixMilli(), after.Add(timeout).UnixMilli(); err != nil || deadline < lo || deadline > hi {
		t.Errorf("deadline %q (%v), want within [%d, %d] (/next + 3s); queued since %d, arrival + 3s = %d",
			next.resp.Header.Get("Lambda-Runtime-Deadline-Ms"), err, lo, hi, arrived.UnixMilli(), arrived.Add(timeout).UnixMilli())
	}

	// The runtime never answers: the caller gets the timeout a whole
	// timeout after /next, not after arrival.
	got := awaitCall(t, second)
	if elapsed := time.Since(before); elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("Sandbox.Timedout %s after /next, want 3s..4s (%s after the invocation queued)", elapsed, time.Since(arrived))
	}
	assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, got.body, `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: `+id+` Error: Task timed out after 3.00 seconds"}`)
}

// A response over 6,291,556 bytes: 413 RequestEntityTooLarge to the
// runtime, Function.ResponseSizeTooLarge to the caller.
func TestRuntimeAPIResponseTooLarge(t *testing.T) {
	s := rawRuntime(t)
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"
	answer := s.invokeAsync(`{}`, nil)
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	c := runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(strings.Repeat("x", 6291557)), nil)
	if c.resp.StatusCode != 413 {
		t.Errorf("status %d, want 413", c.resp.StatusCode)
	}
	assertHeader(t, c.resp.Header, "Content-Type", "application/json")
	assertBody(t, c.body, `{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}`)
	got := awaitCall(t, answer)
	assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, got.body, `{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes)."}`)
}

// Lambda-Runtime-Function-Response-Mode: streaming is passed through as it
// arrives; mid-stream error trailers reach the caller as trailers; any
// other mode value is refused.
func TestRuntimeAPIStreaming(t *testing.T) {
	s := rawRuntime(t)
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"

	type streamed struct {
		resp    *http.Response
		first   string
		rest    string
		trailer http.Header
	}
	answerCh := make(chan streamed, 1)
	firstSeen := make(chan struct{})
	go func() {
		resp, err := http.Post(s.URL+invokePath, "application/json", strings.NewReader(`{}`))
		if err != nil {
			answerCh <- streamed{}
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 7)
		_, _ = io.ReadFull(resp.Body, buf)
		close(firstSeen)
		rest, _ := io.ReadAll(resp.Body)
		answerCh <- streamed{resp, string(buf), string(rest), resp.Trailer}
	}()
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")

	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, rt+"/invocation/"+id+"/response", pr)
	req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
	req.Header.Set("Content-Type", "text/event-stream")
	req.Trailer = http.Header{"Lambda-Runtime-Function-Error-Type": nil, "Lambda-Runtime-Function-Error-Body": nil}
	postDone := make(chan call, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			postDone <- call{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		postDone <- call{resp, b}
	}()
	_, _ = pw.Write([]byte("chunk1\n"))
	select {
	case <-firstSeen: // the caller has the first chunk while the runtime is still streaming
	case <-time.After(5 * time.Second):
		t.Fatal("first chunk did not reach the caller before the stream ended")
	}
	_, _ = pw.Write([]byte("chunk2\n"))
	errDoc := `{"errorMessage":"went wrong mid-stream","errorType":"Runtime.StreamError"}`
	req.Trailer.Set("Lambda-Runtime-Function-Error-Type", "Runtime.StreamError")
	req.Trailer.Set("Lambda-Runtime-Function-Error-Body", base64.StdEncoding.EncodeToString([]byte(errDoc)))
	pw.Close()

	c := <-postDone
	if c.resp == nil {
		t.Fatal("streaming POST failed")
	}
	assertAccepted(t, c)
	a := <-answerCh
	if a.resp == nil {
		t.Fatal("invoke failed")
	}
	if a.resp.StatusCode != 200 || a.first+a.rest != "chunk1\nchunk2\n" {
		t.Errorf("caller got %d %q", a.resp.StatusCode, a.first+a.rest)
	}
	assertHeader(t, a.resp.Header, "Content-Type", "text/event-stream")
	assertHeader(t, a.resp.Header, "X-Amzn-RequestId", id)
	if got := a.trailer.Get("Lambda-Runtime-Function-Error-Type"); got != "Runtime.StreamError" {
		t.Errorf("error type trailer %q", got)
	}
	if b, _ := base64.StdEncoding.DecodeString(a.trailer.Get("Lambda-Runtime-Function-Error-Body")); string(b) != errDoc {
		t.Errorf("error body trailer %q", b)
	}

	// Any other response mode: 400 to the runtime, function error to the caller.
	answer := s.invokeAsync(`{}`, nil)
	next = runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id = next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	c = runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(`{}`),
		map[string]string{"Lambda-Runtime-Function-Response-Mode": "buffered"})
	if c.resp.StatusCode != 400 {
		t.Errorf("bad mode: %d", c.resp.StatusCode)
	}
	assertBody(t, c.body, `{"errorMessage":"Invalid function response mode","errorType":"InvalidFunctionResponseMode"}`)
	got := awaitCall(t, answer)
	assertHeader(t, got.resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, got.body, `{"errorType":"Runtime.InvalidResponseModeHeader","errorMessage":"RequestId: `+id+` Error: invalid response mode header value: buffered"}`)
}

// A response after the timeout: the caller already has Sandbox.Timedout;
// the late /response gets 400 InvalidRequestID.
func TestRuntimeAPILateResponse(t *testing.T) {
	s := rawRuntime(t, "--timeout", "300ms", "--stop-grace", "0s")
	rt := "http://" + s.Runtime[0] + "/2018-06-01/runtime"
	answer := s.invokeAsync(`{}`, nil)
	next := runtimeDo(t, http.MethodGet, rt+"/invocation/next", nil, nil)
	id := next.resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	got := awaitCall(t, answer)
	assertBody(t, got.body, `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: `+id+` Error: Task timed out after 0.30 seconds"}`)
	c := runtimeDo(t, http.MethodPost, rt+"/invocation/"+id+"/response", strings.NewReader(`{}`), nil)
	if c.resp.StatusCode != 400 {
		t.Errorf("late response: %d", c.resp.StatusCode)
	}
	assertBody(t, c.body, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)
}

// The bash+curl bootstrap of the Lambda developer guide.
const bashBootstrap = `#!/bin/bash
set -euo pipefail
while true
do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" -X GET "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  RESPONSE="Echoing request: '$EVENT_DATA'"
  curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$RESPONSE" >/dev/null
  rm -f "$HEADERS"
done
`

func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBashCurlBootstrap(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: []string{writeScript(t, "bootstrap", bashBootstrap)}})
	c := s.client()
	for i := range 3 {
		out := sdkInvoke(t, c, `{"n":`+strconv.Itoa(i)+`}`)
		if out.StatusCode != 200 || out.FunctionError != nil {
			t.Errorf("StatusCode %d FunctionError %v", out.StatusCode, out.FunctionError)
		}
		assertBody(t, out.Payload, `Echoing request: '{"n":`+strconv.Itoa(i)+`}'`)
	}
	resp, _ := s.post(invokePath, `{}`, nil)
	// curl -d posts application/x-www-form-urlencoded; it is passed on.
	assertHeader(t, resp.Header, "Content-Type", "application/x-www-form-urlencoded")
}

// An init error posted to /init/error is reported to the first caller
// (200, Unhandled, the posted document); the bootstrap is restarted with a
// back-off and the error keeps being reported while it keeps failing.
func TestInitErrorReportedToFirstCaller(t *testing.T) {
	doc := `{"errorMessage":"missing config","errorType":"Runtime.ConfigInvalid"}`
	script := writeScript(t, "bootstrap", `#!/bin/bash
curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \
  -H 'Lambda-Runtime-Function-Error-Type: Runtime.ConfigInvalid' -d '`+doc+`' >/dev/null
exit 1
`)
	s := startSidecar(t, sidecarOpts{bootstrap: []string{script}, noWait: true})
	for range 2 {
		resp, body := s.post(invokePath, `{}`, nil)
		if resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
		assertHeader(t, resp.Header, "X-Amz-Function-Error", "Unhandled")
		assertBody(t, body, doc)
	}
	if resp, _ := s.get("/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz with a broken bootstrap: %d, want 503", resp.StatusCode)
	}
}

// A bootstrap that exits before its first /next: Runtime.ExitError to the
// first caller.
func TestExitBeforeNext(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: []string{bin.bootstrap, "exit-before-next"}, listenOnly: true})
	resp, body := s.post(invokePath, `{}`, nil)
	id := resp.Header.Get("X-Amzn-RequestId")
	assertHeader(t, resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, body, `{"errorType":"Runtime.ExitError","errorMessage":"RequestId: `+id+` Error: Runtime exited with error: exit status 7"}`)
}

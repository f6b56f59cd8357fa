package conformance

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdapod/lambdapod/internal/contract"
)

func goBootstrap() []string { return []string{bin.bootstrap} }

// The SDK's RequestResponse invoke of an aws-lambda-go JSON handler: status,
// payload, executed version, no function error, and the request id the SDK
// reads from the response equals the one the function saw.
func TestSDKInvokeEcho(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()

	out := sdkInvoke(t, c, `{"action":"echo","n":1,"s":"héllo"}`)
	if out.StatusCode != 200 {
		t.Errorf("StatusCode = %d, want 200", out.StatusCode)
	}
	if string(out.Payload) != `{"action":"echo","n":1,"s":"héllo"}` {
		t.Errorf("Payload = %s", out.Payload)
	}
	if aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Errorf("ExecutedVersion = %q", aws.ToString(out.ExecutedVersion))
	}
	if out.FunctionError != nil {
		t.Errorf("FunctionError = %q, want nil", *out.FunctionError)
	}

	out = sdkInvoke(t, c, `{"action":"inspect"}`)
	in := decodeInspect(t, out.Payload)
	rid, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if !reUUID.MatchString(in.RequestID) || rid != in.RequestID {
		t.Errorf("SDK request id %q, function saw %q; want the same UUID", rid, in.RequestID)
	}
}

// Plain HTTP: every header of the Invoke response, and what the function
// sees of the invocation (context, deadline, ARN, trace id, client context)
// and of its environment.
func TestHTTPInvokeHeadersAndContext(t *testing.T) {
	s := startSidecar(t, sidecarOpts{
		bootstrap: goBootstrap(),
		flags:     []string{"--timeout", "7s"},
		// Never passed on to the bootstrap.
		env: []string{"_LAMBDA_SERVER_PORT=1234", "AWS_LAMBDA_MAX_CONCURRENCY=4", "LAMBDAPOD_SECRET=x", "KEEP_ME=yes"},
	})
	cc := `{"client":{"installation_id":"inst-1"},"custom":{"k":"v"},"env":{"e":"f"}}`
	trace := "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
	before := time.Now()
	resp, body := s.post(invokePath, `{"action":"inspect"}`, map[string]string{
		"X-Amz-Client-Context": base64.StdEncoding.EncodeToString([]byte(cc)),
		"X-Amzn-Trace-Id":      trace,
		"Content-Type":         "application/json",
	})
	after := time.Now()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	in := decodeInspect(t, body)
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertHeader(t, resp.Header, "X-Amz-Executed-Version", "$LATEST")
	assertHeader(t, resp.Header, "X-Amzn-RequestId", in.RequestID)
	assertHeader(t, resp.Header, "Content-Length", strconv.Itoa(len(body)))
	assertNoHeader(t, resp.Header, "X-Amz-Function-Error")
	if !reUUID.MatchString(in.RequestID) {
		t.Errorf("request id %q is not a UUID", in.RequestID)
	}
	if in.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:function" {
		t.Errorf("function ARN = %q", in.FunctionArn)
	}
	if lo, hi := before.Add(7*time.Second).UnixMilli()-5, after.Add(7*time.Second).UnixMilli()+5; in.DeadlineMs < lo || in.DeadlineMs > hi {
		t.Errorf("deadline %d not within [%d, %d] (now + 7s timeout)", in.DeadlineMs, lo, hi)
	}
	if in.TraceID != trace {
		t.Errorf("trace id = %q, want %q", in.TraceID, trace)
	}
	if in.ClientContext.Custom["k"] != "v" || in.ClientContext.Client.InstallationID != "inst-1" {
		t.Errorf("client context = %+v", in.ClientContext)
	}
	if in.FunctionName != "function" || in.Memory != 3008 || in.Version != "$LATEST" {
		t.Errorf("lambdacontext name/memory/version = %q/%d/%q", in.FunctionName, in.Memory, in.Version)
	}
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        "function",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/function",
		"AWS_REGION":                      "us-east-1",
		"AWS_DEFAULT_REGION":              "us-east-1",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_RUNTIME_API":          s.Runtime[0],
		"LAMBDA_TASK_ROOT":                "/var/task",
		"LAMBDA_RUNTIME_DIR":              "/var/runtime",
		"TZ":                              ":UTC",
		"LANG":                            "en_US.UTF-8",
		"_X_AMZN_TRACE_ID":                trace,
	}
	for k, v := range want {
		if in.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, in.Env[k], v)
		}
	}
	if !strings.Contains(in.Env["AWS_LAMBDA_LOG_STREAM_NAME"], "/[$LATEST]") {
		t.Errorf("AWS_LAMBDA_LOG_STREAM_NAME = %q", in.Env["AWS_LAMBDA_LOG_STREAM_NAME"])
	}
	for _, k := range []string{"_LAMBDA_SERVER_PORT", "AWS_LAMBDA_MAX_CONCURRENCY", "LAMBDAPOD_SECRET"} {
		if v, ok := in.Env[k]; ok {
			t.Errorf("env %s = %q leaked to the bootstrap", k, v)
		}
	}

	// A qualified invoke shows in the ARN; a trace id is generated when the
	// caller sends none.
	resp, body = s.post("/2015-03-31/functions/function:$LATEST/invocations", `{"action":"inspect"}`, nil)
	in = decodeInspect(t, body)
	if resp.StatusCode != 200 || in.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:function:$LATEST" {
		t.Errorf("qualified invoke: status %d, ARN %q", resp.StatusCode, in.FunctionArn)
	}
	if !strings.HasPrefix(in.TraceID, "Root=1-") {
		t.Errorf("generated trace id = %q", in.TraceID)
	}

	// Client context that is not base64: 400, not 500.
	resp, body = s.post(invokePath, `{}`, map[string]string{"X-Amz-Client-Context": "%%%not base64"})
	if resp.StatusCode != 400 {
		t.Errorf("bad client context: status %d", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "InvalidRequestContentException")
	assertBody(t, body, `{"Type":"User","message":"Client context must be a valid Base64-encoded JSON object."}`)
}

// A function error (aws-lambda-go handler returning an error): 200 +
// X-Amz-Function-Error: Unhandled + the error document; nothing is reset.
func TestFunctionError(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	pid := decodeInspect(t, sdkInvoke(t, c, `{"action":"inspect"}`).Payload).Pid

	out := sdkInvoke(t, c, `{"action":"error"}`)
	if out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("StatusCode %d FunctionError %q", out.StatusCode, aws.ToString(out.FunctionError))
	}
	assertBody(t, out.Payload, `{"errorMessage":"something went wrong","errorType":"errorString"}`)

	resp, body := s.post(invokePath, `{"action":"error"}`, nil)
	assertHeader(t, resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertBody(t, body, `{"errorMessage":"something went wrong","errorType":"errorString"}`)

	if p := decodeInspect(t, sdkInvoke(t, c, `{"action":"inspect"}`).Payload).Pid; p != pid {
		t.Errorf("bootstrap was restarted after a function error (pid %d → %d)", pid, p)
	}
	if got := s.metric(`lambdapod_sidecar_invocations_total{outcome="function_error"}`); got != "2" {
		t.Errorf("function_error count = %q, want 2", got)
	}
}

// A panic: aws-lambda-go reports it via /error and exits; the caller gets
// the error, and the next invocation runs in a fresh bootstrap.
func TestPanicThenRecovery(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	pid := decodeInspect(t, sdkInvoke(t, c, `{"action":"inspect"}`).Payload).Pid

	out := sdkInvoke(t, c, `{"action":"panic"}`)
	if aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("FunctionError = %q", aws.ToString(out.FunctionError))
	}
	var doc struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
		StackTrace   []any  `json:"stackTrace"`
	}
	if err := json.Unmarshal(out.Payload, &doc); err != nil || doc.ErrorMessage != "the handler panicked" || doc.ErrorType != "string" || len(doc.StackTrace) == 0 {
		t.Errorf("panic document = %s (%v)", out.Payload, err)
	}
	in := decodeInspect(t, sdkInvoke(t, c, `{"action":"inspect"}`).Payload)
	if in.Pid == pid {
		t.Errorf("bootstrap pid %d unchanged after the panic exit", pid)
	}
}

// A timeout: 200 + Unhandled + Sandbox.Timedout within 100 ms of the
// deadline; the bootstrap is reset and the next invocation succeeds in a
// new process.
func TestTimeoutResetsBootstrap(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--timeout", "1s"}})
	c := s.client()
	pid := decodeInspect(t, sdkInvoke(t, c, `{"action":"inspect"}`).Payload).Pid

	start := time.Now()
	resp, body := s.post(invokePath, `{"action":"sleep","sleepMs":5000}`, nil)
	elapsed := time.Since(start)
	if elapsed < time.Second || elapsed > 1100*time.Millisecond {
		t.Errorf("timeout answered after %s, want 1s..1.1s", elapsed)
	}
	id := resp.Header.Get("X-Amzn-RequestId")
	if resp.StatusCode != 200 || !reUUID.MatchString(id) {
		t.Errorf("status %d, request id %q", resp.StatusCode, id)
	}
	assertHeader(t, resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertBody(t, body, `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: `+id+` Error: Task timed out after 1.00 seconds"}`)

	out := sdkInvoke(t, c, `{"action":"inspect"}`)
	if out.FunctionError != nil {
		t.Fatalf("invocation after the timeout failed: %s", out.Payload)
	}
	if in := decodeInspect(t, out.Payload); in.Pid == pid {
		t.Errorf("bootstrap not reset: same pid %d", pid)
	}
	if processAlive(pid) {
		t.Errorf("timed-out bootstrap %d still running", pid)
	}
	if got := s.metric(`lambdapod_sidecar_bootstrap_restarts_total{reason="timeout"}`); got != "1" {
		t.Errorf("timeout restarts = %q, want 1", got)
	}
}

// A runtime exit mid-invocation: Runtime.ExitError, then recovery.
func TestCrashThenRecovery(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	out := sdkInvoke(t, c, `{"action":"crash"}`)
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("StatusCode %d FunctionError %q", out.StatusCode, aws.ToString(out.FunctionError))
	}
	assertBody(t, out.Payload, `{"errorType":"Runtime.ExitError","errorMessage":"RequestId: `+id+` Error: Runtime exited with error: exit status 3"}`)
	out = sdkInvoke(t, c, `{"action":"echo"}`)
	if out.FunctionError != nil || string(out.Payload) != `{"action":"echo"}` {
		t.Errorf("after crash: %q %s", aws.ToString(out.FunctionError), out.Payload)
	}
}

// A response over 6,291,556 bytes: the runtime gets 413, the caller
// Function.ResponseSizeTooLarge; the bootstrap (which exits on the 413)
// comes back.
func TestResponseTooLarge(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	out := sdkInvoke(t, c, `{"action":"large"}`)
	if aws.ToString(out.FunctionError) != "Unhandled" {
		t.Errorf("FunctionError = %q", aws.ToString(out.FunctionError))
	}
	assertBody(t, out.Payload, `{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes)."}`)
	out = sdkInvoke(t, c, `{"action":"echo"}`)
	if out.FunctionError != nil || string(out.Payload) != `{"action":"echo"}` {
		t.Errorf("after 413: %q %s", aws.ToString(out.FunctionError), out.Payload)
	}
}

// A request body over 6 MiB (6,291,456 bytes) is refused with Lambda's 413
// before it reaches the bootstrap; exactly the limit is accepted. An Event
// payload is refused over 1 MiB.
func TestRequestTooLarge(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	big := `"` + strings.Repeat("a", 6291456-2) + `"`
	resp, body := s.post(invokePath, big+" ", nil)
	if resp.StatusCode != 413 {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "RequestTooLargeException")
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertBody(t, body, `{"Type":"User","message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`)

	_, err := s.client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(big + " ")})
	var tooLarge *types.RequestTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("SDK error = %v, want RequestTooLargeException", err)
	}

	resp, body = s.post(invokePath, big, nil)
	if resp.StatusCode != 200 || len(body) != len(big) {
		t.Errorf("payload of exactly 6291456 bytes: status %d, %d bytes back", resp.StatusCode, len(body))
	}

	event := `"` + strings.Repeat("a", 1<<20-1) + `"`
	_, err = s.client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("function"),
		InvocationType: types.InvocationTypeEvent, Payload: []byte(event)})
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)") {
		t.Errorf("Event over 1 MiB: SDK error = %v, want RequestTooLargeException", err)
	}
	// Lambda takes Events of up to 1 MB (256 KB was InvokeAsync's limit).
	for _, tc := range []struct {
		size     int
		accepted bool
	}{{600_000, true}, {1_100_000, false}} {
		out, err := s.client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("function"),
			InvocationType: types.InvocationTypeEvent, Payload: []byte(`"` + strings.Repeat("e", tc.size-2) + `"`)})
		switch {
		case tc.accepted && (err != nil || out.StatusCode != 202):
			t.Errorf("Event of %d bytes: %v (status %v), want 202", tc.size, err, out)
		case !tc.accepted && !errors.As(err, &tooLarge):
			t.Errorf("Event of %d bytes: SDK error = %v, want RequestTooLargeException", tc.size, err)
		}
	}
}

// Function names: name, name:qualifier, partial and full ARN, percent-
// encoded; another function is 404 ResourceNotFoundException, a name that
// cannot be one 400 InvalidParameterValueException (as in the activator).
func TestFunctionNames(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	for _, name := range []string{"function", "function:$LATEST", "000000000000:function:function",
		"arn:aws:lambda:us-east-1:000000000000:function:function", "arn:aws:lambda:us-east-1:000000000000:function:function:$LATEST"} {
		out := sdkInvoke(t, c, `{"action":"echo"}`, func(in *lambda.InvokeInput) { in.FunctionName = aws.String(name) })
		if out.StatusCode != 200 || string(out.Payload) != `{"action":"echo"}` {
			t.Errorf("%s: %d %s", name, out.StatusCode, out.Payload)
		}
	}
	resp, _ := s.post("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afunction/invocations", `{}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("percent-encoded ARN: status %d", resp.StatusCode)
	}

	resp, body := s.post("/2015-03-31/functions/nope/invocations", `{}`, nil)
	if resp.StatusCode != 404 {
		t.Errorf("unknown function: status %d", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "ResourceNotFoundException")
	assertHeader(t, resp.Header, "Content-Type", "application/json")
	assertBody(t, body, `{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"}`)

	for _, name := range []string{"nope", "function:7", "arn:aws:lambda:us-east-1:000000000000:function:other"} {
		_, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("%s: error %v, want ResourceNotFoundException", name, err)
		}
	}

	for _, name := range []string{"arn:aws:lambda:us-east-1:000000000000:function", "arn:aws:s3:::bucket", "a:b:c:d:e", "function:", "bad name"} {
		_, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		var bad *types.InvalidParameterValueException
		if !errors.As(err, &bad) {
			t.Errorf("%s: error %v, want InvalidParameterValueException", name, err)
		}
	}
	resp, body = s.post("/2015-03-31/functions/function:$LATEST/invocations?Qualifier=7", `{}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "does not match the specified qualifier") {
		t.Errorf("qualifier in the name and the parameter differ: %d %s", resp.StatusCode, body)
	}
}

// Event: 202 with an empty body at once, then the function runs. DryRun:
// 204 and the function does not run.
func TestEventAndDryRun(t *testing.T) {
	dir := t.TempDir()
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), env: []string{"RECORD_DIR=" + dir}})
	c := s.client()

	out := sdkInvoke(t, c, `{"action":"dryrun-must-not-run"}`, func(in *lambda.InvokeInput) { in.InvocationType = types.InvocationTypeDryRun })
	if out.StatusCode != 204 || len(out.Payload) != 0 {
		t.Errorf("DryRun: StatusCode %d payload %q", out.StatusCode, out.Payload)
	}

	resp, body := s.post(invokePath, `{"action":"record","via":"http"}`, map[string]string{"X-Amz-Invocation-Type": "Event"})
	if resp.StatusCode != 202 || len(body) != 0 {
		t.Errorf("Event: status %d body %q", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Amzn-RequestId")
	waitFor(t, 5*time.Second, "the event to run", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, id))
		return err == nil && string(b) == `{"action":"record","via":"http"}`
	})

	out = sdkInvoke(t, c, `{"action":"record","via":"sdk"}`, func(in *lambda.InvokeInput) { in.InvocationType = types.InvocationTypeEvent })
	if out.StatusCode != 202 || len(out.Payload) != 0 {
		t.Errorf("SDK Event: StatusCode %d payload %q", out.StatusCode, out.Payload)
	}
	waitFor(t, 5*time.Second, "the SDK event to run", func() bool {
		entries, _ := os.ReadDir(dir)
		return len(entries) == 2
	})
	// The DryRun never reached the function.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if strings.Contains(string(b), "dryrun") {
			t.Errorf("DryRun payload reached the function")
		}
	}
}

// One invocation at a time per bootstrap: concurrent invocations wait in
// the queue and all succeed, in turn.
func TestConcurrentInvocationsQueue(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	start := time.Now()
	var wg sync.WaitGroup
	pids := make([]string, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := sdkInvoke(t, c, `{"action":"sleep","sleepMs":200}`)
			if out.FunctionError != nil {
				t.Errorf("invocation %d failed: %s", i, out.Payload)
			}
			pids[i] = string(out.Payload)
		}()
	}
	wg.Wait()
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Errorf("4 × 200 ms on one bootstrap took %s: they overlapped", el)
	}
	for _, p := range pids[1:] {
		if p != pids[0] {
			t.Errorf("results differ (different bootstraps?): %q vs %q", p, pids[0])
		}
	}
}

// LAMBDAPOD_CONCURRENCY=2: two bootstraps, each on its own Runtime API
// port, run invocations side by side.
func TestConcurrencyTwo(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), env: []string{"LAMBDAPOD_CONCURRENCY=2"}})
	if len(s.Runtime) != 2 || s.Runtime[0] == s.Runtime[1] {
		t.Fatalf("runtime API addresses %v, want two", s.Runtime)
	}
	c := s.client()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	pids := map[string]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := sdkInvoke(t, c, `{"action":"sleep","sleepMs":300}`)
			mu.Lock()
			pids[string(out.Payload)] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if el < 600*time.Millisecond || el > 1100*time.Millisecond {
		t.Errorf("4 × 300 ms on two bootstraps took %s, want ~600ms", el)
	}
	if len(pids) != 2 {
		t.Errorf("results from %d bootstraps, want 2: %v", len(pids), pids)
	}
}

// A full queue: 429 TooManyRequestsException with Retry-After, and the
// queued invocations still succeed.
func TestQueueOverflow(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--queue-size", "1"}})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := s.post(invokePath, `{"action":"sleep","sleepMs":400}`, nil)
			codes[i] = resp.StatusCode
		}()
		time.Sleep(100 * time.Millisecond) // first running, second queued
	}
	resp, body := s.post(invokePath, `{"action":"echo"}`, nil)
	if resp.StatusCode != 429 {
		t.Errorf("overflow status %d, want 429", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "TooManyRequestsException")
	assertHeader(t, resp.Header, "Retry-After", "1")
	assertBody(t, body, `{"Type":"User","message":"Rate Exceeded: the function's invocation queue is full (1 waiting).","Reason":"ConcurrentInvocationLimitExceeded"}`)
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Errorf("queued invocations: %v, want 200 200", codes)
	}
	_, err := s.client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{}`)})
	if err != nil {
		t.Errorf("after the overflow: %v", err)
	}
}

// aws-lambda-go streams an io.Reader result as a chunked body without the
// response-mode header (a buffered invoke); the caller gets all of it.
// A reader that fails mid-stream sets the error trailers: the caller gets
// the function error.
func TestGoReaderResponses(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	resp, body := s.post(invokePath, `{"action":"stream"}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	assertHeader(t, resp.Header, "Content-Type", "application/octet-stream")
	assertNoHeader(t, resp.Header, "X-Amz-Function-Error")
	assertBody(t, body, "chunk-1\nchunk-2\n")

	resp, body = s.post(invokePath, `{"action":"streamerr"}`, nil)
	assertHeader(t, resp.Header, "X-Amz-Function-Error", "Unhandled")
	assertBody(t, body, `{"errorMessage":"stream broke","errorType":"errorString"}`)

	resp, body = s.post(invokePath, `{"action":"furl"}`, nil)
	assertHeader(t, resp.Header, "Content-Type", "application/vnd.awslambda.http-integration-response")
	assertBody(t, body, `{"statusCode":201,"headers":{"Content-Type":"text/plain"}}`+"\x00\x00\x00\x00\x00\x00\x00\x00"+"hello from a function URL stream")

	// And the bootstrap is still the same healthy process.
	resp, _ = s.post(invokePath, `{"action":"echo"}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("after streams: %d", resp.StatusCode)
	}
}

// Health, readiness and metrics.
func TestHealthAndMetrics(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	if resp, _ := s.get("/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	if resp, _ := s.get("/readyz"); resp.StatusCode != 200 {
		t.Errorf("readyz %d", resp.StatusCode)
	}
	s.post(invokePath, `{}`, nil)
	s.post(invokePath, `{"action":"error"}`, nil)
	for series, want := range map[string]string{
		`lambdapod_sidecar_invocations_total{outcome="success"}`:                 "1",
		`lambdapod_sidecar_invocations_total{outcome="function_error"}`:          "1",
		`lambdapod_sidecar_invocations_in_flight`:                                "0",
		`lambdapod_sidecar_queue_depth`:                                          "0",
		`lambdapod_sidecar_ready`:                                                "1",
		`lambdapod_sidecar_invocation_duration_seconds_count{outcome="success"}`: "1",
		`lambdapod_sidecar_init_duration_seconds_count`:                          "1",
		`lambdapod_sidecar_bootstrap_restarts_total{reason="exit"}`:              "0",
	} {
		if got := s.metric(series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	resp, _ := s.get("/metrics")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("metrics content type %q", ct)
	}
	if resp, body := s.get("/2015-03-31/functions/function/invocations"); resp.StatusCode != http.StatusNotFound ||
		resp.Header.Get("X-Amzn-ErrorType") != "UnknownOperationException" {
		t.Errorf("GET invocations: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// SIGTERM: readyz fails at once, new invocations are refused, the running
// and queued invocations complete, the bootstrap is stopped and the sidecar
// exits 0.
func TestSIGTERMDrains(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	pid := decodeInspect(t, sdkInvoke(t, s.client(), `{"action":"inspect"}`).Payload).Pid
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i, ms := range []int{500, 100} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := s.post(invokePath, `{"action":"sleep","sleepMs":`+strconv.Itoa(ms)+`}`, nil)
			results[i] = strconv.Itoa(resp.StatusCode) + " " + string(body)
		}()
		time.Sleep(100 * time.Millisecond)
	}
	s.signal(syscall.SIGTERM)
	waitFor(t, time.Second, "readyz to fail", func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	resp, body := s.post(invokePath, `{}`, nil)
	if resp.StatusCode != 503 {
		t.Errorf("invoke while draining: %d %s", resp.StatusCode, body)
	}
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "ServiceException")
	// the mark that lets the activator send it to another pod
	assertHeader(t, resp.Header, "X-Lambdapod-Not-Run", "shutting-down")
	wg.Wait()
	if want := `200 {"pid":` + strconv.Itoa(pid) + `,"slept":500}`; results[0] != want {
		t.Errorf("in-flight invocation: %q, want %q", results[0], want)
	}
	if want := `200 {"pid":` + strconv.Itoa(pid) + `,"slept":100}`; results[1] != want {
		t.Errorf("queued invocation: %q, want %q", results[1], want)
	}
	if code := s.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if processAlive(pid) {
		t.Errorf("bootstrap %d still running after the sidecar exited", pid)
	}
}

// Configuration errors exit 2 with a message.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--timeout", "soon", "--", bin.bootstrap}, nil, "invalid timeout"},
		{nil, []string{"LAMBDAPOD_CONTROL_SOCKET=" + filepath.Join(t.TempDir(), "c.sock")}, "AWS_LAMBDA_FUNCTION_NAME (or --function-name) is required in pod mode"},
		{[]string{"--concurrency", "0", "--", bin.bootstrap}, nil, "invalid concurrency"},
		{[]string{"--", bin.bootstrap}, []string{"LAMBDAPOD_INVOKE_KEY=c2hvcnQ="}, "invalid invoke public key"},
		{[]string{"--invoke-key", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "--", bin.bootstrap}, nil, "--function-namespace (LAMBDAPOD_FUNCTION_NAMESPACE) is required"},
	} {
		cmd := command(bin.sidecar, tc.args...)
		cmd.Env = cleanEnv(tc.env...)
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %v: exit %d, output %q; want 2 and %q", tc.args, tc.env, code, out, tc.want)
		}
	}
}

// With --max-inflight (the manager sets it to the concurrency), the pod
// admits no more invocations than it has slots, whoever sends them: another
// one is refused at once with 429 marked not-run busy, never queued, and
// the AWS SDK sees a throttle.
func TestAdmissionRefusesWhatDoesNotFit(t *testing.T) {
	dir := t.TempDir()
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--max-inflight", "1"}, env: []string{"RECORD_DIR=" + dir}})
	done := make(chan int, 1)
	go func() {
		resp, _ := s.post(invokePath, `{"action":"sleep","sleepMs":600}`, nil)
		done <- resp.StatusCode
	}()
	time.Sleep(150 * time.Millisecond) // the first one runs
	start := time.Now()
	resp, body := s.post(invokePath, `{"action":"record"}`, nil)
	if resp.StatusCode != 429 || time.Since(start) > 300*time.Millisecond {
		t.Errorf("while the only slot is taken: %d after %v, want 429 at once", resp.StatusCode, time.Since(start))
	}
	assertHeader(t, resp.Header, "X-Lambdapod-Not-Run", "busy")
	assertHeader(t, resp.Header, "X-Amzn-ErrorType", "TooManyRequestsException")
	assertBody(t, body, `{"Type":"User","message":"Rate Exceeded: every one of the pod's 1 concurrency slots is taken","Reason":"ConcurrentInvocationLimitExceeded"}`)
	_, err := s.client().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"action":"record"}`),
		InvocationType: types.InvocationTypeEvent})
	var throttled *types.TooManyRequestsException
	if !errors.As(err, &throttled) {
		t.Errorf("an Event while busy: %v, want TooManyRequestsException", err)
	}
	if code := <-done; code != 200 {
		t.Errorf("the running invocation: %d", code)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d refused invocations ran anyway", len(entries))
	}
	resp, _ = s.post(invokePath, `{"action":"echo"}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("once the slot is free: %d", resp.StatusCode)
	}
	if got := s.metric(`lambdapod_sidecar_invocations_rejected_total{reason="busy"}`); got != "2" {
		t.Errorf("busy refusals = %q, want 2", got)
	}
}

// A caller that bounds the start (the activator, with its activation
// timeout) gets its invocation run when a bootstrap takes it in time, and
// dropped, never run, and answered not-run when none does: the caller's
// wait and the pod agree on whether it ran.
func TestStartWithin(t *testing.T) {
	dir := t.TempDir()
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), env: []string{"RECORD_DIR=" + dir}})
	within := map[string]string{"X-Lambdapod-Start-Within": "1000"}
	if resp, body := s.post(invokePath, `{"action":"echo"}`, within); resp.StatusCode != 200 {
		t.Fatalf("a free bootstrap: %d %s", resp.StatusCode, body)
	}

	done := make(chan struct{})
	go func() { s.post(invokePath, `{"action":"sleep","sleepMs":800}`, nil); close(done) }()
	time.Sleep(150 * time.Millisecond) // the only bootstrap is busy: the next one queues
	start := time.Now()
	resp, body := s.post(invokePath, `{"action":"record"}`, map[string]string{"X-Lambdapod-Start-Within": "200"})
	took := time.Since(start)
	if resp.StatusCode != 503 || took < 200*time.Millisecond || took > 600*time.Millisecond {
		t.Errorf("not started within 200ms: %d after %v %s", resp.StatusCode, took, body)
	}
	assertHeader(t, resp.Header, "X-Lambdapod-Not-Run", "not-started")
	<-done
	time.Sleep(200 * time.Millisecond)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the dropped invocation ran")
	}
}

// Anyone who can reach a pod can post to its sidecar. With --max-inflight
// (as in every function pod), 40 callers posting 6 MB payloads at once
// cost the sidecar the buffers of its one slot, not of 40: the others are
// refused before their bodies are read into memory.
func TestDirectFloodStaysWithinTheSlots(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--max-inflight", "1"}})
	big := `{"action":"sleep","sleepMs":1500,"pad":"` + strings.Repeat("x", 6<<20-100) + `"}`
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(s.URL+invokePath, "application/json", strings.NewReader(big))
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	peak := peakRSS(t, s.cmd.Process.Pid)
	t.Logf("40 posts of 6 MB: answers %v, the sidecar's peak RSS %d MiB", count, peak>>20)
	if count[200] < 1 || count[200]+count[429] != 40 {
		t.Errorf("answers %v, want one 200 at least and 429 busy for the rest", count)
	}
	if peak > 96<<20 {
		t.Errorf("peak RSS %d MiB, want the buffers of one slot (under 96 MiB)", peak>>20)
	}
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// Attack: a caller that takes a slot and then sends its payload a byte at
// a time kept the slot for as long as it liked; with --max-inflight, the
// function was busy for everyone else. The payload has a deadline: the
// slow caller is refused and the slot is free again.
func TestASlowPayloadGivesItsSlotBack(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--max-inflight", "1", "--body-timeout", "400ms"}})
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 100\r\n\r\n{\"action\":", invokePath)
	time.Sleep(100 * time.Millisecond) // it holds the only slot now
	if resp, _ := s.post(invokePath, `{"action":"echo"}`, nil); resp.StatusCode != 429 {
		t.Fatalf("while the slow caller holds the slot: %d, want 429", resp.StatusCode)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the slow caller got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("the slow caller: %d, want 400", resp.StatusCode)
	}
	if resp, body := s.post(invokePath, `{"action":"echo"}`, nil); resp.StatusCode != 200 {
		t.Fatalf("after the slow caller's deadline: %d %s, want 200 (the slot is free)", resp.StatusCode, body)
	}
}

// The activator's request id (X-Lambdapod-Request-Id, the one its caller
// got, an Event's 202 before the function ran) becomes the invocation's:
// the function's context and the answer carry it. A value that is not a
// request id is ignored: the sidecar makes its own.
func TestActivatorRequestIDIsTheInvocations(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	const id = "5f3a9c1e-8b2d-4e6f-a1b0-c9d8e7f6a5b4"
	resp, body := s.post(invokePath, `{"action":"inspect"}`, map[string]string{contract.HeaderRequestID: id})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if in := decodeInspect(t, body); in.RequestID != id {
		t.Errorf("the function saw request id %q, want the activator's %q", in.RequestID, id)
	}
	assertHeader(t, resp.Header, "X-Amzn-RequestId", id)

	for _, bad := range []string{"not-an-id", id + "0", "../../etc/passwd", strings.Repeat("a", 36)} {
		resp, body = s.post(invokePath, `{"action":"inspect"}`, map[string]string{contract.HeaderRequestID: bad})
		in := decodeInspect(t, body)
		if resp.StatusCode != 200 || in.RequestID == bad || !reUUID.MatchString(in.RequestID) {
			t.Errorf("with %s: %q: status %d, request id %q, want 200 and a UUID of the sidecar's own", contract.HeaderRequestID, bad, resp.StatusCode, in.RequestID)
		}
	}
}

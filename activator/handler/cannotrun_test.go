package handler

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// admission is what the manager's status says of a Function whose pods a
// namespace enforcing the restricted Pod Security Standard refuses.
var admission = &PodsCannotRun{Reason: "PodsCannotRun",
	Message: `Deployment hello cannot create pods (FailedCreate): pods "hello-abc" is forbidden: violates PodSecurity "restricted:latest"`}

// lambdaFailed is the start of Lambda's answer for a function in the
// Failed state.
const lambdaFailed = "The operation cannot be performed at this time. The function is currently in the following state: Failed. "

// checkCannotRunInvoke asserts the Invoke API's answer for a function
// whose pods cannot run: Lambda's 409 ResourceConflictException, naming
// the cause.
func checkCannotRunInvoke(t *testing.T, code int, errType, body string) {
	t.Helper()
	var doc map[string]string
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if code != http.StatusConflict || errType != "ResourceConflictException" || doc["Type"] != "User" ||
		!strings.HasPrefix(doc["message"], lambdaFailed) || !strings.Contains(doc["message"], "function default/hello cannot run: "+admission.Message) {
		t.Errorf("got %d %s %q, want 409 ResourceConflictException: %s...%s", code, errType, body, lambdaFailed, admission.Message)
	}
}

// checkCannotRunHTTP asserts an HTTP route's answer for it: 503 with a
// JSON message naming the cause.
func checkCannotRunHTTP(t *testing.T, code int, contentType, body string) {
	t.Helper()
	var doc map[string]string
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || contentType != "application/json" ||
		doc["message"] != "Service Unavailable: function default/hello cannot run: "+admission.Message {
		t.Errorf("got %d %s %q, want 503 naming the cause", code, contentType, body)
	}
}

// A request for a function whose pods cannot run, while it has no ready
// pod, is answered at once with the cause, not after the activation
// timeout.
func TestCannotRunAnswersAtOnce(t *testing.T) {
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 10)
	e.pools.Fail(hello, admission)

	start := time.Now()
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{}`)
	checkCannotRunInvoke(t, w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body.String())
	w = e.do("GET", "/default/hello/x", "")
	checkCannotRunHTTP(t, w.Code, w.Header().Get("Content-Type"), w.Body.String())
	// An Event is refused too, rather than accepted with 202 to fail out
	// of sight.
	w = e.do("POST", "/2015-03-31/functions/hello/invocations", `{}`, "X-Amz-Invocation-Type", "Event")
	checkCannotRunInvoke(t, w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body.String())
	if d := time.Since(start); d > time.Second {
		t.Errorf("answered in %s, want at once", d)
	}
	if q := queued(e); q != 0 {
		t.Errorf("%d requests held", q)
	}

	// Once the status no longer says so, requests wait for a pod again.
	e.pools.Fail(hello, nil)
	c, br := rawInvoke(t, e, `{"again":1}`)
	waitUntil(t, "the request held", func() bool { return queued(e) == 1 })
	sc := newSidecar(t, echo)
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	if code, body := readAnswer(t, c, br); code != 200 || body != `{"again":1}` {
		t.Fatalf("after the failure cleared: %d %q", code, body)
	}
}

// Requests held while the function scales from zero are answered with the
// cause as soon as its status says its pods cannot run: parked ones
// (Invoke API and HTTP routes) and one that waits on its goroutine.
func TestHeldRequestsAreAnsweredWhenPodsCannotRun(t *testing.T) {
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 100)
	const n = 5
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i] = rawInvoke(t, e, fmt.Sprintf(`{"i":%d}`, i))
	}
	hc, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	fmt.Fprintf(hc, "GET /default/hello/x HTTP/1.1\r\nHost: activator\r\n\r\n")
	hbr := bufio.NewReader(hc)
	waitUntil(t, "the requests parked", func() bool { return e.parker.Parked() == n+1 })
	// Without a server to park on, a request waits on its goroutine.
	var direct *struct {
		code    int
		errType string
		body    string
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := e.direct("POST", "/2015-03-31/functions/hello/invocations", `{}`)
		direct = &struct {
			code    int
			errType string
			body    string
		}{w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body.String()}
	}()
	waitUntil(t, "every request held", func() bool { return queued(e) == n+2 })

	start := time.Now()
	e.pools.Fail(hello, admission)
	for i := range conns {
		_ = conns[i].SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(readers[i], nil)
		if err != nil {
			t.Fatalf("request %d: no answer within 1s: %v", i, err)
		}
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		checkCannotRunInvoke(t, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b.String())
	}
	_ = hc.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := http.ReadResponse(hbr, nil)
	if err != nil {
		t.Fatalf("HTTP request: no answer within 1s: %v", err)
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	resp.Body.Close()
	checkCannotRunHTTP(t, resp.StatusCode, resp.Header.Get("Content-Type"), b.String())
	wg.Wait()
	checkCannotRunInvoke(t, direct.code, direct.errType, direct.body)
	if d := time.Since(start); d > time.Second {
		t.Errorf("held requests answered in %s, want at once", d)
	}
	if q := queued(e); q != 0 || e.parker.Parked() != 0 {
		t.Errorf("%d requests still held, %d parked", q, e.parker.Parked())
	}
}

// A function with a ready pod is served whatever its status says (a
// rolling update whose new pods fail leaves the old ones serving); once
// its last pod goes, the requests waiting for a slot are answered with
// the cause.
func TestReadyPodsServeAFunctionWhosePodsCannotRun(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		if strings.Contains(string(p), "hold") {
			<-release
		}
		echo(w, r, p)
	})
	// Before the sidecar closes (cleanups run last first), which waits for
	// its handlers.
	t.Cleanup(done)
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 10)
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	e.pools.Fail(hello, admission)
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{"x":1}`)
	if w.Code != 200 || w.Body.String() != `{"x":1}` {
		t.Fatalf("with a ready pod: %d %q", w.Code, w.Body)
	}

	// The pod's one slot is taken; the next request waits for it.
	held, hbr := rawInvoke(t, e, `{"hold":1}`)
	waitUntil(t, "the pod busy", func() bool { return sc.inflight.Load() == 1 })
	waiting, wbr := rawInvoke(t, e, `{"y":1}`)
	waitUntil(t, "the request held", func() bool { return queued(e) == 1 })
	e.pools.SetEndpoints(hello, nil)
	_ = waiting.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := http.ReadResponse(wbr, nil)
	if err != nil {
		t.Fatalf("no answer within 1s once the last pod went: %v", err)
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	resp.Body.Close()
	checkCannotRunInvoke(t, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b.String())
	done()
	if code, body := readAnswer(t, held, hbr); code != 200 || body != `{"hold":1}` {
		t.Fatalf("the request in flight: %d %q", code, body)
	}
}

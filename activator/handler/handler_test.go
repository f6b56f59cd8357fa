package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

type fakeFunctions map[string]Function

func (f fakeFunctions) Lookup(ns, name string) (Function, bool) {
	fn, ok := f[ns+"/"+name]
	return fn, ok
}

// sidecar is a fake runtime sidecar: it answers invocations with fn.
type sidecar struct {
	*httptest.Server
	inflight, peak atomic.Int32
	calls          atomic.Int32
}

func newSidecar(t *testing.T, fn func(w http.ResponseWriter, r *http.Request, payload []byte)) *sidecar {
	s := &sidecar{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		s.calls.Add(1)
		if r.Header.Get(contract.HeaderStartWithin) == "" {
			t.Errorf("the activator did not bound the start: no %s", contract.HeaderStartWithin)
		}
		if !strings.HasPrefix(r.URL.Path, "/2015-03-31/functions/") && !strings.HasPrefix(r.URL.Path, invokeapi.StreamPathPrefix) ||
			r.Header.Get("X-Amz-Invocation-Type") != "RequestResponse" {
			t.Errorf("sidecar got %s %s type %q", r.Method, r.URL.Path, r.Header.Get("X-Amz-Invocation-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Amzn-RequestId", "sidecar-rid")
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		fn(w, r, b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sidecar) addr() string { return strings.TrimPrefix(s.URL, "http://") }

type env struct {
	h     *Chain
	pools *queue.Registry
	colds atomic.Int32
	// url is a real server of the chain, whose held requests park (as in
	// the activator); do calls it.
	url    string
	parker *park.Parker
	client *http.Client
}

func newEnv(t *testing.T, o Options, fns fakeFunctions, maxQueue int) *env {
	e := &env{pools: queue.NewRegistry(maxQueue)}
	e.pools.Capacity = func(k queue.Key) int {
		if f, ok := fns.Lookup(k.Namespace, k.Name); ok {
			return f.Concurrency
		}
		return 1
	}
	e.pools.OnCold = func(queue.Key) { e.colds.Add(1) }
	if o.ActivationTimeout == 0 {
		o.ActivationTimeout = 2 * time.Second
	}
	o.Route.DefaultNamespace = "default"
	e.h = New(o, fns, e.pools, proxy.New(), nil)
	srv := &http.Server{Handler: e.h, ReadHeaderTimeout: 10 * time.Second}
	e.parker = park.New(srv)
	e.h.SetParker(e.parker)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	go func() { _ = e.parker.Serve() }()
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100, DisableCompression: true}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = e.parker.Shutdown(ctx)
		e.client.CloseIdleConnections()
	})
	return e
}

// do sends a request to the chain's server and records the answer.
func (e *env) do(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	r, err := http.NewRequest(method, e.url+target, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	resp, err := e.client.Do(r)
	if err != nil {
		w.WriteHeader(599)
		fmt.Fprint(w, err)
		return w
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return w
}

// direct serves a request on the chain without a server (no parking).
func (e *env) direct(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

var fn1 = fakeFunctions{"default/hello": {Timeout: time.Second, Concurrency: 1, EventFormat: event.HTTPAPIv2}}

func echo(w http.ResponseWriter, r *http.Request, p []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(p)
}

func TestInvokeAPIPassesTheSidecarAnswerThrough(t *testing.T) {
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		if r.Header.Get("X-Amz-Client-Context") != "e30=" {
			t.Errorf("client context not forwarded: %q", r.Header.Get("X-Amz-Client-Context"))
		}
		echo(w, r, p)
	})
	e := newEnv(t, Options{}, fn1, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{"x":1}`, "Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20200101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=abc", "X-Amz-Client-Context", "e30=")
	if w.Code != 200 || w.Body.String() != `{"x":1}` || w.Header().Get("X-Amzn-RequestId") != "sidecar-rid" || w.Header().Get("X-Amz-Executed-Version") != "$LATEST" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %v %q", w.Code, w.Header(), w.Body)
	}
	// Function errors pass through as 200 + X-Amz-Function-Error.
	sc2 := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		_, _ = w.Write([]byte(`{"errorMessage":"boom","errorType":"errorString"}`))
	})
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc2.addr()})
	w = e.do("POST", "/2015-03-31/functions/default.hello/invocations", `{}`)
	if w.Code != 200 || w.Header().Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(w.Body.String(), "boom") {
		t.Fatalf("function error: %d %v %q", w.Code, w.Header(), w.Body)
	}
}

func TestUnknownFunctions(t *testing.T) {
	e := newEnv(t, Options{}, fn1, 10)
	w := e.do("POST", "/2015-03-31/functions/nope/invocations", `{}`)
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != 404 || w.Header().Get("X-Amzn-ErrorType") != "ResourceNotFoundException" || body["Type"] != "User" ||
		body["message"] != "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope" {
		t.Fatalf("unknown invoke: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = e.do("POST", "/2015-03-31/functions/hello:prod/invocations", `{}`)
	if w.Code != 404 || w.Header().Get("X-Amzn-ErrorType") != "ResourceNotFoundException" {
		t.Fatalf("unknown qualifier: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = e.do("GET", "/default/nope/x", "")
	if w.Code != 404 || !strings.Contains(w.Body.String(), `no function \"nope\" in namespace \"default\"`) {
		t.Fatalf("unknown HTTP: %d %s", w.Code, w.Body)
	}
	w = e.do("GET", "/", "")
	if w.Code != 404 || !strings.Contains(w.Body.String(), "/{namespace}/{function}") {
		t.Fatalf("no route: %d %s", w.Code, w.Body)
	}
	// A name Lambda allows but no Function can have is not found, as the
	// sidecar and Lambda say; a name Lambda refuses is a bad parameter.
	w = e.do("POST", "/2015-03-31/functions/Bad_Name/invocations", `{}`)
	if w.Code != 404 || w.Header().Get("X-Amzn-ErrorType") != "ResourceNotFoundException" {
		t.Fatalf("name no Function can have: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = e.do("POST", "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function/invocations", `{}`)
	if w.Code != 400 || w.Header().Get("X-Amzn-ErrorType") != "InvalidParameterValueException" {
		t.Fatalf("malformed ARN: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if e.colds.Load() != 0 {
		t.Fatal("an unknown function poked the autoscaler")
	}
}

func TestHTTPRouteBecomesAnEventAndTheResultAResponse(t *testing.T) {
	var seen atomic.Value
	seen.Store("")
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(p, &ev); err != nil {
			t.Error(err)
		}
		seen.Store(ev.RequestContext.RequestID)
		resp := events.APIGatewayV2HTTPResponse{StatusCode: 201, Headers: map[string]string{"content-type": "text/plain"},
			Cookies: []string{"a=1"}, Body: ev.RequestContext.HTTP.Method + " " + ev.RawPath + "?" + ev.RawQueryString}
		_ = json.NewEncoder(w).Encode(resp)
	})
	e := newEnv(t, Options{}, fn1, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	w := e.do("PUT", "/default/hello/a/b?x=1", "body")
	if w.Code != 201 || w.Body.String() != "PUT /a/b?x=1" || w.Header().Get("Set-Cookie") != "a=1" || w.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("got %d %v %q", w.Code, w.Header(), w.Body)
	}
	// As API Gateway's HTTP API answers: the request id the function saw.
	if id := w.Header().Get("Apigw-Requestid"); id == "" || id != seen.Load() {
		t.Errorf("Apigw-Requestid %q, want the event's requestContext.requestId %q", id, seen.Load())
	}
}

func TestHTTPErrorsAndTimeouts(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	// startWithin is what the activator told the pod of the last hung
	// invocation (ms): its own limit counts from it.
	var startWithin atomic.Int64
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		switch {
		case strings.Contains(string(p), "/error"):
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			_, _ = w.Write([]byte(`{"errorType":"errorString","errorMessage":"boom"}`))
		case strings.Contains(string(p), "/timedout"):
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			_, _ = w.Write([]byte(`{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out after 1.00 seconds"}`))
		case strings.Contains(string(p), "/malformed"):
			_, _ = w.Write([]byte(`not json`))
		case strings.Contains(string(p), "hang"):
			ms, _ := strconv.ParseInt(r.Header.Get(contract.HeaderStartWithin), 10, 64)
			startWithin.Store(ms)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	// A function timeout longer than the slack below, so that counting it
	// twice shows.
	const fnTimeout = 400 * time.Millisecond
	fns := fakeFunctions{"default/hello": {Timeout: fnTimeout, Concurrency: 10, EventFormat: event.HTTPAPIv2}}
	// The activator's own limit is only a backstop for a pod that says
	// nothing (this fake one): the start bound (the activation timeout)
	// plus the function's timeout plus the grace.
	e := newEnv(t, Options{TimeoutGrace: 20 * time.Millisecond, ActivationTimeout: 300 * time.Millisecond}, fns, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	check := func(w *httptest.ResponseRecorder, code int, body string) {
		t.Helper()
		if w.Code != code || !strings.Contains(w.Body.String(), body) {
			t.Fatalf("got %d %q, want %d with %q", w.Code, w.Body, code, body)
		}
	}
	check(e.do("GET", "/default/hello/error", ""), 502, `{"message":"Internal Server Error"}`)
	check(e.do("GET", "/default/hello/timedout", ""), 504, "timed out after 400ms")
	check(e.do("GET", "/default/hello/malformed", ""), 502, `{"message":"Internal Server Error"}`)
	// The backstop is documented as what was left of the activation
	// timeout when the invocation was sent, plus the function's timeout,
	// plus the grace: about 720 ms here. The slack is for a loaded machine;
	// a limit twice as long, or the function's timeout counted twice, is
	// past it.
	const slack = 250 * time.Millisecond
	backstop := func(what string, d time.Duration) {
		t.Helper()
		sw := time.Duration(startWithin.Load()) * time.Millisecond
		if sw <= 200*time.Millisecond || sw > 300*time.Millisecond {
			t.Fatalf("%s: the pod was told to start within %v, want what was left of the 300ms activation timeout", what, sw)
		}
		want := sw + fnTimeout + 20*time.Millisecond
		if d < want || d > want+slack {
			t.Fatalf("%s: answered after %v, want the activator's limit of %v (start within %v + timeout 400ms + grace 20ms), at most %v late",
				what, d, want, sw, slack)
		}
	}
	start := time.Now()
	check(e.do("GET", "/default/hello/hang", ""), 504, "function default/hello timed out")
	backstop("HTTP route", time.Since(start))
	// On the Invoke API a timeout is a function error, never a 5xx.
	startWithin.Store(0)
	start = time.Now()
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `"hang"`)
	if w.Code != 200 || w.Header().Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(w.Body.String(), `"errorType":"Sandbox.Timedout"`) ||
		!strings.Contains(w.Body.String(), "Task timed out after 0.40 seconds") {
		t.Fatalf("invoke timeout: %d %v %s", w.Code, w.Header(), w.Body)
	}
	backstop("Invoke API", time.Since(start))
}

func TestColdStartHoldsThenDrains(t *testing.T) {
	sc := newSidecar(t, echo)
	e := newEnv(t, Options{}, fn1, 100)
	const n = 20
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := e.do("POST", "/2015-03-31/functions/hello/invocations", fmt.Sprintf(`{"i":%d}`, i))
			if w.Body.String() != fmt.Sprintf(`{"i":%d}`, i) {
				t.Errorf("request %d got %q", i, w.Body)
			}
			codes <- w.Code
		}(i)
	}
	waitUntil(t, "every request held", func() bool { return queued(e) == n })
	if e.colds.Load() == 0 {
		t.Fatal("the autoscaler was not poked")
	}
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("status %d", c)
		}
	}
	if sc.peak.Load() != 1 {
		t.Fatalf("peak concurrency on the pod %d, want 1", sc.peak.Load())
	}
}

func TestOverflowAndActivationTimeout(t *testing.T) {
	for _, status := range []int{429, 503} {
		e := newEnv(t, Options{ActivationTimeout: 300 * time.Millisecond, OverflowStatus: status, RetryAfter: 3 * time.Second}, fn1, 1)
		held := make(chan *httptest.ResponseRecorder)
		go func() { held <- e.do("GET", "/default/hello/", "") }()
		waitUntil(t, "the first request held", func() bool { return queued(e) == 1 })
		w := e.do("GET", "/default/hello/", "")
		if w.Code != status || w.Header().Get("Retry-After") != "3" || !strings.Contains(w.Body.String(), "too many requests are waiting for function default/hello") {
			t.Fatalf("overflow: %d %v %s", w.Code, w.Header(), w.Body)
		}
		w = e.do("POST", "/2015-03-31/functions/hello/invocations", "{}")
		wantType := "TooManyRequestsException"
		if status == 503 {
			wantType = "ServiceException"
		}
		if w.Code != status || w.Header().Get("X-Amzn-ErrorType") != wantType || w.Header().Get("Retry-After") != "3" {
			t.Fatalf("invoke overflow: %d %v %s", w.Code, w.Header(), w.Body)
		}
		w = e.do("POST", "/2015-03-31/functions/hello/invocations", "{}", "X-Amz-Invocation-Type", "Event")
		if w.Code != 429 || w.Header().Get("X-Amzn-ErrorType") != "TooManyRequestsException" {
			t.Fatalf("Event into a full queue: %d %v %s", w.Code, w.Header(), w.Body)
		}
		w = <-held
		if w.Code != 504 || !strings.Contains(w.Body.String(), "activation timed out: function default/hello had no ready pod after 300ms") {
			t.Fatalf("activation timeout: %d %s", w.Code, w.Body)
		}
	}
	e := newEnv(t, Options{ActivationTimeout: 50 * time.Millisecond}, fn1, 1)
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", "{}")
	if w.Code != 504 || w.Header().Get("X-Amzn-ErrorType") == "" || !strings.Contains(w.Body.String(), "activation timed out") {
		t.Fatalf("invoke activation timeout: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

func TestInvocationTypes(t *testing.T) {
	got := make(chan string, 1)
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		got <- string(p)
		echo(w, r, p)
	})
	e := newEnv(t, Options{}, fn1, 10)
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{}`, "X-Amz-Invocation-Type", "DryRun")
	if w.Code != 204 || w.Header().Get("X-Amzn-RequestId") == "" || e.colds.Load() != 0 {
		t.Fatalf("DryRun: %d %v (cold pokes %d)", w.Code, w.Header(), e.colds.Load())
	}
	w = e.do("POST", "/2015-03-31/functions/hello/invocations", `{"async":true}`, "X-Amz-Invocation-Type", "Event")
	if w.Code != 202 || w.Header().Get("X-Amzn-RequestId") == "" {
		t.Fatalf("Event: %d %v", w.Code, w.Header())
	}
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	select {
	case p := <-got:
		if p != `{"async":true}` {
			t.Fatalf("async payload %q", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the Event invocation never reached the pod")
	}
	w = e.do("POST", "/2015-03-31/functions/hello/invocations", `{"x"`)
	if w.Code != 400 || w.Header().Get("X-Amzn-ErrorType") != "InvalidRequestContentException" {
		t.Fatalf("bad JSON: %d %v", w.Code, w.Header())
	}
	w = e.do("POST", "/2015-03-31/functions/hello/invocations", `{}`, "X-Amz-Invocation-Type", "Sometimes")
	if w.Code != 400 || w.Header().Get("X-Amzn-ErrorType") != "InvalidParameterValueException" {
		t.Fatalf("bad type: %d %v", w.Code, w.Header())
	}
	w = e.do("POST", "/2015-03-31/functions/hello/invocations", `"`+strings.Repeat("x", invokeapi.MaxSyncPayload)+`"`)
	if w.Code != 413 || w.Header().Get("X-Amzn-ErrorType") != "RequestTooLargeException" {
		t.Fatalf("too large: %d %v", w.Code, w.Header())
	}
}

func TestUnreachablePodIsSkipped(t *testing.T) {
	sc := newSidecar(t, echo)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	e := newEnv(t, Options{}, fakeFunctions{"default/hello": {Timeout: time.Second, Concurrency: 1}}, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{dead, sc.addr()})
	for i := 0; i < 4; i++ {
		w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{"ok":1}`)
		if w.Code != 200 || w.Body.String() != `{"ok":1}` {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{dead})
	w := e.do("POST", "/2015-03-31/functions/hello/invocations", `{}`)
	if w.Code != 502 || w.Header().Get("X-Amzn-ErrorType") != "ResourceNotReadyException" {
		t.Fatalf("all pods dead: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// A pod that began shutting down before its EndpointSlice said so answers
// 503 with the sidecar's not-run mark: the request goes to another pod, and
// the draining pod gets no more requests.
func TestShuttingDownPodIsRetiredAndTheRequestRetried(t *testing.T) {
	draining := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		w.Header().Set(contract.HeaderNotRun, "shutting-down")
		w.Header().Set("Retry-After", "1")
		w.Header().Set("X-Amzn-ErrorType", "ServiceException")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"Type":"Service","message":"The function instance is shutting down; retry."}`)
	})
	healthy := newSidecar(t, echo)
	e := newEnv(t, Options{}, fakeFunctions{"default/hello": {Timeout: time.Second, Concurrency: 1}}, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{draining.addr(), healthy.addr()})
	for i := 0; i < 6; i++ {
		w := e.do("POST", "/2015-03-31/functions/hello/invocations", fmt.Sprintf(`{"n":%d}`, i))
		if w.Code != 200 || w.Body.String() != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	if n := draining.calls.Load(); n != 1 {
		t.Errorf("the shutting-down pod got %d requests, want 1 (then retired)", n)
	}
	if n := healthy.calls.Load(); n != 6 {
		t.Errorf("the healthy pod got %d requests, want all 6", n)
	}
	// HTTP routes too: with the shutting-down pod as the only one, the
	// request waits for a pod as at zero (none comes here, so the
	// activation times out) instead of failing at once.
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{draining.addr()})
	w := e.do("GET", "/default/hello/x", "")
	if w.Code != 504 || !strings.Contains(w.Body.String(), "no ready pod") {
		t.Errorf("only a shutting-down pod: %d %s, want 504 activation timeout", w.Code, w.Body)
	}
	if n := draining.calls.Load(); n != 2 {
		t.Errorf("the shutting-down pod got %d requests in all, want 2", n)
	}
}

func TestStreamingHTTPResponse(t *testing.T) {
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		w.Header().Set("Content-Type", event.StreamContentType)
		_, _ = w.Write(append([]byte(`{"statusCode":200,"headers":{"content-type":"text/plain"}}`), make([]byte, 8)...))
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("chunk1 "))
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("chunk2"))
	})
	e := newEnv(t, Options{}, fn1, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})
	w := e.do("GET", "/default/hello/", "")
	if w.Code != 200 || w.Body.String() != "chunk1 chunk2" || w.Header().Get("Content-Type") != "text/plain" || w.Header().Get("Apigw-Requestid") == "" {
		t.Fatalf("got %d %v %q", w.Code, w.Header(), w.Body)
	}
}

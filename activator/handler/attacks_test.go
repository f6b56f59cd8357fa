package handler

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
	"github.com/lambdapod/lambdapod/internal/memtest"
)

// Each test here is an attack a client or a function author could mount on
// a shared activator, and asserts what the bystanders see.

var hello = queue.Key{Namespace: "default", Name: "hello"}

// A function that answers a status outside 200-599, buffered or streamed,
// gets its caller a 502: no panic, no 101 Switching Protocols (which would
// hand the caller's connection to the function), and the function's slot
// is free for the next request.
func TestFunctionStatusOutsideFinalRange(t *testing.T) {
	var answer atomic.Value
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		a := answer.Load().(string)
		if strings.HasPrefix(a, "stream:") {
			w.Header().Set("Content-Type", event.StreamContentType)
			_, _ = io.WriteString(w, strings.TrimPrefix(a, "stream:")+"\x00\x00\x00\x00\x00\x00\x00\x00body")
			return
		}
		_, _ = io.WriteString(w, a)
	})
	e := newEnv(t, Options{}, fn1, 10)
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	for _, a := range []string{
		`{"statusCode":101,"headers":{"upgrade":"tunnel","connection":"upgrade"}}`,
		`{"statusCode":100}`,
		`{"statusCode":1}`,
		`{"statusCode":700}`,
		`stream:{"statusCode":1}`,
		`stream:{"statusCode":101}`,
	} {
		answer.Store(a)
		resp, err := http.Get(srv.URL + "/default/hello/")
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || string(b) != `{"message":"Internal Server Error"}` {
			t.Errorf("function answered %s: caller got %d %q, want 502", a, resp.StatusCode, b)
		}
	}
	answer.Store(`{"statusCode":200,"body":"fine"}`)
	for range 3 { // concurrency 1: a leaked slot would hold these for the activation timeout
		w := e.do("GET", "/default/hello/", "")
		if w.Code != 200 || w.Body.String() != "fine" {
			t.Fatalf("after the bad answers: %d %q", w.Code, w.Body)
		}
	}
}

// panicky is an Invoker that panics, standing for any bug on the path.
type panicky struct{}

func (panicky) Invoke(context.Context, string, *proxy.Request) (*http.Response, error) {
	panic("boom")
}

// A panic while serving one request is answered (502 on HTTP, a function
// error on the Invoke API: the payload may have reached a bootstrap),
// counted, and frees the pod's slot; the activator goes on.
func TestPanicIsRecoveredAndTheSlotFreed(t *testing.T) {
	reg := prometheus.NewRegistry()
	pools := queue.NewRegistry(10)
	pools.Capacity = func(queue.Key) int { return 1 }
	m := metrics.New(reg, pools)
	h := New(Options{ActivationTimeout: 500 * time.Millisecond, Route: route.Config{DefaultNamespace: "default"}}, fn1, pools, panicky{}, m)
	pools.SetEndpoints(hello, []string{"127.0.0.1:1"})
	for i := range 3 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/default/hello/", nil))
		if w.Code != 502 {
			t.Fatalf("HTTP request %d: %d %s, want 502 (and not 504: the slot must be free)", i, w.Code, w.Body)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/2015-03-31/functions/hello/invocations", strings.NewReader(`{}`)))
	if w.Code != 200 || w.Header().Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(w.Body.String(), "Runtime.Unknown") {
		t.Fatalf("Invoke API: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if n := testutil.ToFloat64(m.Panics); n != 4 {
		t.Fatalf("panics counted: %v, want 4", n)
	}
}

// Every Event invocation answered 202 runs: the queue place is taken
// before the answer. Events beyond the bound get 429 at once.
func TestAcceptedEventsAreNeverDropped(t *testing.T) {
	var ran atomic.Int32
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		ran.Add(1)
		echo(w, r, p)
	})
	fns := fakeFunctions{"default/hello": {Timeout: 5 * time.Second, Concurrency: 100, EventFormat: event.HTTPAPIv2}}
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fns, 100)
	const n = 300
	var accepted, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.do("POST", "/2015-03-31/functions/hello/invocations", fmt.Sprintf(`{"n":%d}`, i), "X-Amz-Invocation-Type", "Event")
			switch w.Code {
			case 202:
				accepted.Add(1)
			case 429:
				refused.Add(1)
			default:
				t.Errorf("Event %d: %d %s", i, w.Code, w.Body)
			}
		}()
	}
	wg.Wait()
	e.pools.SetEndpoints(hello, []string{sc.addr()}) // the function comes up
	deadline := time.Now().Add(10 * time.Second)
	for ran.Load() < accepted.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	t.Logf("%d Events: %d accepted, %d refused, %d ran", n, accepted.Load(), refused.Load(), ran.Load())
	if ran.Load() != accepted.Load() || accepted.Load() != 100 {
		t.Fatalf("%d Events answered 202 but %d ran (queue bound 100)", accepted.Load(), ran.Load())
	}
}

// Requests for functions that do not exist make no metric series of
// their own: a caller cannot grow the activator's memory by inventing
// names.
func TestNoMetricSeriesForUnknownFunctions(t *testing.T) {
	reg := prometheus.NewRegistry()
	pools := queue.NewRegistry(10)
	m := metrics.New(reg, pools)
	h := New(Options{Route: route.Config{DefaultNamespace: "default"}}, fn1, pools, proxy.New(), m)
	for i := range 500 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/ns%d/fn%d/", i, i), nil))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", fmt.Sprintf("/2015-03-31/functions/x%d/invocations", i), strings.NewReader(`{}`)))
	}
	if n := testutil.CollectAndCount(m.Requests); n > 2 {
		t.Fatalf("1,000 requests for unknown functions made %d series", n)
	}
}

// On HTTP routes the request's headers go into the event; none of them
// reaches the sidecar as an Invoke API header (a forged client context or
// trace id).
func TestHTTPRoutesForwardNoInvokeHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		got <- r.Header.Clone()
		_, _ = io.WriteString(w, `{"statusCode":200}`)
	})
	e := newEnv(t, Options{}, fn1, 10)
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	e.do("GET", "/default/hello/", "", "X-Amz-Client-Context", "eyJjdXN0b20iOnsiYWRtaW4iOnRydWV9fQ==", "X-Amzn-Trace-Id", "Root=1-forged", "X-Amz-Log-Type", "Tail")
	h := <-got
	for _, k := range []string{"X-Amz-Client-Context", "X-Amzn-Trace-Id", "X-Amz-Log-Type"} {
		if v := h.Get(k); v != "" {
			t.Errorf("the sidecar got %s: %q from an HTTP route", k, v)
		}
	}
}

// A client that sends its body slowly (a byte at a time, or not at all
// after the headers) loses its connection after the body timeout instead
// of holding it, and its buffer, for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	e := newEnv(t, Options{BodyTimeout: 300 * time.Millisecond}, fn1, 10)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = io.WriteString(conn, "POST /default/hello/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn) // returns when the activator closes the connection
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the connection was still open after %v (%v)", d, err)
	}
}

// A flood of 6 MB bodies for a function at zero (every request held):
// the activator holds at most its budget of bytes and refuses the rest
// before reading their bodies, so it stays within its memory limit and
// keeps the requests it holds.
func TestHeldBytesStayWithinTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int64
		within int64
	}{
		{"no budget to speak of", 1 << 40, 0},
		{"a 48 MiB budget", 48 << 20, 80 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{ActivationTimeout: 2 * time.Second, MaxHeldBytes: tc.budget}, fn1, 1000)
			srv := httptest.NewServer(e.h)
			defer srv.Close()
			body := `"` + strings.Repeat("x", 6<<20-2) + `"`
			codes := make(chan int, 30)
			_, use := memtest.Measure(func() error {
				var wg sync.WaitGroup
				for range 30 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, err := http.Post(srv.URL+"/2015-03-31/functions/hello/invocations", "application/json", strings.NewReader(body))
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
				return nil
			})
			close(codes)
			count := map[int]int{}
			for c := range codes {
				count[c]++
			}
			t.Logf("30 held requests of 6 MB, budget %d MiB: answers %v, heap %s", tc.budget>>20, count, use)
			if tc.within == 0 {
				return // the figure to compare with
			}
			if use.Peak > tc.within {
				t.Errorf("heap grew by %s, want within %s", memtest.Size(use.Peak), memtest.Size(tc.within))
			}
			if count[429] == 0 || count[504] == 0 || count[429]+count[504] != 30 {
				t.Errorf("answers %v: want 504 (held, no pod came) for what fit and 429 for the rest", count)
			}
		})
	}
}

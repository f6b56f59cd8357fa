package handler

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rawInvoke sends an Invoke API request on a connection of its own and
// returns it, unanswered: a test reads the answer when it wants.
func rawInvoke(t *testing.T, e *env, payload string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: activator\r\nContent-Length: %d\r\n\r\n%s", len(payload), payload)
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func queued(e *env) int {
	_, q, _ := e.pools.Get(hello).Counts()
	return q
}

// A burst at zero is held without a goroutine per request, and every
// request is answered, in its own words, once a pod is ready.
func TestHeldRequestsParkWithoutAGoroutineAndAreAllAnswered(t *testing.T) {
	sc := newSidecar(t, echo)
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 1000)
	const n = 200
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i] = rawInvoke(t, e, fmt.Sprintf(`{"i":%d}`, i))
	}
	waitUntil(t, "all requests held", func() bool { return queued(e) == n })
	waitUntil(t, "all requests parked", func() bool { return e.parker.Parked() == n })
	// Held on their goroutines they would be 2 per request (400).
	if d := runtime.NumGoroutine() - before; d > 40 {
		t.Fatalf("%d held requests hold %d goroutines", n, d)
	}
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	for i := range conns {
		code, body := readAnswer(t, conns[i], readers[i])
		if code != 200 || body != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if sc.peak.Load() != 1 {
		t.Fatalf("peak concurrency on the pod %d, want 1", sc.peak.Load())
	}
}

// A caller that hangs up while its request is parked leaves the queue at
// once and gives its bytes back; its request never reaches the function.
func TestACallerGoneWhileParkedLeavesTheQueueAndTheBudget(t *testing.T) {
	sc := newSidecar(t, echo)
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second, MaxHeldBytes: 16 << 10}, fn1, 1000)
	big := `"` + strings.Repeat("x", 10<<10) + `"`
	c1, _ := rawInvoke(t, e, big)
	waitUntil(t, "the first request held", func() bool { return queued(e) == 1 })
	// The budget holds one such body: the next is refused at the door.
	if w := e.do("POST", "/2015-03-31/functions/hello/invocations", big); w.Code != 429 {
		t.Fatalf("second body while the first is held: %d %s", w.Code, w.Body)
	}
	c1.Close()
	waitUntil(t, "the queue to empty", func() bool { return queued(e) == 0 && e.parker.Parked() == 0 })
	c3, br3 := rawInvoke(t, e, big)
	waitUntil(t, "the third request held", func() bool { return queued(e) == 1 })
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	if code, body := readAnswer(t, c3, br3); code != 200 || body != big {
		t.Fatalf("third request: %d (%d bytes)", code, len(body))
	}
	if n := sc.calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times, want 1 (the gone caller's request must not run)", n)
	}
}

// A request whose connection cannot be hijacked (here a recorder; on a
// server, HTTP/2) waits on its goroutine, with the same answers.
func TestARequestThatCannotParkWaitsOnItsGoroutine(t *testing.T) {
	sc := newSidecar(t, echo)
	e := newEnv(t, Options{ActivationTimeout: 300 * time.Millisecond}, fn1, 1000)
	if w := e.direct("POST", "/2015-03-31/functions/hello/invocations", "{}"); w.Code != 504 || !strings.Contains(w.Body.String(), "activation timed out") {
		t.Fatalf("activation timeout: %d %s", w.Code, w.Body)
	}
	done := make(chan int)
	go func() { done <- e.direct("POST", "/2015-03-31/functions/hello/invocations", `{"a":1}`).Code }()
	waitUntil(t, "the request held", func() bool { return queued(e) == 1 })
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	if code := <-done; code != 200 {
		t.Fatalf("held request: %d", code)
	}
	if e.parker.Parked() != 0 {
		t.Fatal("a request that cannot park was counted as parked")
	}
}

// Attack: a burst at zero. Held on their goroutines, requests cost about
// 26 KiB each (net/http's buffers and two goroutine stacks per
// connection), so 20,000 held took half a GiB. Parked, a held request
// costs its connection, its payload and the chain's state.
func TestABurstAtZeroCostsUnder10KiBAHeldRequest(t *testing.T) {
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 10000)
	const n = 3000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: activator\r\nContent-Length: 17\r\n\r\n{\"hello\":\"bench\"}")
		conns = append(conns, c)
	}
	waitUntil(t, "all requests held", func() bool { return queued(e) == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)) / n / 1024
	t.Logf("%d held requests: %.1f KiB each (heap + stacks, client connections included)", n, per)
	if per >= 10 {
		t.Fatalf("a held request costs %.1f KiB, want < 10 KiB", per)
	}
	runtime.KeepAlive(conns)
}

// A request that waits for a busy pod (a wait of milliseconds) is held on
// its goroutine: parking costs a second pass through net/http, worth it
// only for long waits. Past parkAbove waiting requests, the rest park.
func TestOnlyLongWaitsPark(t *testing.T) {
	release := make(chan struct{})
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		<-release
		echo(w, r, p)
	})
	e := newEnv(t, Options{ActivationTimeout: 30 * time.Second}, fn1, 1000)
	e.pools.SetEndpoints(hello, []string{sc.addr()})
	const n = parkAbove + 10
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	conns[0], readers[0] = rawInvoke(t, e, `{"i":0}`)
	waitUntil(t, "the first request running", func() bool { return sc.inflight.Load() == 1 })
	for i := 1; i < n; i++ {
		conns[i], readers[i] = rawInvoke(t, e, fmt.Sprintf(`{"i":%d}`, i))
		waitUntil(t, "the request held", func() bool { return queued(e) == i })
		if i <= parkAbove && e.parker.Parked() != 0 {
			t.Fatalf("request %d parked while only %d waited for a busy pod", i, i-1)
		}
	}
	if got := e.parker.Parked(); got != n-1-parkAbove {
		t.Fatalf("%d parked, want %d (those past %d waiting)", got, n-1-parkAbove, parkAbove)
	}
	close(release)
	for i := range conns {
		if code, body := readAnswer(t, conns[i], readers[i]); code != 200 || body != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
}

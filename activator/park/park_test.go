package park_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/activator/park"
)

// server is a real http.Server whose POSTs park (their body is the
// ticket's value) and whose GETs answer at once; a resumed request
// answers "resumed <value>".
type server struct {
	addr    string
	parker  *park.Parker
	tickets chan *park.Ticket
	gone    atomic.Int32
	aband   atomic.Int32
	srv     *http.Server
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{tickets: make(chan *park.Ticket, 1000)}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tk := park.Resumed(r.Context()); tk != nil {
			fmt.Fprintf(w, "resumed %s (%s %s, body %d bytes)", tk.Value, r.Method, r.URL.Path, r.ContentLength)
			return
		}
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, "plain %s", r.URL.Path)
			return
		}
		b, _ := io.ReadAll(r.Body)
		tk, err := s.parker.NewTicket(r, string(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := tk.Park(w, func() { s.gone.Add(1) }, func() { s.aband.Add(1) }); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.tickets <- tk
	})}
	s.parker = park.New(s.srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }()
	go func() { _ = s.parker.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
		_ = s.parker.Shutdown(ctx)
	})
	return s
}

func (s *server) ticket(t *testing.T) *park.Ticket {
	t.Helper()
	select {
	case tk := <-s.tickets:
		return tk
	case <-time.After(5 * time.Second):
		t.Fatal("no request was parked")
		return nil
	}
}

type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// answer reads one response and its body.
func (c *client) answer(t *testing.T) (int, string, http.Header) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header
}

func post(path, body string, hdr ...string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: fn.example\r\n%sContent-Length: %d\r\n\r\n%s", path, strings.Join(hdr, ""), len(body), body)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAParkedRequestIsAnsweredOnItsConnectionWhichStaysAlive(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, post("/invoke", "hello", "X-Custom: kept\r\n"))
	tk := s.ticket(t)
	if got := s.parker.Parked(); got != 1 {
		t.Fatalf("parked = %d, want 1", got)
	}
	// Nothing is answered while parked.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.r.Peek(1); err == nil {
		t.Fatal("a parked request got an answer before it was resumed")
	}
	if !tk.Resume() {
		t.Fatal("Resume reported the client gone")
	}
	code, body, _ := c.answer(t)
	if code != 200 || body != "resumed hello (POST /invoke, body 0 bytes)" {
		t.Fatalf("answer %d %q", code, body)
	}
	// The connection is kept alive: the next request on it is served.
	c.send(t, "GET /next HTTP/1.1\r\nHost: fn.example\r\n\r\n")
	if code, body, _ := c.answer(t); code != 200 || body != "plain /next" {
		t.Fatalf("next request on the connection: %d %q", code, body)
	}
	waitFor(t, "parked = 0", func() bool { return s.parker.Parked() == 0 })
}

func TestParkedRequestsHoldNoGoroutine(t *testing.T) {
	s := newServer(t)
	const n = 300
	before := runtime.NumGoroutine()
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dial(t, s.addr)
		cs[i].send(t, post("/invoke", fmt.Sprint(i)))
	}
	tks := make([]*park.Ticket, n)
	for i := range tks {
		tks[i] = s.ticket(t)
	}
	waitFor(t, "all parked", func() bool { return s.parker.Parked() == n })
	// net/http's two goroutines per connection are gone (there would be
	// 600 more); the watcher and the parker's server are a few.
	if d := runtime.NumGoroutine() - before; d > 20 {
		t.Fatalf("%d parked requests hold %d goroutines", n, d)
	}
	for _, tk := range tks {
		tk.Resume()
	}
	for i, c := range cs {
		code, body, _ := c.answer(t)
		if code != 200 || !strings.HasPrefix(body, "resumed ") {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
}

func TestAClientThatGoesAwayWhileParkedIsNoticed(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, post("/invoke", "bye"))
	tk := s.ticket(t)
	c.Close()
	waitFor(t, "the gone callback", func() bool { return s.gone.Load() == 1 })
	if s.parker.Parked() != 0 {
		t.Fatalf("parked = %d after the client left", s.parker.Parked())
	}
	if tk.Resume() {
		t.Fatal("Resume of a request whose client left reported true")
	}
	if s.aband.Load() != 0 {
		t.Fatal("abandon called for a request that was never resumed")
	}
}

func TestPipelinedRequestsBehindAParkedOneAreServedInOrder(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, post("/first", "one")+"GET /second HTTP/1.1\r\nHost: fn.example\r\n\r\n")
	tk := s.ticket(t)
	tk.Resume()
	if code, body, _ := c.answer(t); code != 200 || body != "resumed one (POST /first, body 0 bytes)" {
		t.Fatalf("first: %d %q", code, body)
	}
	if code, body, _ := c.answer(t); code != 200 || body != "plain /second" {
		t.Fatalf("second: %d %q", code, body)
	}
}

func TestConnectionCloseIsHonouredAfterResuming(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, post("/invoke", "x", "Connection: close\r\n"))
	s.ticket(t).Resume()
	if code, _, _ := c.answer(t); code != 200 {
		t.Fatalf("answer %d", code)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close: %v", err)
	}
}

func TestShutdownWaitsForParkedRequests(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, post("/invoke", "late"))
	tk := s.ticket(t)
	done := make(chan error, 1)
	go func() { done <- s.parker.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned with a request parked: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// A request that arrives while stopping is not parked.
	c2 := dial(t, s.addr)
	c2.send(t, post("/invoke", "new"))
	if code, body, _ := c2.answer(t); code != 500 || !strings.Contains(body, park.ErrNotParkable.Error()) {
		t.Fatalf("request while stopping: %d %q", code, body)
	}
	tk.Resume()
	if code, body, _ := c.answer(t); code != 200 || body != "resumed late (POST /invoke, body 0 bytes)" {
		t.Fatalf("answer %d %q", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return once the parked request was answered")
	}
}

func TestHTTP10WithoutKeepAliveIsClosedAfterResuming(t *testing.T) {
	s := newServer(t)
	c := dial(t, s.addr)
	c.send(t, "POST /invoke HTTP/1.0\r\nHost: fn.example\r\nContent-Length: 3\r\n\r\nold")
	s.ticket(t).Resume()
	if code, body, _ := c.answer(t); code != 200 || body != "resumed old (POST /invoke, body 0 bytes)" {
		t.Fatalf("answer %d %q", code, body)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("HTTP/1.0 connection not closed: %v", err)
	}
}

// Package park holds HTTP/1.x requests without a goroutine or a buffer
// each, so that a burst of requests for a function at zero fits in memory.
//
// A request that must wait is parked: its handler hijacks the connection
// and returns, which frees net/http's goroutines and buffers for the
// connection; the request's own state (the call, its payload) stays in a
// Ticket, and the connection is watched for the client going away (one
// epoll set for all parked connections on Linux). When the request is woken
// (a slot, a timeout), its connection is handed back to a second
// http.Server, prefixed with the request's head as the client sent it; that
// server runs the same handler, which finds the Ticket in the context and
// goes on where it stopped. The answer, keep-alive and every later request
// on the connection are then plain net/http again.
package park

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotParkable: the request cannot be parked (HTTP/2, a connection that
// cannot be hijacked, a stopping parker); it waits on its goroutine.
var ErrNotParkable = errors.New("request cannot be parked")

// Parker parks requests of one http.Server; see the package doc.
type Parker struct {
	srv     *http.Server // serves resumed connections
	ln      *listener
	parked  atomic.Int64
	closing atomic.Bool
}

// New returns a parker for the requests of main: resumed connections are
// served with main's handler and limits.
func New(main *http.Server) *Parker {
	p := &Parker{ln: newListener()}
	p.srv = &http.Server{
		Handler:           main.Handler,
		ReadHeaderTimeout: main.ReadHeaderTimeout,
		ReadTimeout:       main.ReadTimeout,
		WriteTimeout:      main.WriteTimeout,
		IdleTimeout:       main.IdleTimeout,
		MaxHeaderBytes:    main.MaxHeaderBytes,
		ErrorLog:          main.ErrorLog,
		ConnContext:       connContext,
	}
	return p
}

// Serve serves resumed connections until Shutdown.
func (p *Parker) Serve() error {
	err := p.srv.Serve(p.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Parked is the number of requests parked now (or resumed, and not yet
// back in a handler).
func (p *Parker) Parked() int64 { return p.parked.Load() }

// Shutdown stops parking (requests wait on their goroutines from now on),
// waits until every parked request was resumed or gone, then shuts the
// resumed connections' server down as http.Server.Shutdown does.
func (p *Parker) Shutdown(ctx context.Context) error {
	p.closing.Store(true)
	p.srv.SetKeepAlivesEnabled(false)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.parked.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return p.srv.Shutdown(ctx)
}

// Ticket is a parked request. Its owner (the handler) calls Park once,
// then exactly one of Resume or Gone happens: Resume when the owner
// wakes it, Gone when the client went away first.
type Ticket struct {
	// Value is the owner's state of the request, for the resumed handler.
	Value any

	p    *Parker
	mu   sync.Mutex
	conn net.Conn
	head []byte
	fd   int
	// state: parking (the handler still runs), parked, or done.
	state int
	// wake is set by Resume while the handler still runs.
	wake bool
	gone func()
	// taken: a resumed handler took the ticket (it owns Value now).
	taken atomic.Bool
	// abandon is called when a resumed connection closes before a handler
	// took the ticket.
	abandon func()
}

const (
	parking = iota
	parked
	done
)

// NewTicket prepares a request for parking: it checks that it can be
// parked (an HTTP/1.x request whose connection can be hijacked, and a
// parker that is not stopping). The request's body must have been read.
func (p *Parker) NewTicket(r *http.Request, value any) (*Ticket, error) {
	if p == nil || p.closing.Load() || r.ProtoMajor != 1 {
		return nil, ErrNotParkable
	}
	return &Ticket{Value: value, p: p, head: requestHead(r), fd: -1}, nil
}

// Park hijacks the request's connection; the handler must return at once
// after a nil error, and write nothing. gone is called, once, when the
// client goes away while the request is parked; abandon when the resumed
// connection closes before the handler took the ticket back (a stopping
// server): both must release what the request holds. A Resume that came
// while Park ran takes effect as Park ends.
func (t *Ticket) Park(w http.ResponseWriter, gone, abandon func()) error {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return ErrNotParkable
	}
	// Bytes the client sent after this request (pipelining) follow the
	// request's head when it is resumed.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		t.head = append(t.head, b...)
	}
	t.mu.Lock()
	t.conn, t.gone, t.abandon = conn, gone, abandon
	t.state = parked
	wake := t.wake
	t.p.parked.Add(1)
	if !wake {
		t.fd = watch(conn, t)
	}
	t.mu.Unlock()
	if wake {
		go t.resume()
	}
	return nil
}

// Resume hands the parked request's connection back to net/http, where
// the handler finds the ticket with Resumed. It reports false when the
// client went away first (Gone ran or runs).
func (t *Ticket) Resume() bool {
	t.mu.Lock()
	switch t.state {
	case parking:
		t.wake = true
		t.mu.Unlock()
		return true
	case done:
		t.mu.Unlock()
		return false
	}
	t.state = done
	unwatch(t.fd)
	t.mu.Unlock()
	go t.resume()
	return true
}

func (t *Ticket) resume() {
	t.mu.Lock()
	t.state = done
	conn, head := t.conn, t.head
	t.conn, t.head = nil, nil
	t.mu.Unlock()
	// It counts as parked until a handler took the ticket (or the
	// connection closed before): net/http drops a request it has read
	// once its server is shutting down, so Shutdown must wait till then.
	rc := &resumedConn{Conn: conn, head: head, ticket: t}
	if !t.p.ln.push(rc) {
		_ = rc.Close()
	}
}

// clientGone is the watcher's word that the parked connection's client
// went away.
func (t *Ticket) clientGone() {
	t.mu.Lock()
	if t.state != parked {
		t.mu.Unlock()
		return
	}
	t.state = done
	unwatch(t.fd)
	conn, gone := t.conn, t.gone
	t.conn, t.head = nil, nil
	t.mu.Unlock()
	t.p.parked.Add(-1)
	_ = conn.Close()
	gone()
}

// Resumed returns the ticket of a resumed request, once: later requests
// on the same connection, and a second call, get nil.
func Resumed(ctx context.Context) *Ticket {
	t, _ := ctx.Value(ticketKey{}).(*Ticket)
	if t == nil || !t.taken.CompareAndSwap(false, true) {
		return nil
	}
	t.p.parked.Add(-1)
	return t
}

type ticketKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*resumedConn); ok {
		return context.WithValue(ctx, ticketKey{}, rc.ticket)
	}
	return ctx
}

// requestHead is the request's head as the client could have sent it,
// with an empty body: the body was read already and is in the ticket's
// value.
func requestHead(r *http.Request) []byte {
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString(r.Method)
	b.WriteByte(' ')
	b.WriteString(r.RequestURI)
	b.WriteByte(' ')
	b.WriteString(r.Proto)
	b.WriteString("\r\nHost: ")
	b.WriteString(r.Host)
	b.WriteString("\r\n")
	for k, vs := range r.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Expect", "Trailer", "Host":
			continue
		}
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return bytes.Clone(b.Bytes())
}

// resumedConn is a parked connection handed back to net/http: it reads
// the request's head first, then the client's connection.
type resumedConn struct {
	net.Conn
	head   []byte
	ticket *Ticket
	closed sync.Once
}

func (c *resumedConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		if len(c.head) == 0 {
			c.head = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *resumedConn) Close() error {
	c.closed.Do(func() {
		if c.ticket.taken.CompareAndSwap(false, true) {
			c.ticket.p.parked.Add(-1)
			c.ticket.abandon()
		}
	})
	return c.Conn.Close()
}

// listener hands resumed connections to the resumed requests' server.
type listener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newListener() *listener {
	return &listener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *listener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *listener) Addr() net.Addr { return parkedAddr{} }

type parkedAddr struct{}

func (parkedAddr) Network() string { return "parked" }
func (parkedAddr) String() string  { return "parked" }

// Package proxy sends one invocation to a pod's runtime sidecar over the
// Lambda Invoke API.
//
// It is a small HTTP/1.1 client over pooled keep-alive connections in which
// the request's own goroutine writes the request and reads the response:
// net/http's Transport hands every request to a connection's write and read
// goroutines, which costs two goroutine hand-offs per request and shows in
// the tail latency on a busy node. Responses are parsed by
// net/http.ReadResponse (chunked bodies included), so a streamed result can
// be read as it arrives.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Forwarded are the request headers of an Invoke call that reach the
// sidecar.
var Forwarded = []string{
	"Content-Type", invokeapi.HeaderLogType, invokeapi.HeaderClientContext, invokeapi.HeaderTraceID,
	"X-Amz-Tenant-Id",
}

// Invoker posts invocations to sidecars.
type Invoker struct {
	// MaxIdlePerHost bounds the idle connections kept per pod.
	MaxIdlePerHost int
	// DialTimeout bounds connecting to a pod.
	DialTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*conn
}

// New returns an Invoker.
func New() *Invoker {
	return &Invoker{MaxIdlePerHost: 256, DialTimeout: 2 * time.Second, idle: map[string][]*conn{}}
}

// Request is one invocation.
type Request struct {
	// Function is the function's name in the pod (its Lambda name).
	Function string
	// Payload is the event.
	Payload []byte
	// Header holds the headers to forward (see Forwarded).
	Header http.Header
	// StartWithin, when positive, bounds the wait for a bootstrap to take
	// the invocation: the sidecar drops it past that and answers not-run.
	StartWithin time.Duration
	// Token, when set, is the activators' token for the function
	// (package invoketoken).
	Token string
	// RequestID, when set, is the invocation's request id (the one the
	// caller got).
	RequestID string
	// Stream posts to InvokeWithResponseStream's path: the answer is the
	// sidecar's event stream.
	Stream bool
}

type conn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// head bounds the bytes read while an answer's head is parsed.
	head *headLimit
	// raw and peek check an idle connection (alive); made once per
	// connection, as every reuse checks it.
	raw  syscall.RawConn
	peek func(fd uintptr) bool
	open bool
}

// MaxResponseHead bounds the status line and headers of a pod's answer:
// net/http.ReadResponse reads them whole, without a limit of its own, and
// the pod runs code its author wrote.
const MaxResponseHead = 64 << 10

// headLimit is the connection's reader; while left is set, reading more
// than it allows fails.
type headLimit struct {
	r       io.Reader
	left    int
	limited bool
}

var errHeadTooLarge = fmt.Errorf("the pod's answer has a head over %d bytes", MaxResponseHead)

func (h *headLimit) Read(p []byte) (int, error) {
	if !h.limited {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	if len(p) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= n
	return n, err
}

// DialError wraps a failure to connect: the request never reached the pod.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "connecting to the pod: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// NotDelivered reports whether err means the request never reached the pod
// (it could not connect), so that another pod may take it safely.
func NotDelivered(err error) bool {
	var de *DialError
	return errors.As(err, &de)
}

// Invoke posts r to the sidecar at addr (host:port) as a RequestResponse
// invocation and returns its response; the caller closes the body, which
// returns the connection to the pool once the body was read to its end.
func (i *Invoker) Invoke(ctx context.Context, addr string, r *Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := i.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err, retry := i.roundTrip(ctx, c, addr, r)
		if err == nil {
			return resp, nil
		}
		c.Close()
		if retry && reused && attempt < 2 && ctx.Err() == nil {
			continue // a stale keep-alive connection; the pod never read the request
		}
		return nil, err
	}
}

func (i *Invoker) get(ctx context.Context, addr string) (*conn, bool, error) {
	for {
		i.mu.Lock()
		l := i.idle[addr]
		if len(l) == 0 {
			i.mu.Unlock()
			break
		}
		c := l[len(l)-1]
		i.idle[addr] = l[:len(l)-1]
		i.mu.Unlock()
		if alive(c) {
			return c, true, nil
		}
		c.Close()
	}
	d := net.Dialer{Timeout: i.DialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, &DialError{Err: err}
	}
	head := &headLimit{r: nc}
	c := &conn{Conn: nc, br: bufio.NewReaderSize(head, 8<<10), bw: bufio.NewWriterSize(nc, 8<<10), head: head}
	if sc, ok := nc.(syscall.Conn); ok {
		if c.raw, err = sc.SyscallConn(); err != nil {
			nc.Close()
			return nil, false, &DialError{Err: err}
		}
		c.peek = func(fd uintptr) bool {
			var buf [1]byte
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			c.open = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
			return true
		}
	}
	return c, false, nil
}

// alive checks, without blocking, that the pod did not close an idle
// connection: a peek that would block means open; end of file, an error or
// unsolicited bytes mean the connection is not reusable.
func alive(c *conn) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.open = false
	_ = c.raw.Read(c.peek)
	return c.open
}

func (i *Invoker) put(addr string, c *conn) {
	i.mu.Lock()
	if l := i.idle[addr]; len(l) < i.MaxIdlePerHost {
		i.idle[addr] = append(l, c)
		i.mu.Unlock()
		return
	}
	i.mu.Unlock()
	c.Close()
}

// CloseIdle closes the idle connections to addr (a pod that left).
func (i *Invoker) CloseIdle(addr string) {
	i.mu.Lock()
	l := i.idle[addr]
	delete(i.idle, addr)
	i.mu.Unlock()
	for _, c := range l {
		c.Close()
	}
}

var invokeReq = &http.Request{Method: http.MethodPost}

// roundTrip writes the request and reads the response head on c. retry
// reports a failure that happened before the pod could have read the whole
// request.
func (i *Invoker) roundTrip(ctx context.Context, c *conn, addr string, r *Request) (*http.Response, error, bool) {
	if err := ctx.Err(); err != nil {
		return nil, err, false
	}
	// Cancellation and deadlines interrupt the blocking I/O.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	bw := c.bw
	prefix, suffix := invokeapi.PathPrefix, invokeapi.PathSuffix
	if r.Stream {
		prefix, suffix = invokeapi.StreamPathPrefix, invokeapi.StreamPathSuffix
	}
	bw.WriteString("POST " + prefix)
	bw.WriteString(url.PathEscape(r.Function))
	bw.WriteString(suffix + " HTTP/1.1\r\nHost: ")
	bw.WriteString(addr)
	bw.WriteString("\r\n" + invokeapi.HeaderInvocationType + ": " + string(invokeapi.RequestResponse) + "\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(r.Payload)))
	bw.WriteString("\r\n")
	hasCT := false
	for _, k := range Forwarded {
		for _, v := range r.Header.Values(k) {
			if k == "Content-Type" {
				hasCT = true
			}
			if !validHeaderValue(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if !hasCT {
		bw.WriteString("Content-Type: application/json\r\n")
	}
	if r.Token != "" {
		bw.WriteString(contract.HeaderInvokeToken + ": ")
		bw.WriteString(r.Token)
		bw.WriteString("\r\n")
	}
	if r.RequestID != "" {
		bw.WriteString(contract.HeaderRequestID + ": ")
		bw.WriteString(r.RequestID)
		bw.WriteString("\r\n")
	}
	if r.StartWithin > 0 {
		bw.WriteString(contract.HeaderStartWithin + ": ")
		bw.WriteString(strconv.FormatInt(max(r.StartWithin.Milliseconds(), 1), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(r.Payload)
	if err := bw.Flush(); err != nil {
		stop()
		return nil, ctxErr(ctx, err), ctx.Err() == nil && isReset(err)
	}
	resp, err := c.readHead()
	if err != nil {
		stop()
		return nil, ctxErr(ctx, err), false
	}
	resp.Body = &body{ReadCloser: resp.Body, c: c, inv: i, addr: addr, stop: stop, keep: !resp.Close}
	return resp, nil, false
}

// readHead reads an answer's status line and headers, at most
// MaxResponseHead bytes of them (and of what the buffer reads ahead).
func (c *conn) readHead() (*http.Response, error) {
	c.head.left, c.head.limited = MaxResponseHead+c.br.Size(), true
	resp, err := http.ReadResponse(c.br, invokeReq)
	c.head.limited = false
	return resp, err
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '\r' || b == '\n' || b == 0 {
			return false
		}
	}
	return true
}

func isReset(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// ctxErr prefers the context's error over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// body returns the connection to the pool when the response was read to
// its end and the context did not interrupt it.
type body struct {
	io.ReadCloser
	c    *conn
	inv  *Invoker
	addr string
	stop func() bool
	keep bool
	eof  bool
	once sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	b.once.Do(func() {
		_ = b.ReadCloser.Close()
		if b.stop() && b.eof && b.keep {
			b.inv.put(b.addr, b.c)
			return
		}
		b.c.Close()
	})
	return nil
}

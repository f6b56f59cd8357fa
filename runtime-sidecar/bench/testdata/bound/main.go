// Command bound is make bench-sidecar's "protocol bound" peer: the least
// any server can do to pass an invocation from a caller to a Lambda
// bootstrap and its answer back. One thread, one epoll set, raw system
// calls (the Go scheduler never runs on the path), canned headers, no
// limits, timeouts, logs or checks of any kind: not a server to use, a
// measure of how much of the round trip belongs to the bootstrap, the
// client and the kernel on this machine, and so of how close to RIE's
// rate any real server can get.
//
// It starts the bootstrap given as its argument with
// AWS_LAMBDA_RUNTIME_API set, serves the invoke path on a free port,
// prints that address on stdout, and runs until killed.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/lambdapod/lambdapod/internal/rawloop"
)

type conn struct {
	fd      int
	runtime bool // the bootstrap's side (Runtime API), else a caller's
	buf     []byte
}

type server struct {
	conns   map[int]*conn
	next    int      // a bootstrap's /next waiting for an invocation, or -1
	queue   []queued // invocations waiting for a /next
	current int      // the caller of the invocation being run, or -1
	seq     int
}

type queued struct {
	caller  int
	payload []byte
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bound BOOTSTRAP")
		os.Exit(2)
	}
	// Everything below runs on this thread, and only here.
	runtime.LockOSThread()
	s := &server{conns: map[int]*conn{}, next: -1, current: -1}
	l, err := rawloop.New()
	if err != nil {
		fail(err)
	}
	invokeFD, invokeAddr, err := l.Listen("127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	apiFD, apiAddr, err := l.Listen("127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(os.Args[1])
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+apiAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	fmt.Println(invokeAddr)

	rbuf := make([]byte, 64<<10)
	for {
		for _, ev := range l.Wait() {
			fd := int(ev.Fd)
			if fd == invokeFD || fd == apiFD {
				for {
					cfd, ok := l.Accept(fd)
					if !ok {
						break
					}
					s.conns[cfd] = &conn{fd: cfd, runtime: fd == apiFD}
				}
				continue
			}
			c := s.conns[fd]
			if c == nil {
				continue
			}
			switch n := rawloop.Read(fd, rbuf); {
			case n > 0:
				c.buf = append(c.buf, rbuf[:n]...)
				s.serve(c)
			case n == 0:
				rawloop.Close(fd)
				delete(s.conns, fd)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bound:", err)
	os.Exit(1)
}

// serve handles every whole request in c's buffer.
func (s *server) serve(c *conn) {
	for {
		method, body, used, ok := request(c.buf)
		if !ok {
			return
		}
		s.handle(c, method, body)
		c.buf = c.buf[used:]
	}
}

// request parses one HTTP/1.1 request at the start of b, with a
// Content-Length or a chunked body (aws-lambda-go posts its response
// chunked); ok is false until it is all there.
func request(b []byte) (method string, body []byte, used int, ok bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return "", nil, 0, false
	}
	head := b[:end]
	method = string(head[:max(0, bytes.IndexByte(head, ' '))])
	length, chunked := 0, false
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(value))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(value, []byte("chunked"))
		}
	}
	rest := b[end+4:]
	if !chunked {
		if len(rest) < length {
			return "", nil, 0, false
		}
		return method, rest[:length], end + 4 + length, true
	}
	for off := 0; ; {
		nl := bytes.Index(rest[off:], []byte("\r\n"))
		if nl < 0 {
			return "", nil, 0, false
		}
		size, err := strconv.ParseInt(string(rest[off:off+nl]), 16, 64)
		if err != nil {
			size = 0
		}
		if size == 0 {
			if len(rest) < off+nl+4 {
				return "", nil, 0, false
			}
			return method, body, end + 4 + off + nl + 4, true
		}
		start := off + nl + 2
		if len(rest) < start+int(size)+2 {
			return "", nil, 0, false
		}
		body = append(body, rest[start:start+int(size)]...)
		off = start + int(size) + 2
	}
}

func (s *server) handle(c *conn, method string, body []byte) {
	switch {
	case !c.runtime: // an invocation
		q := queued{caller: c.fd, payload: append([]byte(nil), body...)}
		if s.next >= 0 {
			s.dispatch(q)
		} else {
			s.queue = append(s.queue, q)
		}
	case method == "GET": // /next
		s.next = c.fd
		if len(s.queue) > 0 {
			q := s.queue[0]
			s.queue = s.queue[1:]
			s.dispatch(q)
		}
	default: // /response: the bootstrap's 202 first, so that it asks for the next one while the caller reads
		rawloop.Write(c.fd, []byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"))
		if s.current >= 0 {
			rawloop.Write(s.current, append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...))
			s.current = -1
		}
	}
}

func (s *server) dispatch(q queued) {
	s.seq++
	b := []byte("HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: bound-" + strconv.Itoa(s.seq) +
		"\r\nLambda-Runtime-Deadline-Ms: " + strconv.FormatInt(time.Now().Add(30*time.Second).UnixMilli(), 10) +
		"\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:function" +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(q.payload)) + "\r\n\r\n")
	rawloop.Write(s.next, append(b, q.payload...))
	s.next, s.current = -1, q.caller
}

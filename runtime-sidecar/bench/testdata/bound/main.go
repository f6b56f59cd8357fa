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
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
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
	keep    []any // the listeners, whose descriptors we use
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
	invokeFD, invokeAddr := s.listen()
	apiFD, apiAddr := s.listen()
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		fail(err)
	}
	for _, fd := range []int{invokeFD, apiFD} {
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
			fail(err)
		}
	}
	cmd := exec.Command(os.Args[1])
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+apiAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	fmt.Println(invokeAddr)

	events := make([]syscall.EpollEvent, 64)
	rbuf := make([]byte, 64<<10)
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
		if e != 0 {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == invokeFD || fd == apiFD {
				s.accept(ep, fd, fd == apiFD)
				continue
			}
			c := s.conns[fd]
			if c == nil {
				continue
			}
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&rbuf[0])), uintptr(len(rbuf)))
			if e != 0 {
				continue // EAGAIN
			}
			if m == 0 {
				syscall.Close(fd)
				delete(s.conns, fd)
				continue
			}
			c.buf = append(c.buf, rbuf[:m]...)
			s.serve(c)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bound:", err)
	os.Exit(1)
}

func (s *server) listen() (int, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		fail(err)
	}
	s.keep = append(s.keep, ln, f) // f's finalizer would close the descriptor
	fd := int(f.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		fail(err)
	}
	return fd, ln.Addr().String()
}

func (s *server) accept(ep, lfd int, api bool) {
	for {
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
		if err != nil {
			return
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		s.conns[fd] = &conn{fd: fd, runtime: api}
		_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
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
		write(c.fd, []byte("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"))
		if s.current >= 0 {
			write(s.current, append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...))
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
	write(s.next, append(b, q.payload...))
	s.next, s.current = -1, q.caller
}

// write sends all of b; the answers are small, so a full socket buffer
// is only waited out.
func write(fd int, b []byte) {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == syscall.EAGAIN {
			continue
		}
		if e != 0 {
			return
		}
		b = b[n:]
	}
}

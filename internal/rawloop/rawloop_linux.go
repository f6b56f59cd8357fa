package rawloop

import (
	"net"
	"syscall"
	"unsafe"
)

// Loop is an epoll set. Its methods must all be called from one
// goroutine locked to its thread (runtime.LockOSThread).
type Loop struct {
	ep     int
	events []syscall.EpollEvent
	keep   []any // the listeners, whose descriptors are in use
}

// New returns an empty loop.
func New() (*Loop, error) {
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		return nil, err
	}
	return &Loop{ep: ep, events: make([]syscall.EpollEvent, 128)}, nil
}

// Listen opens a nonblocking listening socket on addr, watched by the loop,
// and returns its descriptor and address.
func (l *Loop) Listen(addr string) (int, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return -1, "", err
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		ln.Close()
		return -1, "", err
	}
	// Both stay referenced: f's finalizer would close the descriptor.
	l.keep = append(l.keep, ln, f)
	fd := int(f.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		return -1, "", err
	}
	return fd, ln.Addr().String(), l.Watch(fd)
}

// Watch adds fd to the loop (readable).
func (l *Loop) Watch(fd int) error {
	return syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
}

// Accept takes the next connection of a listening descriptor (false when
// there is none now), with TCP_NODELAY, nonblocking and watched.
func (l *Loop) Accept(lfd int) (int, bool) {
	fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
	if err != nil {
		return -1, false
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = l.Watch(fd)
	return fd, true
}

// Dial connects to addr (blocking), then makes the connection like an
// accepted one.
func (l *Loop) Dial(addr *net.TCPAddr) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = syscall.SetNonblock(fd, true)
	return fd, l.Watch(fd)
}

// Wait blocks until descriptors are readable and returns them.
func (l *Loop) Wait() []syscall.EpollEvent {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), ^uintptr(0), 0, 0)
		if e == 0 {
			return l.events[:n]
		}
	}
}

// Read reads what fd has into buf: n > 0 bytes, 0 at the end of the
// stream or on an error, or -1 when nothing is there now.
func Read(fd int, buf []byte) int {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	switch {
	case e == syscall.EAGAIN:
		return -1
	case e != 0:
		return 0
	}
	return int(n)
}

// Write sends all of b; the messages are small, so a full socket buffer
// is only waited out.
func Write(fd int, b []byte) {
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

// Close closes a connection's descriptor (the kernel drops it from the
// epoll set).
func Close(fd int) { _ = syscall.Close(fd) }

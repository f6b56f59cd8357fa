package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"unsafe"
)

// serveBound is the proxy bound of the latency and throughput tables: the
// least any proxy can do between a caller and the pod. It copies bytes
// between each caller's connection and a connection of its own to the
// backend, on one thread with one epoll set and raw system calls (the Go
// scheduler never runs on the path), and reads no HTTP at all: no
// routing, no limits, no concurrency gate, no timeouts. Not a proxy to
// use; what it adds is what any hop adds on this machine.
func serveBound(listen, backend string) error {
	runtime.LockOSThread()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	defer ln.Close()
	defer f.Close() // and kept open until then: its finalizer would close the descriptor
	lfd := int(f.Fd())
	if err := syscall.SetNonblock(lfd, true); err != nil {
		return err
	}
	raddr, err := net.ResolveTCPAddr("tcp", backend)
	if err != nil {
		return err
	}
	sa := &syscall.SockaddrInet4{Port: raddr.Port}
	copy(sa.Addr[:], raddr.IP.To4())
	ep, err := syscall.EpollCreate1(0)
	if err != nil {
		return err
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	fmt.Println("bound listening", ln.Addr())

	peer := map[int]int{}
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
		if e != 0 {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					cfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
					if err != nil {
						break
					}
					bfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
					if err != nil {
						syscall.Close(cfd)
						continue
					}
					if err := syscall.Connect(bfd, sa); err != nil {
						syscall.Close(cfd)
						syscall.Close(bfd)
						continue
					}
					for _, fd := range []int{cfd, bfd} {
						_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
						_ = syscall.SetNonblock(fd, true)
						_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
					}
					peer[cfd], peer[bfd] = bfd, cfd
				}
				continue
			}
			other, ok := peer[fd]
			if !ok {
				continue
			}
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			if e == syscall.EAGAIN {
				continue
			}
			if e != 0 || m == 0 {
				syscall.Close(fd)
				syscall.Close(other)
				delete(peer, fd)
				delete(peer, other)
				continue
			}
			for b := buf[:m]; len(b) > 0; {
				w, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(other), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
				if e == syscall.EAGAIN {
					continue // small messages: a full buffer is only waited out
				}
				if e != 0 {
					break
				}
				b = b[w:]
			}
		}
	}
}

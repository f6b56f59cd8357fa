package main

import (
	"fmt"
	"net"
	"runtime"

	"github.com/lambdapod/lambdapod/internal/rawloop"
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
	raddr, err := net.ResolveTCPAddr("tcp", backend)
	if err != nil {
		return err
	}
	l, err := rawloop.New()
	if err != nil {
		return err
	}
	lfd, addr, err := l.Listen(listen)
	if err != nil {
		return err
	}
	fmt.Println("bound listening", addr)

	peer := map[int]int{}
	buf := make([]byte, 64<<10)
	for {
		for _, ev := range l.Wait() {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					cfd, ok := l.Accept(lfd)
					if !ok {
						break
					}
					bfd, err := l.Dial(raddr)
					if err != nil {
						rawloop.Close(cfd)
						continue
					}
					peer[cfd], peer[bfd] = bfd, cfd
				}
				continue
			}
			other, ok := peer[fd]
			if !ok {
				continue
			}
			switch n := rawloop.Read(fd, buf); {
			case n > 0:
				rawloop.Write(other, buf[:n])
			case n == 0:
				rawloop.Close(fd)
				rawloop.Close(other)
				delete(peer, fd)
				delete(peer, other)
			}
		}
	}
}

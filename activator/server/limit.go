package server

import (
	"net"
	"sync"
	"syscall"
)

// limitListener accepts at most n connections open at once; more wait in
// the kernel's backlog. Unlike netutil.LimitListener its connections keep
// their descriptor reachable (syscall.Conn), which parking needs to watch
// a held connection for its client going away.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
	}
	return &limitedTCPConn{TCPConn: tc, release: func() { <-l.sem }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// limitedTCPConn keeps *net.TCPConn's methods (SyscallConn, CloseWrite).
type limitedTCPConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

var _ syscall.Conn = (*limitedTCPConn)(nil)

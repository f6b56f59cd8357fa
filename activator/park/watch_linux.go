package park

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// The watcher is one epoll set, for every parked connection of the
// process, that reports the clients that went away (a FIN or a reset),
// with one goroutine blocked in epoll_wait. Go's own poller cannot say
// that without a goroutine blocked in Read on each connection.
var watcher struct {
	once sync.Once
	epfd int
	mu   sync.Mutex
	seq  int32
	// byFD maps a watched descriptor to its ticket; seq guards against an
	// event for a descriptor that was closed and reused meanwhile.
	byFD map[int32]watched
}

type watched struct {
	seq int32
	t   *Ticket
}

func startWatcher() {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		slog.Warn("parked connections are not watched for clients that go away", "err", err)
		watcher.epfd = -1
		return
	}
	watcher.epfd = fd
	watcher.byFD = map[int32]watched{}
	go watchLoop(fd)
}

func watchLoop(epfd int) {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			slog.Error("watching parked connections stopped", "err", err)
			return
		}
		for _, ev := range events[:n] {
			watcher.mu.Lock()
			w, ok := watcher.byFD[ev.Fd]
			if ok && w.seq == ev.Pad {
				delete(watcher.byFD, ev.Fd)
			}
			watcher.mu.Unlock()
			if ok && w.seq == ev.Pad {
				w.t.clientGone()
			}
		}
	}
}

// watch registers conn's descriptor; it returns the descriptor, or -1 when
// it cannot be watched (the client going away is then noticed when the
// request is resumed).
func watch(conn net.Conn, t *Ticket) int {
	watcher.once.Do(startWatcher)
	if watcher.epfd < 0 {
		return -1
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(d uintptr) { fd = int(d) })
	if fd < 0 {
		return -1
	}
	watcher.mu.Lock()
	defer watcher.mu.Unlock()
	watcher.seq++
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR | syscall.EPOLLONESHOT, Fd: int32(fd), Pad: watcher.seq}
	if err := syscall.EpollCtl(watcher.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return -1
	}
	watcher.byFD[int32(fd)] = watched{seq: watcher.seq, t: t}
	return fd
}

// unwatch forgets a descriptor; call it before the connection is closed
// or handed on.
func unwatch(fd int) {
	if fd < 0 {
		return
	}
	watcher.mu.Lock()
	defer watcher.mu.Unlock()
	delete(watcher.byFD, int32(fd))
	_ = syscall.EpollCtl(watcher.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

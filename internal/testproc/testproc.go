// Package testproc helps tests that run servers and processes of their
// own: a goroutine-safe buffer for a process's output, and a free local
// address for a server that does not tell which port it bound.
package testproc

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// Buffer collects output written from one goroutine (a process's stdout
// and stderr) while another reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr is a loopback address with a port nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

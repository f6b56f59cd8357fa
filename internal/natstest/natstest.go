// Package natstest runs a real NATS server with JetStream in the calling
// process (a test's, a benchmark's), configured as the chart's NATS is
// where it matters (max_payload 2 MiB: a 1 MiB event and its headers).
package natstest

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Run runs a server with its JetStream store in dir on 127.0.0.1:port (any
// free port when 0) and returns once it takes connections. A server run
// again with the same dir and port finds what the first stored.
func Run(dir string, port int) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		MaxPayload: 2 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("NATS server not ready after 10s")
	}
	return s, nil
}

// Start is Run for a test (dir "" is a new temporary directory); the
// server shuts down at the end of the test.
func Start(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Run(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

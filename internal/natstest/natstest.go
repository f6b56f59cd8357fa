// Package natstest runs a real NATS server with JetStream in a test's
// process, configured as the chart's NATS is where it matters (max_payload
// 2 MiB: a 1 MiB event and its headers).
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a server with its JetStream store in dir (a new temporary
// directory when empty) on 127.0.0.1:port (any free port when 0), and
// shuts it down at the end of the test. A server started again with the
// same dir and port finds what the first stored.
func Start(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		MaxPayload: 2 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("NATS server not ready after 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

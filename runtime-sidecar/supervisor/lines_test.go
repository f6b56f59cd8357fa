package supervisor

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// Lines go out batched, in messages of at most maxBatch bytes of text;
// past maxPending they are dropped and counted, never waited for.
func TestForwarder(t *testing.T) {
	var mu sync.Mutex
	var msgs []process.Message
	block := make(chan struct{})
	f := newForwarder(func(m process.Message) {
		<-block
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	})
	defer f.stop()
	line := []byte(strings.Repeat("z", 100<<10))
	start := time.Now()
	for range 40 { // 4 MB while the socket is stuck
		f.add(process.StreamFunction, time.Now(), line)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("add waited %v", d)
	}
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var n int
		var dropped int64
		for _, m := range msgs {
			size := 0
			for _, l := range m.Lines {
				size += len(l.Text)
			}
			if m.Op != "lines" || size > maxBatch {
				t.Fatalf("message %s of %d bytes", m.Op, size)
			}
			n += len(m.Lines)
			dropped += m.Dropped
		}
		mu.Unlock()
		if n+int(dropped) == 40 && dropped > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lines sent, %d dropped", n, dropped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

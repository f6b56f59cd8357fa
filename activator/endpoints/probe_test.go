package endpoints

import (
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/lambdapod/lambdapod/activator/queue"
)

// lockedSink records pushes; probes push from their own goroutines.
type lockedSink struct {
	mu  sync.Mutex
	got [][]string
}

func (s *lockedSink) SetEndpoints(_ queue.Key, addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, addrs)
}

func (s *lockedSink) pushes() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slicesClone(s.got)
}

func slicesClone(in [][]string) [][]string { return append([][]string(nil), in...) }

// readyzServer is a sidecar stand-in whose /readyz answers 503 until ready
// is set; it counts the probes.
type readyzServer struct {
	*httptest.Server
	ready  atomic.Bool
	probes atomic.Int32
}

func newReadyz(t *testing.T) *readyzServer {
	s := &readyzServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		s.probes.Add(1)
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *readyzServer) hostPort(t *testing.T) (string, int32, string) {
	h, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n), s.Listener.Addr().String()
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestProbePutsANotReadyEndpointInRotationAtItsFirst200(t *testing.T) {
	yes, no := ptr.To(true), ptr.To(false)
	srv := newReadyz(t)
	ip, port, addr := srv.hostPort(t)
	sk := &lockedSink{}
	var byProbe atomic.Int32
	tr := NewTracker(sk, 1)
	tr.Probe = &Probe{OnReady: func(queue.Key, string) { byProbe.Add(1) }}
	defer tr.Stop()

	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, no)))
	waitFor(t, 2*time.Second, "probes while not ready", func() bool { return srv.probes.Load() >= 3 })
	if got := sk.pushes(); len(got) != 1 || got[0] != nil {
		t.Fatalf("pushed %q while /readyz failed", got)
	}
	turned := time.Now()
	srv.ready.Store(true)
	waitFor(t, time.Second, "the endpoint in rotation", func() bool { return len(sk.pushes()) == 2 })
	t.Logf("in rotation %v after /readyz turned 200", time.Since(turned).Round(time.Millisecond))
	if lag := time.Since(turned); lag > 100*time.Millisecond {
		t.Errorf("in rotation only %v after /readyz turned 200", lag)
	}
	n := srv.probes.Load()
	// The slice says ready later, or repeats not ready: nothing changes,
	// and probing has stopped.
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, no)))
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, yes, yes, no)))
	time.Sleep(100 * time.Millisecond)
	if srv.probes.Load() != n {
		t.Errorf("probed %d more times after the first 200", srv.probes.Load()-n)
	}
	// Terminating: out of rotation as today.
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, yes, yes)))
	want := [][]string{nil, {addr}, nil}
	if got := sk.pushes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("pushed %q, want %q", got, want)
	}
	if byProbe.Load() != 1 {
		t.Fatalf("OnReady called %d times", byProbe.Load())
	}
}

func TestProbedEndpointLeavesWhenItLeavesTheSlice(t *testing.T) {
	no := ptr.To(false)
	srv := newReadyz(t)
	srv.ready.Store(true)
	ip, port, addr := srv.hostPort(t)
	sk := &lockedSink{}
	tr := NewTracker(sk, 1)
	tr.Probe = &Probe{}
	defer tr.Stop()
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, no)))
	waitFor(t, time.Second, "the endpoint in rotation", func() bool { return len(sk.pushes()) == 2 })
	tr.Delete(slice("fn-1", "fn", port))
	if got, want := sk.pushes(), [][]string{nil, {addr}, nil}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pushed %q, want %q", got, want)
	}
}

func TestTerminatingNotReadyEndpointsAreNeverProbedNorUsed(t *testing.T) {
	yes, no := ptr.To(true), ptr.To(false)
	srv := newReadyz(t)
	srv.ready.Store(true)
	ip, port, _ := srv.hostPort(t)
	sk := &lockedSink{}
	tr := NewTracker(sk, 1)
	tr.Probe = &Probe{Interval: 5 * time.Millisecond}
	defer tr.Stop()
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, yes, yes))) // terminating, still serving
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, yes)))  // terminating, not serving
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, nil, nil, yes)))
	time.Sleep(200 * time.Millisecond)
	if n := srv.probes.Load(); n != 0 {
		t.Fatalf("terminating endpoint probed %d times", n)
	}
	for _, got := range sk.pushes() {
		if len(got) != 0 {
			t.Fatalf("pushed %q", got)
		}
	}
}

func TestProbingStopsWhenTheEndpointGoesAndAtStop(t *testing.T) {
	no := ptr.To(false)
	srv := newReadyz(t) // never ready
	ip, port, _ := srv.hostPort(t)
	tr := NewTracker(&lockedSink{}, 1)
	tr.Probe = &Probe{Interval: 5 * time.Millisecond}
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, no)))
	waitFor(t, time.Second, "probes", func() bool { return srv.probes.Load() >= 2 })
	tr.Upsert(slice("fn-1", "fn", port)) // the endpoint is gone
	time.Sleep(50 * time.Millisecond)    // a probe in flight may still land
	n := srv.probes.Load()
	time.Sleep(100 * time.Millisecond)
	if srv.probes.Load() != n {
		t.Fatalf("still probing a removed endpoint")
	}
	tr.Upsert(slice("fn-2", "fn", port, ep(ip, no, no, no)))
	waitFor(t, time.Second, "probes again", func() bool { return srv.probes.Load() > n })
	done := make(chan struct{})
	go func() { tr.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Stop did not return")
	}
	n = srv.probes.Load()
	tr.Upsert(slice("fn-3", "fn", port, ep(ip, no, no, no))) // after Stop: no probe
	time.Sleep(100 * time.Millisecond)
	if srv.probes.Load() != n {
		t.Fatalf("probed after Stop")
	}
}

func TestProbeGivesUpAfterMaxDuration(t *testing.T) {
	no := ptr.To(false)
	srv := newReadyz(t)
	ip, port, _ := srv.hostPort(t)
	sk := &lockedSink{}
	tr := NewTracker(sk, 1)
	tr.Probe = &Probe{Interval: 5 * time.Millisecond, MaxDuration: 50 * time.Millisecond}
	defer tr.Stop()
	tr.Upsert(slice("fn-1", "fn", port, ep(ip, no, no, no)))
	time.Sleep(150 * time.Millisecond)
	n := srv.probes.Load()
	time.Sleep(100 * time.Millisecond)
	if srv.probes.Load() != n || n == 0 {
		t.Fatalf("probes %d then %d: want some, then none", n, srv.probes.Load())
	}
}

package process

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
)

// fakeSupervisor connects to a Remote, says hello (with or without the
// logs feature), starts nothing but answers as a supervisor does, and
// records the operations it got.
type fakeSupervisor struct {
	mu  sync.Mutex
	ops []string
}

func (f *fakeSupervisor) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

func runFakeSupervisor(t *testing.T, path string, logs bool) *fakeSupervisor {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &fakeSupervisor{}
	enc := json.NewEncoder(c)
	if err := enc.Encode(Message{Op: "hello", Pid: 1, Logs: logs}); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var m Message
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			f.mu.Lock()
			f.ops = append(f.ops, m.Op)
			f.mu.Unlock()
			switch m.Op {
			case "start":
				_ = enc.Encode(Message{Op: "started", ID: m.ID, Pid: 42})
			case "invoke":
				_ = enc.Encode(Message{Op: "log", ID: m.Seq})
			case "end":
				if m.Tail {
					_ = enc.Encode(Message{Op: "log", ID: m.Seq, Log: []byte("the tail of " + m.Report.RequestID)})
				}
			}
		}
	}()
	return f
}

// listenRemote listens on a socket of the test's, closed when it ends.
func listenRemote(t *testing.T) (*Remote, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	r, err := ListenRemote(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, path
}

func TestRemoteLogLines(t *testing.T) {
	for _, logs := range []bool{true, false} {
		name := "supervisor with logs"
		if !logs {
			name = "older supervisor"
		}
		t.Run(name, func(t *testing.T) {
			r, path := listenRemote(t)
			f := runFakeSupervisor(t, path, logs)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p, err := r.Start(ctx, 0, lambdaenv.Env{})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p.InvokeStart("id-1", "$LATEST")
			tail := p.InvokeEnd(Report{RequestID: "id-1", Duration: time.Millisecond, MemoryMB: 128}, true, false).Tail
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("InvokeStart and InvokeEnd took %v", d)
			}
			if logs {
				if string(tail) != "the tail of id-1" {
					t.Errorf("tail %q", tail)
				}
				waitOps(t, f, []string{"start", "invoke", "end"})
			} else {
				if tail != nil {
					t.Errorf("tail %q from a supervisor that writes no lines", tail)
				}
				time.Sleep(50 * time.Millisecond)
				if got := f.got(); len(got) != 1 || got[0] != "start" {
					t.Errorf("an older supervisor got %v", got)
				}
			}
		})
	}
}

func waitOps(t *testing.T, f *fakeSupervisor, want []string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got := f.got(); len(got) == len(want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("supervisor got %v, want %v", got, want)
				}
			}
			return
		}
	}
	t.Fatalf("supervisor got %v, want %v", f.got(), want)
}

// The streams wanted are told to a supervisor when it connects (and when
// they change), and the lines it sends reach OnLines.
func TestRemoteForwardLines(t *testing.T) {
	r, path := listenRemote(t)
	got := make(chan []Line, 1)
	r.OnLines(func(lines []Line, dropped int64) {
		if dropped != 3 {
			t.Errorf("dropped %d", dropped)
		}
		got <- lines
	})
	r.Forward(true, false)

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	enc := json.NewEncoder(c)
	_ = enc.Encode(Message{Op: "hello", Pid: 1, Logs: true})
	sc := bufio.NewScanner(c)
	next := func() Message {
		t.Helper()
		if !sc.Scan() {
			t.Fatal("no message")
		}
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := next(); m.Op != "forward" || len(m.Types) != 1 || m.Types[0] != "function" {
		t.Fatalf("after hello: %+v", m)
	}
	r.Forward(true, true)
	if m := next(); m.Op != "forward" || len(m.Types) != 2 {
		t.Fatalf("%+v", m)
	}
	r.Forward(false, false)
	if m := next(); m.Op != "forward" || len(m.Types) != 0 {
		t.Fatalf("%+v", m)
	}
	big := strings.Repeat("\x01", 256<<10) // escaped to 6 bytes each
	_ = enc.Encode(Message{Op: "lines", Lines: []Line{{Stream: "function", Time: 1, Text: "a"}, {Stream: "extension", Time: 2, Text: big}}, Dropped: 3})
	select {
	case lines := <-got:
		if len(lines) != 2 || lines[0].Text != "a" || lines[1].Text != big || lines[1].Stream != "extension" {
			t.Errorf("lines %v", len(lines))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no lines")
	}
}

// With a supervisor that orders START itself (hello: ordered), an invoke
// is sent without waiting for an answer, and the next invoke of the slot
// only once the previous end was answered (its END written first).
func TestRemoteOrderedSupervisor(t *testing.T) {
	r, path := listenRemote(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	enc := json.NewEncoder(c)
	var wmu sync.Mutex
	send := func(m Message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = enc.Encode(m)
	}
	send(Message{Op: "hello", Pid: 1, Logs: true, Ordered: true})
	const endDelay = 200 * time.Millisecond
	type got struct {
		m  Message
		at time.Time
	}
	msgs := make(chan got, 16)
	endAnswered := make(chan time.Time, 4)
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var m Message
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			msgs <- got{m, time.Now()}
			switch m.Op {
			case "start":
				send(Message{Op: "started", ID: m.ID, Pid: 42})
			case "end":
				// No answer to invokes; ends answered late.
				go func(seq uint64) {
					time.Sleep(endDelay)
					endAnswered <- time.Now()
					send(Message{Op: "log", ID: seq})
				}(m.Seq)
			}
		}
	}()
	next := func(op string) got {
		t.Helper()
		select {
		case g := <-msgs:
			if g.m.Op != op {
				t.Fatalf("supervisor got %q, want %q", g.m.Op, op)
			}
			return g
		case <-time.After(5 * time.Second):
			t.Fatalf("supervisor got no %q", op)
			return got{}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := r.Start(ctx, 0, lambdaenv.Env{})
	if err != nil {
		t.Fatal(err)
	}
	next("start")

	t0 := time.Now()
	p.InvokeStart("id-1", "$LATEST")
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Errorf("InvokeStart waited %v for a supervisor that orders START itself", d)
	}
	if g := next("invoke"); g.m.Seq != 0 || g.m.Req != "id-1" {
		t.Errorf("invoke %+v, want no seq (no answer wanted)", g.m)
	}
	t1 := time.Now()
	p.InvokeEnd(Report{RequestID: "id-1", Duration: time.Millisecond, MemoryMB: 128}, false, false)
	if d := time.Since(t1); d > 100*time.Millisecond {
		t.Errorf("InvokeEnd waited %v", d)
	}
	if g := next("end"); g.m.Seq == 0 {
		t.Errorf("end %+v without a seq: its answer is what the next invoke waits for", g.m)
	}
	p.InvokeStart("id-2", "$LATEST")
	g := next("invoke")
	answered := <-endAnswered
	if g.at.Before(answered) {
		t.Errorf("the next invoke came %v before the previous end was answered", answered.Sub(g.at))
	}
}

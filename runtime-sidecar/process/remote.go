package process

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/lambdaenv"
)

// Message is one line of the control protocol between the sidecar and the
// supervisor: newline-delimited JSON over a unix socket. The sidecar
// listens; the supervisor connects.
//
//	supervisor → sidecar: {"op":"hello","pid":P,"logs":true,"ordered":true,"extensions":["name",...]}
//	    (logs: it takes invoke and end; ordered: it writes an invoke's START
//	    before the bootstrap's output of the invocation by itself, so an
//	    invoke without a seq is not answered, and it answers every end with
//	    a seq; extensions: the executables of its extensions directory,
//	    sorted; older supervisors send none of them: no platform lines, no
//	    extensions, START answered)
//	sidecar → supervisor: {"op":"start","id":N,"slot":I,"env":{"override":["K=V",...],"default":[...]}}
//	sidecar → supervisor: {"op":"start","id":N,"ext":"name","env":{...}}   (an external extension: <dir>/<name>)
//	supervisor → sidecar: {"op":"started","id":N,"pid":P} | {"op":"exited","id":N,"exit":"exit status 1"} | {"op":"failed","id":N,"error":"..."}
//	sidecar → supervisor: {"op":"stop","id":N,"graceMs":2000}
//	sidecar → supervisor: {"op":"invoke","slot":I,"req":"<request id>","version":"$LATEST","seq":S}   (write START; answered when seq is set)
//	sidecar → supervisor: {"op":"end","slot":I,"report":{...},"seq":S,"tail":true,"mem":true}   (write END, REPORT; answered when seq is set)
//	supervisor → sidecar: {"op":"log","id":S,"log":"<base64>","maxMB":M}
//	    (START written; END and REPORT written, with the tail when asked for, and with mem (a
//	    telemetry subscriber wants platform.report) Max Memory Used; after the lines forwarded so far)
//	sidecar → supervisor: {"op":"forward","types":["function","extension"]}   (send the output lines of these streams; no types: stop)
//	supervisor → sidecar: {"op":"lines","lines":[{"s":"function","t":<unix ns>,"l":"<line>"},...],"dropped":N}
//	                      (batched, every few ms; dropped: lines lost since the last batch because the sidecar did not keep up)
//	supervisor → sidecar: {"op":"terminating"}   (the supervisor got SIGTERM: drain)
//	sidecar → supervisor: {"op":"exit"}          (all done: the supervisor exits 0)
type Message struct {
	Op      string         `json:"op"`
	ID      uint64         `json:"id,omitempty"`
	Slot    int            `json:"slot,omitempty"`
	Pid     int            `json:"pid,omitempty"`
	Env     *lambdaenv.Env `json:"env,omitempty"`
	GraceMs int64          `json:"graceMs,omitempty"`
	Exit    string         `json:"exit,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Invocations: the request id and version (invoke), the report (end),
	// whether the tail is wanted and the id its answer carries (end), and
	// the tail (log).
	Req     string  `json:"req,omitempty"`
	Version string  `json:"version,omitempty"`
	Report  *Report `json:"report,omitempty"`
	Tail    bool    `json:"tail,omitempty"`
	Seq     uint64  `json:"seq,omitempty"`
	Log     []byte  `json:"log,omitempty"`
	// Memory (end) asks for Max Memory Used, MaxMB (log) is it.
	Memory bool `json:"mem,omitempty"`
	MaxMB  int  `json:"maxMB,omitempty"`
	// Logs, in the hello: the supervisor writes the platform log lines
	// (invoke, end). An image built with an older supervisor has none.
	Logs bool `json:"logs,omitempty"`
	// Ordered, in the hello: the supervisor writes START before the
	// bootstrap's output of the invocation without being waited for.
	Ordered bool `json:"ordered,omitempty"`
	// Telemetry: the streams whose lines are wanted (forward), the lines
	// (lines) and how many were lost before them.
	Types   []string `json:"types,omitempty"`
	Lines   []Line   `json:"lines,omitempty"`
	Dropped int64    `json:"dropped,omitempty"`
	// Extensions, in the hello: the external extensions the supervisor
	// can start. Ext, in a start: the one to start instead of a bootstrap.
	Extensions []string `json:"extensions,omitempty"`
	Ext        string   `json:"ext,omitempty"`
}

// Line is an output line of a bootstrap or an extension, forwarded by the
// supervisor for the Telemetry and Logs APIs.
type Line struct {
	Stream string `json:"s"` // function or extension
	Time   int64  `json:"t"` // when it was read, Unix ns
	Text   string `json:"l"`
}

// ErrSupervisorGone is the exit reported for bootstraps whose supervisor
// disconnected.
const exitSupervisorGone = "supervisor disconnected"

// Remote is a Controller that drives a supervisor over a unix socket.
type Remote struct {
	log *slog.Logger
	ln  net.Listener

	mu          sync.Mutex
	conn        *remoteConn
	connected   chan struct{} // closed while a supervisor is connected
	nextID      uint64
	terminating chan struct{}
	termOnce    sync.Once
	// forward is the streams whose lines are wanted (told to every
	// supervisor that connects); onLines takes them.
	forward []string
	onLines func(lines []Line, dropped int64)
}

type remoteConn struct {
	c       net.Conn
	logs    bool // the supervisor takes invoke and end (its hello said so)
	ordered bool // and orders START itself (its hello said so)
	exts    []string
	wmu     sync.Mutex
	enc     *json.Encoder
	procs   map[uint64]*remoteProc
	pending map[uint64]chan Message
	closed  chan struct{}
}

type remoteProc struct {
	r    *Remote
	conn *remoteConn
	id   uint64
	slot int
	pid  int
	ack  chan Message // InvokeStart's answer
	// endAck, with an ordered supervisor, answers the last InvokeEnd: the
	// next InvokeStart waits for it (END before START), usually long
	// after it came, while the caller had its answer.
	endMu  sync.Mutex
	endAck chan Message
	exited chan string
	once   sync.Once
	stop   sync.Once
}

// ListenRemote listens on the unix socket path and accepts supervisors. A
// path starting with @ names an abstract socket, which lives in the network
// namespace (a pod's containers share one) rather than in a file, so no
// volume has to carry it; a file socket gets mode 0666, so a supervisor
// running as another user can connect.
func ListenRemote(path string, log *slog.Logger) (*Remote, error) {
	abstract := strings.HasPrefix(path, "@")
	if !abstract {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if !abstract {
		if err := os.Chmod(path, 0o666); err != nil {
			ln.Close()
			return nil, err
		}
	}
	r := &Remote{log: log, ln: ln, connected: make(chan struct{}), terminating: make(chan struct{})}
	go r.accept()
	return r, nil
}

// Terminating is closed when the supervisor reports it got SIGTERM.
func (r *Remote) Terminating() <-chan struct{} { return r.terminating }

// Close stops listening and drops the supervisor connection.
func (r *Remote) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	if r.conn != nil {
		r.conn.c.Close()
	}
	r.mu.Unlock()
	if a := r.ln.Addr().String(); !strings.HasPrefix(a, "@") {
		_ = os.Remove(a)
	}
	return err
}

// Exit tells the supervisor to exit (after the bootstraps were stopped).
func (r *Remote) Exit() {
	r.mu.Lock()
	c := r.conn
	r.mu.Unlock()
	if c != nil {
		_ = c.send(Message{Op: "exit"})
	}
}

func (r *Remote) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		rc := &remoteConn{c: c, enc: json.NewEncoder(c), procs: map[uint64]*remoteProc{},
			pending: map[uint64]chan Message{}, closed: make(chan struct{})}
		// One supervisor at a time: the newest (after its hello) wins.
		go r.serve(rc)
	}
}

func (r *Remote) serve(rc *remoteConn) {
	sc := bufio.NewScanner(rc.c)
	// Room for a batch of forwarded lines (at most 256 KiB of text, each
	// byte escaped to at most 6).
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	first := true
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			r.log.Warn("bad control message", "err", err)
			continue
		}
		if first {
			if m.Op != "hello" {
				r.log.Warn("supervisor did not say hello", "op", m.Op)
				break
			}
			first = false
			r.log.Info("supervisor connected", "pid", m.Pid, "logs", m.Logs, "extensions", m.Extensions)
			r.mu.Lock()
			rc.logs, rc.ordered = m.Logs, m.Logs && m.Ordered
			rc.exts = m.Extensions
			if r.conn != nil && r.conn != rc {
				r.conn.c.Close()
			}
			r.conn = rc
			select {
			case <-r.connected:
			default:
				close(r.connected)
			}
			forward := r.forward
			r.mu.Unlock()
			if len(forward) > 0 {
				if err := rc.send(Message{Op: "forward", Types: forward}); err != nil {
					rc.c.Close()
				}
			}
			continue
		}
		switch m.Op {
		case "started", "failed", "log":
			r.mu.Lock()
			ch := rc.pending[m.ID]
			delete(rc.pending, m.ID)
			r.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case "exited":
			r.mu.Lock()
			p := rc.procs[m.ID]
			delete(rc.procs, m.ID)
			r.mu.Unlock()
			if p != nil {
				p.exit(m.Exit)
			}
		case "terminating":
			r.termOnce.Do(func() { close(r.terminating) })
		case "lines":
			r.mu.Lock()
			f := r.onLines
			r.mu.Unlock()
			if f != nil {
				f(m.Lines, m.Dropped)
			}
		}
	}
	rc.c.Close()
	close(rc.closed)
	r.mu.Lock()
	if r.conn == rc {
		r.conn = nil
		r.connected = make(chan struct{})
	}
	procs := rc.procs
	rc.procs = map[uint64]*remoteProc{}
	pending := rc.pending
	rc.pending = map[uint64]chan Message{}
	r.mu.Unlock()
	if !first {
		r.log.Warn("supervisor disconnected")
	}
	for _, p := range procs {
		p.exit(exitSupervisorGone)
	}
	for id, ch := range pending {
		ch <- Message{Op: "failed", ID: id, Error: exitSupervisorGone}
	}
}

func (rc *remoteConn) send(m Message) error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_ = rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return rc.enc.Encode(m)
}

// Start implements Controller: it waits for a supervisor, asks it to start
// the bootstrap for slot and waits for the answer.
func (r *Remote) Start(ctx context.Context, slot int, env lambdaenv.Env) (Process, error) {
	return r.start(ctx, Message{Op: "start", Slot: slot, Env: &env})
}

// Extensions implements Controller: the list in the hello of the
// supervisor (waiting for one to connect).
func (r *Remote) Extensions(ctx context.Context) ([]string, error) {
	rc, err := r.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	return rc.exts, nil
}

// StartExtension implements Controller.
func (r *Remote) StartExtension(ctx context.Context, name string, env lambdaenv.Env) (Process, error) {
	if !ValidExtensionName(name) {
		return nil, errors.New("invalid extension name " + name)
	}
	return r.start(ctx, Message{Op: "start", Ext: name, Env: &env})
}

func (r *Remote) waitConn(ctx context.Context) (*remoteConn, error) {
	for {
		r.mu.Lock()
		rc, connected := r.conn, r.connected
		r.mu.Unlock()
		if rc != nil {
			return rc, nil
		}
		select {
		case <-connected:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *Remote) start(ctx context.Context, m Message) (Process, error) {
	for {
		rc, err := r.waitConn(ctx)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if r.conn != rc {
			r.mu.Unlock()
			continue
		}
		r.nextID++
		id := r.nextID
		ch := make(chan Message, 1)
		rc.pending[id] = ch
		p := &remoteProc{r: r, conn: rc, id: id, slot: m.Slot, exited: make(chan string, 1), ack: make(chan Message, 1)}
		rc.procs[id] = p
		r.mu.Unlock()
		m.ID = id
		if err := rc.send(m); err != nil {
			rc.c.Close()
		}
		select {
		case a := <-ch:
			if a.Op == "started" {
				p.pid = a.Pid
				return p, nil
			}
			r.mu.Lock()
			delete(rc.procs, id)
			r.mu.Unlock()
			if a.Error == exitSupervisorGone {
				continue // wait for the supervisor to come back
			}
			return nil, errors.New(a.Error)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *remoteProc) Pid() int { return p.pid }

func (p *remoteProc) Exited() <-chan string { return p.exited }

func (p *remoteProc) exit(desc string) {
	p.once.Do(func() { p.exited <- desc })
}

func (p *remoteProc) Stop(grace time.Duration) {
	p.stop.Do(func() {
		if err := p.conn.send(Message{Op: "stop", ID: p.id, GraceMs: grace.Milliseconds()}); err != nil {
			p.conn.c.Close()
		}
	})
}

// InvokeStart implements Process: the supervisor writes START before
// anything the bootstrap prints of the invocation. An ordered supervisor
// sees to that by itself, so the bootstrap gets the invocation without a
// round trip to the supervisor on the way (once the previous END is
// written); an older one answers when START is written, and the
// invocation waits for that.
func (p *remoteProc) InvokeStart(requestID, version string) {
	rc := p.conn
	if !rc.logs {
		return
	}
	if rc.ordered {
		p.endMu.Lock()
		ch := p.endAck
		p.endAck = nil
		p.endMu.Unlock()
		if ch != nil {
			t := time.NewTimer(time.Second)
			select {
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		}
		if err := rc.send(Message{Op: "invoke", Slot: p.slot, Req: requestID, Version: version}); err != nil {
			rc.c.Close()
		}
		return
	}
	p.r.mu.Lock()
	p.r.nextID++
	seq := p.r.nextID
	rc.pending[seq] = p.ack
	p.r.mu.Unlock()
	if err := rc.send(Message{Op: "invoke", Slot: p.slot, Req: requestID, Version: version, Seq: seq}); err != nil {
		rc.c.Close()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-p.ack:
	case <-t.C:
		p.r.mu.Lock()
		delete(rc.pending, seq)
		p.r.mu.Unlock()
		// A late answer must not be taken for the next one.
		select {
		case <-p.ack:
		default:
		}
	}
}

// InvokeEnd implements Process: one message, waited for only when the
// tail or Max Memory Used is wanted (the answer comes after the lines the
// supervisor forwarded so far). An ordered supervisor answers every end,
// and the next InvokeStart waits for that answer instead.
func (p *remoteProc) InvokeEnd(rep Report, tail, memory bool) Ended {
	rc := p.conn
	if !rc.logs {
		return Ended{}
	}
	m := Message{Op: "end", Slot: p.slot, Report: &rep}
	var ch chan Message
	if tail || memory || rc.ordered {
		ch = make(chan Message, 1)
		p.r.mu.Lock()
		p.r.nextID++
		m.Seq = p.r.nextID
		m.Tail, m.Memory = tail, memory
		rc.pending[m.Seq] = ch
		p.r.mu.Unlock()
	}
	if err := rc.send(m); err != nil {
		rc.c.Close()
	}
	if ch == nil {
		return Ended{}
	}
	if !tail && !memory {
		p.endMu.Lock()
		p.endAck = ch
		p.endMu.Unlock()
		return Ended{}
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case a := <-ch:
		return Ended{Tail: a.Log, MaxMemoryMB: a.MaxMB}
	case <-t.C:
		p.r.mu.Lock()
		delete(rc.pending, m.Seq)
		p.r.mu.Unlock()
		return Ended{}
	}
}

// OnLines sets the receiver of the lines supervisors forward.
func (r *Remote) OnLines(f func(lines []Line, dropped int64)) {
	r.mu.Lock()
	r.onLines = f
	r.mu.Unlock()
}

// Forward asks the supervisor (and any that connects later) to forward
// the output lines of bootstraps (function) and extensions; with neither
// it stops, and the lines cost nothing more.
func (r *Remote) Forward(function, extension bool) {
	var types []string
	if function {
		types = append(types, "function")
	}
	if extension {
		types = append(types, "extension")
	}
	r.mu.Lock()
	r.forward = types
	rc := r.conn
	r.mu.Unlock()
	if rc != nil {
		if err := rc.send(Message{Op: "forward", Types: types}); err != nil {
			rc.c.Close()
		}
	}
}

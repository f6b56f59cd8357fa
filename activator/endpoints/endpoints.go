// Package endpoints turns EndpointSlice events into the ready pod addresses
// of each function, pushed to a sink as they change (no per-request API
// call, no kube-proxy).
//
// A function's Service is named after the function, so its slices carry
// kubernetes.io/service-name=<function>. The endpointslice controller copies
// the Service's labels to its slices, so the informer only lists slices
// labelled app.kubernetes.io/managed-by=lambdapod.
//
// An endpoint is in rotation while ready is not false, serving is not false
// and terminating is not true: a pod leaves the rotation as soon as it
// starts terminating, while it still finishes the requests it has.
//
// With Probe set, an endpoint that the slice lists as not ready (and not
// terminating) is probed directly on GET /readyz, the sidecar's readiness
// endpoint, and joins the rotation as soon as it answers 200, without waiting
// for the kubelet's next readiness probe and the slice update that follows
// it (see probe.go).
package endpoints

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// Sink receives a function's ready addresses (host:port) on every change.
type Sink interface {
	SetEndpoints(k queue.Key, addrs []string)
}

// Tracker aggregates the slices of each function.
type Tracker struct {
	// DefaultPort is used when a slice has no port named "http".
	DefaultPort int32
	Sink        Sink
	// Probe, if set before the first Upsert, makes the tracker probe
	// not-ready endpoints itself (see Probe).
	Probe *Probe

	mu      sync.Mutex
	slices  map[string]sliceInfo   // namespace/slice name -> info
	byFn    map[queue.Key][]string // function -> slice keys
	last    map[queue.Key][]string // last addresses pushed
	probes  map[queue.Key]map[string]*probing
	stopped bool
	wg      sync.WaitGroup
}

type sliceInfo struct {
	fn       queue.Key
	addrs    []string
	notReady []Candidate
}

// NewTracker returns a tracker that pushes to sink.
func NewTracker(sink Sink, defaultPort int32) *Tracker {
	return &Tracker{Sink: sink, DefaultPort: defaultPort,
		slices: map[string]sliceInfo{}, byFn: map[queue.Key][]string{}, last: map[queue.Key][]string{},
		probes: map[queue.Key]map[string]*probing{}}
}

// Upsert records a slice (added or updated).
func (t *Tracker) Upsert(s *discoveryv1.EndpointSlice) {
	svc := s.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return
	}
	k := queue.Key{Namespace: s.Namespace, Name: svc}
	info := sliceInfo{fn: k, addrs: ReadyAddrs(s, t.DefaultPort)}
	if t.Probe != nil {
		info.notReady = NotReadyCandidates(s, t.DefaultPort)
	}
	sk := s.Namespace + "/" + s.Name
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.slices[sk]; ok && old.fn != k {
		t.removeLocked(sk, old.fn)
		t.reconcileLocked(old.fn)
		t.pushLocked(old.fn)
	}
	if _, ok := t.slices[sk]; !ok {
		t.byFn[k] = append(t.byFn[k], sk)
	}
	t.slices[sk] = info
	t.reconcileLocked(k)
	t.pushLocked(k)
}

// Delete forgets a slice.
func (t *Tracker) Delete(s *discoveryv1.EndpointSlice) {
	sk := s.Namespace + "/" + s.Name
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.slices[sk]
	if !ok {
		return
	}
	t.removeLocked(sk, old.fn)
	t.reconcileLocked(old.fn)
	t.pushLocked(old.fn)
}

func (t *Tracker) removeLocked(sk string, k queue.Key) {
	delete(t.slices, sk)
	t.byFn[k] = slices.DeleteFunc(t.byFn[k], func(s string) bool { return s == sk })
	if len(t.byFn[k]) == 0 {
		delete(t.byFn, k)
	}
}

func (t *Tracker) pushLocked(k queue.Key) {
	var addrs []string
	for _, sk := range t.byFn[k] {
		addrs = append(addrs, t.slices[sk].addrs...)
	}
	for _, p := range t.probes[k] {
		if p.ready {
			addrs = append(addrs, p.addr)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if prev, ok := t.last[k]; ok && slices.Equal(prev, addrs) {
		return
	}
	if len(addrs) == 0 {
		delete(t.last, k)
	} else {
		t.last[k] = addrs
	}
	t.Sink.SetEndpoints(k, addrs)
}

// ReadyAddrs returns host:port of the endpoints of s that take requests.
func ReadyAddrs(s *discoveryv1.EndpointSlice, defaultPort int32) []string {
	ps := slicePort(s, defaultPort)
	var out []string
	for _, e := range s.Endpoints {
		c := e.Conditions
		if (c.Ready != nil && !*c.Ready) || (c.Serving != nil && !*c.Serving) || (c.Terminating != nil && *c.Terminating) {
			continue
		}
		if len(e.Addresses) == 0 {
			continue
		}
		out = append(out, net.JoinHostPort(e.Addresses[0], ps))
	}
	return out
}

// Candidate is a not-ready endpoint that may be probed.
type Candidate struct {
	// Addr is host:port of the endpoint.
	Addr string
	// ID tells apart two pods that got the same address in turn.
	ID string
}

// NotReadyCandidates returns the endpoints of s that are explicitly not
// ready, not terminating and have an address: pods starting up. Terminating
// endpoints (whatever their serving condition) are never candidates.
func NotReadyCandidates(s *discoveryv1.EndpointSlice, defaultPort int32) []Candidate {
	ps := slicePort(s, defaultPort)
	var out []Candidate
	for _, e := range s.Endpoints {
		c := e.Conditions
		if c.Ready == nil || *c.Ready || (c.Terminating != nil && *c.Terminating) || len(e.Addresses) == 0 {
			continue
		}
		addr := net.JoinHostPort(e.Addresses[0], ps)
		id := addr
		if e.TargetRef != nil {
			id += "/" + string(e.TargetRef.UID) + "/" + e.TargetRef.Name
		}
		out = append(out, Candidate{Addr: addr, ID: id})
	}
	return out
}

// reconcileLocked starts a probe for each new not-ready candidate of k and
// stops the probes of candidates that are gone, turned ready in a slice or
// turned terminating. Call with mu held.
func (t *Tracker) reconcileLocked(k queue.Key) {
	ready := map[string]bool{}
	want := map[string]string{} // candidate ID -> addr
	for _, sk := range t.byFn[k] {
		for _, a := range t.slices[sk].addrs {
			ready[a] = true
		}
	}
	for _, sk := range t.byFn[k] {
		for _, c := range t.slices[sk].notReady {
			if !ready[c.Addr] {
				want[c.ID] = c.Addr
			}
		}
	}
	cur := t.probes[k]
	for id, p := range cur {
		if _, ok := want[id]; !ok {
			p.cancel()
			delete(cur, id)
		}
	}
	if t.Probe != nil && !t.stopped {
		for id, addr := range want {
			if _, ok := cur[id]; ok {
				continue
			}
			if cur == nil {
				cur = map[string]*probing{}
				t.probes[k] = cur
			}
			ctx, cancel := context.WithCancel(context.Background())
			p := &probing{addr: addr, cancel: cancel}
			cur[id] = p
			t.wg.Add(1)
			go t.runProbe(ctx, k, id, p)
		}
	}
	if len(cur) == 0 {
		delete(t.probes, k)
	}
}

// Stop stops all probes and waits for them; later slices start none.
func (t *Tracker) Stop() {
	t.mu.Lock()
	t.stopped = true
	for _, ps := range t.probes {
		for _, p := range ps {
			p.cancel()
		}
	}
	t.mu.Unlock()
	t.wg.Wait()
}

func slicePort(s *discoveryv1.EndpointSlice, defaultPort int32) string {
	port := defaultPort
	found := false
	for _, p := range s.Ports {
		if p.Port != nil && p.Name != nil && *p.Name == contract.InvokePortName {
			port, found = *p.Port, true
			break
		}
	}
	if !found && len(s.Ports) == 1 && s.Ports[0].Port != nil {
		port = *s.Ports[0].Port
	}
	return strconv.Itoa(int(port))
}

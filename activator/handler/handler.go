// Package handler is the activator's request path:
//
//	Chain.ServeHTTP  route: find the function (Invoke API, host or path
//	                 routing) and choose the answer's format, once
//	  Payload        read the body and make the event; answer DryRun, and
//	                 Event at once (the rest runs in the background)
//	  Wait           take a slot on a pod with free concurrency, holding the
//	                 request in the function's bounded queue while there is
//	                 none; the pool retries on another pod when one refused
//	                 without running anything
//	  Proxy          send the invocation to the pod's sidecar and answer
//	render           the one writer of failures (failure.go)
//
// Every stage either answers the caller or returns a *Failure; the chain
// renders failures in the format that the route chose, the Lambda Invoke
// API's or plain HTTP's. Health, readiness and metrics live on a separate
// admin server (see package server).
package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/lambdapod/lambdapod/activator/auth"
	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Function is what the activator needs to know about a Function.
type Function struct {
	Timeout     time.Duration
	Concurrency int
	EventFormat event.Format
	// Public: spec.authType None, anyone may invoke it; else callers need
	// credentials of an identity RBAC lets invoke it (auth.go).
	Public bool
	// Async is how its Event invocations are retried and expire in the
	// durable queue.
	Async eventqueue.Policy
}

// Functions looks functions up (from an informer's cache).
type Functions interface {
	Lookup(namespace, name string) (Function, bool)
}

// Pools gives a function's pool of pods and wait queue.
type Pools interface {
	Get(queue.Key) *queue.Pool
	MaxQueue() int
}

// Invoker sends an invocation to a pod.
type Invoker interface {
	Invoke(ctx context.Context, addr string, r *proxy.Request) (*http.Response, error)
}

// Options configure the chain.
type Options struct {
	Route route.Config
	// ActivationTimeout bounds the wait for a slot on a ready pod.
	ActivationTimeout time.Duration
	// TimeoutGrace is added to the function's timeout before the activator
	// gives up on a pod, so that the sidecar's own Sandbox.Timedout answer
	// normally arrives first.
	TimeoutGrace time.Duration
	// OverflowStatus is what a request gets when its function's queue is
	// full: 429 (with Retry-After) or 503.
	OverflowStatus int
	// RetryAfter is the Retry-After of overflow answers.
	RetryAfter time.Duration
	// Region makes the ARNs of error messages.
	Region string
	// BodyTimeout bounds the reading of a request's body, so that a client
	// sending it slowly cannot hold a connection and its buffer for ever.
	BodyTimeout time.Duration
	// MaxHeldBytes bounds the bytes of request bodies (and the events made
	// of them) held at once, in flight or waiting; a request that would go
	// past it is refused before its body is read, with the overflow status.
	MaxHeldBytes int64
	// TrustedProxies are the addresses of the proxies in front of the
	// activator (the Ingress) whose X-Forwarded-* headers are believed;
	// from anyone else sourceIp is the peer's address.
	TrustedProxies []netip.Prefix
}

// trusts reports whether a is one of the trusted proxies.
func (o *Options) trusts(a netip.Addr) bool {
	for _, p := range o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxAttempts bounds the pods tried for one request when pods cannot be
// reached or are shutting down (a pod that went away, or began to, before
// the activator heard of it).
const maxAttempts = 3

// call is one request on its way through the chain. The route fills it in;
// Payload adds the payload; nothing else changes it.
type call struct {
	start     time.Time
	requestID string
	// invoke is the answer's format: the Invoke API's, else plain HTTP.
	invoke  bool
	region  string
	target  route.Target
	key     queue.Key
	found   bool
	fn      Function
	payload []byte
	// reservation holds the queue place of an accepted Event invocation.
	reservation *queue.Reservation
	// held is the bytes taken from the budget for this request.
	held int64
	// verify, if set, checks the caller's signature against the body.
	verify func(body []byte) *Failure
	// parked is set while the request waits without its goroutine (see
	// park.go); the resumed request's handler owns the call then.
	parked *parked
}

// stage serves a call: it answers the caller, or returns a *Failure that
// the chain renders.
type stage interface {
	serve(w http.ResponseWriter, r *http.Request, c *call) *Failure
}

// Chain is the request path; see the package doc.
type Chain struct {
	opts    Options
	fns     Functions
	metrics *metrics.Metrics
	payload *Payload
	wait    *Wait
	budget  *budget
	auth    *auth.Authorizer
}

// New returns the request chain.
func New(o Options, fns Functions, pools Pools, inv Invoker, m *metrics.Metrics) *Chain {
	if o.ActivationTimeout <= 0 {
		o.ActivationTimeout = 2 * time.Minute
	}
	if o.OverflowStatus == 0 {
		o.OverflowStatus = http.StatusTooManyRequests
	}
	if o.MaxHeldBytes <= 0 {
		o.MaxHeldBytes = 128 << 20
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 30 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Region == "" {
		o.Region = invokeapi.DefaultRegion
	}
	o.Route.Region = o.Region
	p := &Proxy{opts: o, invoker: inv}
	w := &Wait{opts: o, pools: pools, metrics: m, next: p}
	overflow := Throttled
	if o.OverflowStatus != http.StatusTooManyRequests {
		overflow = Overloaded
	}
	var trusted func(netip.Addr) bool
	if len(o.TrustedProxies) > 0 {
		trusted = o.trusts
	}
	ch := &Chain{opts: o, fns: fns, metrics: m, wait: w, budget: &budget{max: o.MaxHeldBytes}}
	ch.payload = &Payload{pools: pools, next: w, bodyTimeout: o.BodyTimeout,
		budget: ch.budget, overflow: overflow, trusted: trusted}
	w.finish = ch.finish
	return ch
}

// SetParker makes requests that must wait park without their goroutine
// (see package park); p's server must be serving. Without a parker they
// wait on their goroutines.
func (ch *Chain) SetParker(p *park.Parker) { ch.wait.parker = p }

// WaitAsync waits for the Event invocations running in the background.
func (ch *Chain) WaitAsync() { ch.payload.async.Wait() }

func (ch *Chain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	var f *Failure
	c := resumed(r)
	if c == nil {
		c = &call{start: time.Now(), requestID: invokeapi.NewRequestID(), region: ch.opts.Region}
	}
	defer ch.recover(sw, c)
	if c.parked != nil {
		// A parked request, back: it goes on where it stopped.
		f = ch.wait.serve(sw, r, c)
	} else if f = ch.route(r, c); f == nil {
		if f = ch.authenticate(r, c); f == nil {
			f = ch.payload.serve(sw, r, c)
		}
	}
	if f == parkedAway {
		// The call is the resumed request's now.
		return
	}
	code := sw.code
	if f != nil {
		code = render(sw, c, f)
	}
	if code == 0 {
		code = 499 // the caller went away before an answer
	}
	ch.finish(c, code)
}

// finish gives the request's bytes back and records it.
func (ch *Chain) finish(c *call, code int) {
	ch.budget.give(c.held)
	c.held = 0
	ch.observe(c, code)
}

// observe records a request under its function, and requests for
// functions that do not exist under one series: a caller must not be able
// to make series without end.
func (ch *Chain) observe(c *call, code int) {
	ns, name := c.key.Namespace, c.key.Name
	if !c.found {
		ns, name = "", ""
	}
	ch.metrics.Observe(ns, name, code, time.Since(c.start))
}

// recover turns a panic in the chain into a failure for its caller (if
// nothing was written yet) and a count, so that one bad answer from a function
// cannot take the activator and everyone's held requests down.
// http.ErrAbortHandler is the way to abort a response, and goes on.
func (ch *Chain) recover(sw *statusWriter, c *call) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	ch.metrics.Panicked()
	slog.Error("panic serving a request", "function", c.key.String(), "requestId", c.requestID, "panic", v, "stack", string(debug.Stack()))
	code := sw.code
	if code == 0 {
		// As for a lost pod: the payload may have reached a bootstrap, so
		// no 5xx on the Invoke API.
		code = render(sw, c, fail(ConnectionLost, "the activator failed while serving the invocation"))
	}
	ch.finish(c, code)
}

// route finds the function and chooses the answer's format.
func (ch *Chain) route(r *http.Request, c *call) *Failure {
	t, err := route.Parse(r, ch.opts.Route)
	if err != nil {
		var ie *invokeapi.Error
		if errors.As(err, &ie) {
			c.invoke = true
			return &Failure{Kind: Refused, Message: ie.Message, Lambda: ie}
		}
		return &Failure{Kind: NoRoute, Message: err.Error()}
	}
	c.target, c.invoke = t, t.Kind == route.Invoke
	c.key = queue.Key{Namespace: t.Namespace, Name: t.Name}
	fn, ok := ch.fns.Lookup(t.Namespace, t.Name)
	if !ok || (c.invoke && t.Function.Qualifier != "" && t.Function.Qualifier != invokeapi.LatestVersion) {
		return fail(NotFound, "no function %q in namespace %q", t.Name, t.Namespace)
	}
	c.fn, c.found = fn, true
	return nil
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// discard is the ResponseWriter of asynchronous (Event) invocations.
type discard struct {
	h    http.Header
	code int
	// keep, if positive, keeps up to that many bytes of the body in kept;
	// past it, tooLong is set and kept dropped.
	keep    int
	kept    []byte
	tooLong bool
}

func (d *discard) Header() http.Header { return d.h }

func (d *discard) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	if d.keep > 0 && !d.tooLong {
		if len(d.kept)+len(b) > d.keep {
			d.tooLong, d.kept = true, nil
		} else {
			d.kept = append(d.kept, b...)
		}
	}
	return len(b), nil
}

func (d *discard) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

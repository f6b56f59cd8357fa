// Package invoke serves the Lambda Invoke API
// (POST /2015-03-31/functions/{name}/invocations) and the sidecar's health
// and metrics endpoints.
package invoke

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/metrics"
)

// Config configures the invoke side.
type Config struct {
	FunctionName string
	Version      string // X-Amz-Executed-Version; invokeapi.LatestVersion by default
	Region       string
	Timeout      time.Duration
	Log          *slog.Logger
	Metrics      *metrics.Metrics
	// Ready reports whether every bootstrap has called /next.
	Ready func() bool
	// MaxInFlight, when positive, is how many invocations are admitted at
	// once (running, or about to be taken by a free bootstrap). Another is
	// refused at once, not queued: 429 marked not-run busy, which the
	// activator holds in its own queue. However many activators send to
	// the pod, its concurrency holds, and no invocation waits in the pod
	// where its caller's timers cannot see it.
	MaxInFlight int
	// BodyTimeout bounds the reading of a payload, so that a caller that
	// sends it slowly cannot keep a slot (30s if zero).
	BodyTimeout time.Duration
}

// Handler is the invoke side of the sidecar.
type Handler struct {
	cfg      Config
	queue    *invocation.Queue
	arn      string
	version  []string
	draining atomic.Bool

	inFlight atomic.Int64
	idleMu   sync.Mutex
	idle     chan struct{} // closed when inFlight drops to 0 while draining
	mux      *http.ServeMux
	tokens   *invoketoken.Verifier
}

// RequireTokens makes the handler refuse invocations without a token from
// the activators (package invoketoken). Health, readiness and metrics stay
// open: the kubelet and Prometheus carry no token.
func (h *Handler) RequireTokens(v *invoketoken.Verifier) { h.tokens = v }

// New returns the invoke handler.
func New(cfg Config, queue *invocation.Queue) *Handler {
	if cfg.Version == "" {
		cfg.Version = invokeapi.LatestVersion
	}
	h := &Handler{cfg: cfg, queue: queue, version: []string{cfg.Version}}
	h.arn = invokeapi.FunctionARN(cfg.Region, cfg.FunctionName)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", h.notFound)
	h.mux = mux
	return h
}

// Ready reports readiness: every bootstrap called /next and not draining.
func (h *Handler) Ready() bool {
	return !h.draining.Load() && h.cfg.Ready()
}

// InFlight is the number of accepted invocations that have not ended.
func (h *Handler) InFlight() int64 { return h.inFlight.Load() }

// Drain stops accepting invocations and makes readyz fail. The returned
// channel is closed once every accepted invocation (running or queued)
// has ended.
func (h *Handler) Drain() <-chan struct{} {
	h.idleMu.Lock()
	defer h.idleMu.Unlock()
	if h.idle == nil {
		h.idle = make(chan struct{})
		h.draining.Store(true)
		if h.inFlight.Load() == 0 {
			close(h.idle)
		}
	}
	return h.idle
}

// FailQueued answers every invocation still queued with a service error
// (they never reached a bootstrap, so a retry is safe).
func (h *Handler) FailQueued() {
	for inv := h.queue.TryTake(); inv != nil; inv = h.queue.TryTake() {
		inv.CompleteQueued(&invocation.Result{Unavailable: true, Outcome: invocation.OutcomeShutdown})
	}
}

func (h *Handler) ended(inv *invocation.Invocation, o invocation.Outcome) {
	secs := -1.0
	if !inv.StartTime.IsZero() {
		secs = time.Since(inv.StartTime).Seconds()
	}
	h.cfg.Metrics.Ended(o, secs)
	h.cfg.Metrics.InFlight.Dec()
	if inv.Event && o != invocation.OutcomeSuccess {
		h.cfg.Log.Warn("event invocation failed", "requestId", inv.ID, "outcome", string(o))
	}
	h.leave()
}

// leave ends an admitted invocation's hold on its slot; the last one out
// while draining lets the drain finish.
func (h *Handler) leave() {
	if h.inFlight.Add(-1) == 0 && h.draining.Load() {
		h.idleMu.Lock()
		if h.idle != nil {
			select {
			case <-h.idle:
			default:
				close(h.idle)
			}
		}
		h.idleMu.Unlock()
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep := r.URL.EscapedPath()
	name, ok := invokeapi.SplitPath(ep)
	stream := false
	if !ok {
		name, ok = invokeapi.SplitStreamPath(ep)
		stream = ok
	}
	if ok {
		if r.Method != http.MethodPost {
			h.reject(w, invokeapi.UnknownOperation(r.Method, r.URL.Path), "bad_request")
			return
		}
		if h.tokens != nil {
			if err := h.tokens.Verify(r.Header.Get(contract.HeaderInvokeToken)); err != nil {
				// Refused before the body is read or the name looked at:
				// who reaches the pod past the activator learns nothing.
				w.Header()[contract.HeaderNotRun] = notRunRefused
				w.Header()["Connection"] = closeConn
				h.reject(w, &invokeapi.Error{Status: http.StatusForbidden, Type: "AccessDeniedException", Message: err.Error()}, "refused")
				return
			}
		}
		h.invoke(w, r, name, stream)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.reject(w, invokeapi.UnknownOperation(r.Method, r.URL.Path), "")
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case h.draining.Load():
		writeText(w, http.StatusServiceUnavailable, "draining\n")
	case !h.cfg.Ready():
		writeText(w, http.StatusServiceUnavailable, "bootstrap not ready\n")
	default:
		writeText(w, http.StatusOK, "ok\n")
	}
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, s)
}

// reject answers with a Lambda service error, counted under reason.
func (h *Handler) reject(w http.ResponseWriter, e *invokeapi.Error, reason string) {
	if reason != "" {
		h.cfg.Metrics.Rejected.WithLabelValues(reason).Inc()
	}
	e.Write(w, invokeapi.NewRequestID())
}

// function checks that the FunctionName names this function, and returns
// the qualifier in effect ("" = none).
func (h *Handler) function(r *http.Request, escaped string) (string, *invokeapi.Error, string) {
	fn, err := invokeapi.ParseFunctionName(escaped, r.URL.Query())
	if err != nil {
		return "", err, "bad_request"
	}
	if fn.Name != h.cfg.FunctionName || (fn.Qualifier != "" && fn.Qualifier != invokeapi.LatestVersion && fn.Qualifier != h.cfg.Version) {
		return "", invokeapi.NotFound(fn.ARN(h.cfg.Region)), "not_found"
	}
	return fn.Qualifier, nil, ""
}

var (
	jsonCT           = []string{"application/json"}
	unhandled        = []string{"Unhandled"}
	zeroLength       = []string{"0"}
	notRun           = []string{contract.NotRunShuttingDown}
	notRunBusy       = []string{contract.NotRunBusy}
	notRunNotStarted = []string{contract.NotRunNotStarted}
	notRunRefused    = []string{contract.NotRunRefused}
	closeConn        = []string{"close"}
	retryOne         = []string{"1"}
)

// logTypeTail is the X-Amz-Log-Type asking for the log tail.
const logTypeTail = "Tail"

// invoke serves Invoke, and InvokeWithResponseStream when stream is set.
func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, escapedName string, stream bool) {
	qual, ierr, reason := h.function(r, escapedName)
	if ierr != nil {
		h.reject(w, ierr, reason)
		return
	}
	invType, ierr := invokeapi.ParseTypes(r.Header, stream)
	if ierr != nil {
		h.reject(w, ierr, "bad_request")
		return
	}
	clientContext, ierr := invokeapi.DecodeClientContext(r.Header.Get(invokeapi.HeaderClientContext))
	if ierr != nil {
		h.reject(w, ierr, "bad_request")
		return
	}

	// The payload: refused over the invocation type's limit before it
	// reaches the bootstrap.
	limit := invType.PayloadLimit()
	if r.ContentLength > int64(limit) {
		discard(r.Body)
		h.reject(w, invType.TooLarge(r.ContentLength), "too_large")
		return
	}
	if invType == invokeapi.DryRun {
		// Checked, not kept: a DryRun holds no buffer.
		if n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, int64(limit)+1)); n > int64(limit) {
			discard(r.Body)
			h.reject(w, invType.TooLarge(r.ContentLength), "too_large")
			return
		}
		w.Header()[invokeapi.HeaderRequestID] = []string{invokeapi.NewRequestID()}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h.draining.Load() {
		discard(r.Body)
		h.shuttingDown(w, "shutting_down")
		return
	}
	// Admission comes before the body is read, so that the payloads held at
	// once are bounded by the slots, not by how many callers post at once.
	if n := h.inFlight.Add(1); h.cfg.MaxInFlight > 0 && n > int64(h.cfg.MaxInFlight) {
		h.inFlight.Add(-1)
		discard(r.Body)
		w.Header()[contract.HeaderNotRun] = notRunBusy
		h.reject(w, invokeapi.TooManyRequests("every one of the pod's "+strconv.Itoa(h.cfg.MaxInFlight)+
			" concurrency slots is taken", time.Second), "busy")
		return
	}
	buf := invocation.GetBuffer()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyTimeout()))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, int64(limit)+1))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if n > int64(limit) || err != nil {
		h.leave()
		invocation.PutBuffer(buf)
		if n > int64(limit) {
			discard(r.Body)
			h.reject(w, invType.TooLarge(r.ContentLength), "too_large")
		} else {
			h.reject(w, invokeapi.InvalidContent("Could not read the request body: "+err.Error()), "bad_request")
		}
		return
	}
	// Unlike the activator, the sidecar takes a payload that is not JSON,
	// as AWS's emulator does: the activator's Raw event format hands it
	// HTTP bodies as they came.

	// The activator's request id, when it sends one: the id its caller got
	// (an Event's 202); else a new one.
	id := r.Header.Get(contract.HeaderRequestID)
	if id != "" && !invokeapi.ValidRequestID(id) {
		id = ""
	}
	inv := invocation.New(buf, id)
	inv.Event = invType == invokeapi.Event
	// Lambda ignores the log type of an Event.
	inv.LogTail = !inv.Event && r.Header.Get(invokeapi.HeaderLogType) == logTypeTail
	inv.ResponseStream = stream
	inv.ContentType = r.Header.Get("Content-Type")
	inv.ClientContext = clientContext
	if ci := r.Header.Get(invokeapi.HeaderCognitoIdentity); ci != "" && json.Valid([]byte(ci)) {
		inv.CognitoIdentity = ci
	}
	inv.TraceID = r.Header.Get(invokeapi.HeaderTraceID)
	if inv.TraceID == "" {
		inv.TraceID = invocation.NewTraceID(inv.Accepted)
	}
	inv.FunctionARN = h.arn
	if qual != "" {
		inv.FunctionARN = h.arn + ":" + qual
	}
	inv.OnEnd = h.ended

	h.cfg.Metrics.InFlight.Inc()
	if !h.queue.Offer(inv) {
		inv.OnEnd = nil
		h.leave()
		h.cfg.Metrics.InFlight.Dec()
		invocation.PutBuffer(buf)
		h.reject(w, invokeapi.TooManyRequests("the function's invocation queue is full ("+strconv.Itoa(h.queue.Cap())+" waiting).", time.Second), "queue_full")
		return
	}

	if inv.Event {
		hd := w.Header()
		hd[invokeapi.HeaderRequestID] = []string{inv.ID}
		hd["Content-Length"] = zeroLength
		w.WriteHeader(http.StatusAccepted)
		return
	}

	res := h.await(w, r, inv)
	switch {
	case res == nil:
	case stream:
		h.writeEventStream(w, inv, res)
	default:
		h.write(w, inv, res)
	}
}

// await waits for a synchronous invocation's result. When the caller sent
// HeaderStartWithin (the activator, with what is left of its activation
// timeout), the invocation is dropped and answered not-run if no bootstrap
// takes it within that time: the caller's wait and the pod then agree on
// whether it ran. nil: answered already, or the caller is gone.
func (h *Handler) await(w http.ResponseWriter, r *http.Request, inv *invocation.Invocation) *invocation.Result {
	var startBy <-chan time.Time
	if ms, err := strconv.ParseInt(r.Header.Get(contract.HeaderStartWithin), 10, 64); err == nil && ms >= 0 {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		startBy = t.C
	}
	for {
		select {
		case res := <-inv.Result():
			return res
		case <-startBy:
			startBy = nil
			if inv.Cancel() {
				w.Header()[contract.HeaderNotRun] = notRunNotStarted
				h.reject(w, invokeapi.ServiceException(http.StatusServiceUnavailable,
					"no bootstrap took the invocation within the caller's "+r.Header.Get(contract.HeaderStartWithin)+" ms; it did not run"), "not_started")
				return nil
			}
		case <-r.Context().Done():
			if inv.Cancel() {
				return nil
			}
			// Already running: the function runs to its end as on Lambda.
			return <-inv.Result()
		}
	}
}

func (h *Handler) write(w http.ResponseWriter, inv *invocation.Invocation, res *invocation.Result) {
	if res.Unavailable {
		h.shuttingDown(w, "")
		return
	}
	hd := w.Header()
	hd[invokeapi.HeaderExecutedVersion] = h.version
	hd[invokeapi.HeaderRequestID] = []string{inv.ID}
	if res.Stream != nil {
		h.writeStream(w, inv, res.Stream)
		return
	}
	if res.FunctionError {
		hd[invokeapi.HeaderFunctionError] = unhandled
	}
	if res.LogResult != "" {
		hd[invokeapi.HeaderLogResult] = []string{res.LogResult}
	}
	if res.ContentType == "application/json" {
		hd["Content-Type"] = jsonCT
	} else {
		hd["Content-Type"] = []string{res.ContentType}
	}
	hd["Content-Length"] = []string{strconv.Itoa(len(res.Body))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Body)
	res.Release()
}

// writeStream copies a streamed response to the caller chunk by chunk. A
// function error reported in the bootstrap's trailers, a timeout or a
// broken stream end it with the trailers Lambda uses on its streaming wire
// (Lambda-Runtime-Function-Error-Type / -Body).
func (h *Handler) writeStream(w http.ResponseWriter, inv *invocation.Invocation, st *invocation.Stream) {
	hd := w.Header()
	hd["Content-Type"] = []string{st.ContentType}
	hd["Trailer"] = []string{"Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	errType, errBody := h.pump(inv, st, func(p []byte) error {
		if _, err := w.Write(p); err != nil {
			return err
		}
		return rc.Flush()
	})
	if errType != "" {
		hd["Lambda-Runtime-Function-Error-Type"] = []string{errType}
		hd["Lambda-Runtime-Function-Error-Body"] = []string{errBody}
	}
}

// writeEventStream answers InvokeWithResponseStream: the response as
// PayloadChunk events, as the bootstrap sends it (a buffered one as one
// chunk), then InvokeComplete, with the error when the function failed,
// timed out or went past the streamed response limit.
func (h *Handler) writeEventStream(w http.ResponseWriter, inv *invocation.Invocation, res *invocation.Result) {
	if res.Unavailable {
		h.shuttingDown(w, "")
		return
	}
	sw := invokeapi.StartStream(w, inv.ID, h.cfg.Version)
	if res.Stream == nil {
		// A buffered result: /error, a timeout or a crash before any
		// response, an init error.
		// With Tail, the log tail in LogResult (a streamed answer has
		// none yet).
		if res.FunctionError {
			c := invokeapi.Failed("", res.Body)
			c.LogResult = res.LogResult
			_ = sw.Complete(c)
		} else if sw.Chunk(res.Body) == nil {
			_ = sw.Complete(invokeapi.StreamComplete{LogResult: res.LogResult})
		}
		res.Release()
		return
	}
	sent := 0
	errType, errBody := h.pump(inv, res.Stream, func(p []byte) error {
		if left := invokeapi.MaxStreamedResponse - sent; len(p) > left {
			// The caller gets the response up to the limit, then the error.
			_ = sw.Chunk(p[:left])
			sent = invokeapi.MaxStreamedResponse
			return invocation.ErrStreamTooLarge
		}
		sent += len(p)
		return sw.Chunk(p)
	})
	switch {
	case errors.Is(res.Stream.Err, invocation.ErrStreamTooLarge):
		_ = sw.Complete(invokeapi.TooLargeComplete(invokeapi.MaxStreamedResponse))
	case errType != "":
		doc, _ := base64.StdEncoding.DecodeString(errBody)
		_ = sw.Complete(invokeapi.Failed(errType, doc))
	default:
		_ = sw.Complete(invokeapi.StreamComplete{})
	}
}

// pump copies a streamed response to emit as it arrives, reading all of it
// even when emit fails (the caller went away: the function runs to its end
// as on Lambda), unless emit fails with invocation.ErrStreamTooLarge. It
// returns the function's error, if any, as the trailers carry it (a type
// and a base64 document): the bootstrap's own, a timeout, or a broken
// stream. It then hands the stream back to the Runtime API side.
func (h *Handler) pump(inv *invocation.Invocation, st *invocation.Stream, emit func([]byte) error) (errType, errBody string) {
	buf := make([]byte, 32<<10)
	var readErr error
	callerGone := false
	for {
		n, err := st.Body.Read(buf)
		if n > 0 && !callerGone {
			if eerr := emit(buf[:n]); errors.Is(eerr, invocation.ErrStreamTooLarge) {
				readErr = eerr
				break
			} else if eerr != nil {
				callerGone = true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	switch {
	case errors.Is(readErr, invocation.ErrStreamTooLarge):
		errType = invokeapi.ResponseTooLargeType
	case readErr == nil:
		errType, errBody = st.Trailer.Get("Lambda-Runtime-Function-Error-Type"), st.Trailer.Get("Lambda-Runtime-Function-Error-Body")
	case inv.State() == invocation.Done: // timed out
		errType = invokeapi.TimedOutType
		errBody = base64.StdEncoding.EncodeToString(invokeapi.TimeoutDocument(inv.ID, h.cfg.Timeout))
	default:
		errType = "Runtime.TruncatedResponse"
		errBody = base64.StdEncoding.EncodeToString(invokeapi.ErrorDocument(errType, "RequestId: "+inv.ID+" Error: "+readErr.Error()))
	}
	st.Err = readErr
	close(st.Done)
	return errType, errBody
}

// shuttingDown refuses an invocation that no bootstrap saw, marked so that
// the activator sends it to another pod.
func (h *Handler) shuttingDown(w http.ResponseWriter, reason string) {
	w.Header()[contract.HeaderNotRun] = notRun
	e := invokeapi.ServiceException(http.StatusServiceUnavailable, "The function instance is shutting down; retry.")
	e.RetryAfter = time.Second
	h.reject(w, e, reason)
}

func (h *Handler) bodyTimeout() time.Duration {
	if h.cfg.BodyTimeout > 0 {
		return h.cfg.BodyTimeout
	}
	return 30 * time.Second
}

func discard(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<20))
}

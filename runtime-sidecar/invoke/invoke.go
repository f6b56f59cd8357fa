// Package invoke serves the Lambda Invoke API
// (POST /2015-03-31/functions/{name}/invocations) and the sidecar's health
// and metrics endpoints.
package invoke

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/metrics"
)

// NotRunHeader marks a 503 for an invocation that no bootstrap ever saw:
// this instance is shutting down, and the caller (the activator) may send
// it to another pod. The activator's proxy.NotRunHeader names it too.
const NotRunHeader = "X-Lambdapod-Not-Run"

// AccountID is the account id in function ARNs.
const AccountID = "000000000000"

// Config configures the invoke side.
type Config struct {
	FunctionName string
	Version      string // X-Amz-Executed-Version; "$LATEST" by default
	Region       string
	Timeout      time.Duration
	Log          *slog.Logger
	Metrics      *metrics.Metrics
	// Ready reports whether every bootstrap has called /next.
	Ready func() bool
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
}

// New returns the invoke handler.
func New(cfg Config, queue *invocation.Queue) *Handler {
	if cfg.Version == "" {
		cfg.Version = "$LATEST"
	}
	h := &Handler{cfg: cfg, queue: queue, version: []string{cfg.Version}}
	h.arn = "arn:aws:lambda:" + cfg.Region + ":" + AccountID + ":function:" + cfg.FunctionName
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
	if !inv.Started.IsZero() {
		secs = time.Since(inv.Started).Seconds()
	}
	h.cfg.Metrics.Ended(o, secs)
	h.cfg.Metrics.InFlight.Dec()
	if inv.Event && o != invocation.OutcomeSuccess {
		h.cfg.Log.Warn("event invocation failed", "requestId", inv.ID, "outcome", string(o))
	}
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

const (
	invokePrefix = "/2015-03-31/functions/"
	invokeSuffix = "/invocations"
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if strings.HasPrefix(p, invokePrefix) && strings.HasSuffix(p, invokeSuffix) && len(p) > len(invokePrefix)+len(invokeSuffix) {
		if r.Method != http.MethodPost {
			h.reject(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", "Method "+r.Method+" is not allowed for the Invoke operation.", "bad_request")
			return
		}
		h.invoke(w, r, p[len(invokePrefix):len(p)-len(invokeSuffix)])
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.reject(w, http.StatusNotFound, "UnknownOperationException", "Unknown operation "+r.Method+" "+r.URL.Path, "")
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

// reject answers with a Lambda service error: header X-Amzn-ErrorType and
// body {"Type":"User","message":"..."} (lambda-api.md §4).
func (h *Handler) reject(w http.ResponseWriter, status int, errType, msg, reason string) {
	if reason != "" {
		h.cfg.Metrics.Rejected.WithLabelValues(reason).Inc()
	}
	kind := "User"
	if status >= 500 {
		kind = "Service"
	}
	body, _ := json.Marshal(struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}{kind, msg})
	hd := w.Header()
	hd["X-Amzn-ErrorType"] = []string{errType}
	hd["X-Amzn-RequestId"] = []string{invocation.NewRequestID()}
	hd["Content-Type"] = []string{"application/json"}
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// matchFunction checks the FunctionName path label (name, name:qualifier,
// partial or full ARN) and the Qualifier query parameter. It returns the
// qualifier in effect ("" = none) or an error answer.
func (h *Handler) matchFunction(w http.ResponseWriter, r *http.Request, escaped string) (string, bool) {
	raw, err := url.PathUnescape(escaped)
	if err != nil {
		h.reject(w, http.StatusBadRequest, "InvalidParameterValueException", "Invalid function name: "+escaped, "bad_request")
		return "", false
	}
	name, qual := raw, ""
	if strings.HasPrefix(raw, "arn:") {
		// arn:aws:lambda:region:account:function:name[:qualifier]
		parts := strings.Split(raw, ":")
		if len(parts) < 7 || parts[2] != "lambda" || parts[5] != "function" || len(parts) > 8 {
			h.notFoundFunction(w, raw)
			return "", false
		}
		name = parts[6]
		if len(parts) == 8 {
			qual = parts[7]
		}
	} else if parts := strings.Split(raw, ":"); len(parts) >= 3 && parts[1] == "function" {
		// account:function:name[:qualifier]
		if len(parts) > 4 {
			h.notFoundFunction(w, raw)
			return "", false
		}
		name = parts[2]
		if len(parts) == 4 {
			qual = parts[3]
		}
	} else if n, q, ok := strings.Cut(raw, ":"); ok {
		name, qual = n, q
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		if qual != "" && qual != q {
			h.reject(w, http.StatusBadRequest, "InvalidParameterValueException",
				"The derived qualifier from the function name does not match the specified qualifier.", "bad_request")
			return "", false
		}
		qual = q
	}
	if name != h.cfg.FunctionName || (qual != "" && qual != "$LATEST" && qual != h.cfg.Version) {
		h.notFoundFunction(w, raw)
		return "", false
	}
	return qual, true
}

func (h *Handler) notFoundFunction(w http.ResponseWriter, raw string) {
	arn := raw
	if !strings.HasPrefix(raw, "arn:") {
		if strings.Contains(raw, ":function:") {
			arn = "arn:aws:lambda:" + h.cfg.Region + ":" + raw
		} else {
			arn = "arn:aws:lambda:" + h.cfg.Region + ":" + AccountID + ":function:" + raw
		}
	}
	h.reject(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+arn, "not_found")
}

var (
	jsonCT        = []string{"application/json"}
	unhandled     = []string{"Unhandled"}
	zeroLength    = []string{"0"}
	payloadTooBig = "Request must be smaller than " + strconv.Itoa(invocation.MaxPayloadSize) + " bytes for the InvokeFunction operation"
)

func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, escapedName string) {
	qual, ok := h.matchFunction(w, r, escapedName)
	if !ok {
		return
	}
	invType := r.Header.Get("X-Amz-Invocation-Type")
	switch invType {
	case "", "RequestResponse", "Event", "DryRun":
	default:
		h.reject(w, http.StatusBadRequest, "InvalidParameterValueException",
			"1 validation error detected: Value '"+invType+"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", "bad_request")
		return
	}

	// Client context: base64 of a JSON object.
	clientContext := ""
	if cc := r.Header.Get("X-Amz-Client-Context"); cc != "" {
		b, err := base64.StdEncoding.DecodeString(cc)
		if err != nil {
			h.reject(w, http.StatusBadRequest, "InvalidRequestContentException",
				"Client context must be a valid Base64-encoded JSON object.", "bad_request")
			return
		}
		if json.Valid(b) {
			clientContext = string(b)
		}
	}

	// The payload: at most MaxPayloadSize bytes, refused before it reaches
	// the bootstrap.
	if r.ContentLength > invocation.MaxPayloadSize {
		discard(r.Body)
		h.reject(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", payloadTooBig, "too_large")
		return
	}
	buf := invocation.GetBuffer()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, invocation.MaxPayloadSize+1))
	if n > invocation.MaxPayloadSize {
		invocation.PutBuffer(buf)
		discard(r.Body)
		h.reject(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", payloadTooBig, "too_large")
		return
	}
	if err != nil {
		invocation.PutBuffer(buf)
		h.reject(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not read the request body: "+err.Error(), "bad_request")
		return
	}

	if invType == "DryRun" {
		invocation.PutBuffer(buf)
		hd := w.Header()
		hd["X-Amzn-RequestId"] = []string{invocation.NewRequestID()}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h.draining.Load() {
		invocation.PutBuffer(buf)
		w.Header()["Retry-After"] = []string{"1"}
		w.Header()[NotRunHeader] = []string{"shutting-down"}
		h.reject(w, http.StatusServiceUnavailable, "ServiceException", "The function instance is shutting down; retry.", "shutting_down")
		return
	}

	inv := invocation.New(buf)
	inv.Event = invType == "Event"
	inv.ContentType = r.Header.Get("Content-Type")
	inv.ClientContext = clientContext
	if ci := r.Header.Get("X-Amz-Cognito-Identity"); ci != "" && json.Valid([]byte(ci)) {
		inv.CognitoIdentity = ci
	}
	inv.TraceID = r.Header.Get("X-Amzn-Trace-Id")
	if inv.TraceID == "" {
		inv.TraceID = invocation.NewTraceID(inv.Accepted)
	}
	inv.FunctionARN = h.arn
	if qual != "" {
		inv.FunctionARN = h.arn + ":" + qual
	}
	inv.OnEnd = h.ended

	h.inFlight.Add(1)
	h.cfg.Metrics.InFlight.Inc()
	if !h.queue.Offer(inv) {
		inv.OnEnd = nil
		h.inFlight.Add(-1)
		h.cfg.Metrics.InFlight.Dec()
		invocation.PutBuffer(buf)
		w.Header()["Retry-After"] = []string{"1"}
		h.reject(w, http.StatusTooManyRequests, "TooManyRequestsException",
			"Rate Exceeded. The function's invocation queue is full ("+strconv.Itoa(h.queue.Cap())+" waiting).", "queue_full")
		return
	}

	if inv.Event {
		hd := w.Header()
		hd["X-Amzn-RequestId"] = []string{inv.ID}
		hd["Content-Length"] = zeroLength
		w.WriteHeader(http.StatusAccepted)
		return
	}

	var res *invocation.Result
	select {
	case res = <-inv.Result():
	case <-r.Context().Done():
		if inv.Cancel() {
			return
		}
		// Already running: the function runs to its end as on Lambda.
		res = <-inv.Result()
	}
	h.write(w, inv, res)
}

func (h *Handler) write(w http.ResponseWriter, inv *invocation.Invocation, res *invocation.Result) {
	if res.Unavailable {
		w.Header()["Retry-After"] = []string{"1"}
		w.Header()[NotRunHeader] = []string{"shutting-down"}
		h.reject(w, http.StatusServiceUnavailable, "ServiceException", "The function instance is shutting down; retry.", "")
		return
	}
	hd := w.Header()
	hd["X-Amz-Executed-Version"] = h.version
	hd["X-Amzn-RequestId"] = []string{inv.ID}
	if res.Stream != nil {
		h.writeStream(w, inv, res.Stream)
		return
	}
	if res.FunctionError {
		hd["X-Amz-Function-Error"] = unhandled
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
	buf := make([]byte, 32<<10)
	var readErr error
	callerGone := false
	for {
		n, err := st.Body.Read(buf)
		if n > 0 && !callerGone {
			if _, werr := w.Write(buf[:n]); werr != nil {
				callerGone = true
			} else if ferr := rc.Flush(); ferr != nil {
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
	errType, errBody := st.Trailer.Get("Lambda-Runtime-Function-Error-Type"), st.Trailer.Get("Lambda-Runtime-Function-Error-Body")
	if readErr != nil {
		if inv.State() == invocation.Done { // timed out
			errType = "Sandbox.Timedout"
			errBody = base64.StdEncoding.EncodeToString(invocation.TimeoutResult(inv.ID, h.cfg.Timeout).Body)
		} else {
			errType = "Runtime.TruncatedResponse"
			errBody = base64.StdEncoding.EncodeToString(invocation.ErrorDocument(errType, "RequestId: "+inv.ID+" Error: "+readErr.Error()))
		}
	}
	if errType != "" {
		hd["Lambda-Runtime-Function-Error-Type"] = []string{errType}
		hd["Lambda-Runtime-Function-Error-Body"] = []string{errBody}
	}
	st.Err = readErr
	close(st.Done)
}

func discard(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<20))
}

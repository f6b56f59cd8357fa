package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
)

// maxResult bounds a buffered result read from a sidecar (Lambda's
// response limit plus room for the JSON around an HTTP body).
const maxResult = invokeapi.MaxResponsePayload + 64*1024

// Proxy sends the invocation to a pod's sidecar, bounded by the function's
// timeout plus a grace, and answers the caller: on the Invoke API with the
// sidecar's answer as is (streamed), on HTTP routes with the HTTP response
// decoded from the function's result.
type Proxy struct {
	opts    Options
	invoker Invoker
	signer  *invoketoken.Signer
}

// SetSigner makes every invocation carry the activators' token for its
// function, which pods given the public key require (package invoketoken).
func (ch *Chain) SetSigner(s *invoketoken.Signer) { ch.wait.next.signer = s }

// invokeHeaders are the response headers of the Invoke API passed through.
var invokeHeaders = []string{
	"Content-Type", invokeapi.HeaderFunctionError, invokeapi.HeaderRequestID, invokeapi.HeaderExecutedVersion,
	invokeapi.HeaderLogResult, invokeapi.HeaderErrorType, "Retry-After", invokeapi.HeaderTraceID,
}

// errNotStarted: no bootstrap took the invocation before the activation
// timeout.
var errNotStarted = errors.New("no bootstrap took the invocation before the activation timeout")

// forward runs the call on the pod at addr, which must start it by startBy
// (the activation timeout). It returns *queue.NotRun when nothing ran there
// (the pod could not be reached, was busy, or said it is shutting down),
// for the pool to try another pod or wait; a *Failure when the invocation
// failed without an answer for the caller; nil once it answered.
//
// The pod is the one clock: it drops the invocation, answering not-run,
// if no bootstrap took it by startBy (a bootstrap may still be starting),
// and counts the function's timeout from /next. The activator's own limit,
// the start bound plus the timeout plus a grace, only backstops a pod that
// says nothing: it never cuts an invocation that waited in the pod short.
// (A sidecar's word when the invocation started would make that limit
// tighter, but costs an interim answer on every invocation: 45 µs of the
// activator's CPU per request in make bench-activator.)
func (h *Proxy) forward(w http.ResponseWriter, r *http.Request, c *call, addr string, startBy time.Time) error {
	startWithin := time.Until(startBy)
	if startWithin <= 0 {
		return &Failure{Kind: ActivationTimeout, Err: errNotStarted,
			Message: fmt.Sprintf("activation timed out: no pod of function %s had a free concurrency slot within %s", c.key, h.opts.ActivationTimeout)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), startWithin+c.fn.Timeout+h.opts.TimeoutGrace)
	defer cancel()
	// On HTTP routes the request's headers are in the event; none of them
	// may pose as the Invoke API's (a client context, a trace id).
	// On the Invoke API the function's request id is the one the caller
	// gets (an Event's 202 has it before the function runs); behind an
	// HTTP route it is the invocation's own, as behind API Gateway.
	var hdr http.Header
	var requestID string
	if c.invoke {
		hdr, requestID = r.Header, c.requestID
	}
	var token string
	if h.signer != nil {
		token = h.signer.Token(c.key.Namespace, c.key.Name)
	}
	resp, err := h.invoker.Invoke(ctx, addr, &proxy.Request{Function: c.key.Name, Payload: c.payload, Header: hdr,
		StartWithin: startWithin, Token: token, RequestID: requestID, Stream: c.target.Stream})
	if err != nil {
		if proxy.NotDelivered(err) && ctx.Err() == nil {
			return &queue.NotRun{Err: err, Unreachable: true}
		}
		return h.failed(r, ctx, c, addr, err)
	}
	defer resp.Body.Close()
	if why := resp.Header.Get(contract.HeaderNotRun); why != "" && ctx.Err() == nil {
		switch {
		case why == contract.NotRunBusy && resp.StatusCode == http.StatusTooManyRequests:
			// Another activator's requests hold every slot of the pod.
			return &queue.NotRun{Err: errors.New("every slot of the pod is taken"), Busy: true}
		case why == contract.NotRunShuttingDown && resp.StatusCode == http.StatusServiceUnavailable:
			// The pod began shutting down before its EndpointSlice said
			// so, and no bootstrap saw the payload: another pod takes it.
			return &queue.NotRun{Err: errors.New("the pod is shutting down"), Retire: true}
		case why == contract.NotRunNotStarted && resp.StatusCode == http.StatusServiceUnavailable:
			// No bootstrap took it in time; the wait bound is spent.
			return &queue.NotRun{Err: errNotStarted}
		case why == contract.NotRunRefused && resp.StatusCode == http.StatusForbidden:
			// The pod wants another key than this activator's: the key
			// Secret was replaced and one side did not restart. Nothing
			// ran; retrying cannot help.
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			slog.Error("a function pod refused this activator's invoke token; restart the manager and the activators after replacing the key Secret",
				"function", c.key.String(), "pod", addr, "answer", strings.TrimSpace(string(b)))
			return fail(Internal, "the function's pod refused the activator's invoke token (see the activator's log)")
		}
	}
	switch {
	case c.target.Stream && resp.StatusCode == http.StatusOK:
		h.passStream(w, r, ctx, c, addr, resp)
		return nil
	case c.invoke:
		passThrough(w, c, resp)
		return nil
	}
	return h.toHTTP(w, r, ctx, c, addr, resp)
}

// passStream passes the sidecar's event stream (InvokeWithResponseStream)
// on to the caller one whole event at a time, each flushed as it arrives.
// A stream cut before its InvokeComplete (the pod lost, or the activator's
// timeout) is ended with one carrying the error, as the sidecar ends a
// function's failure: whole events only, so the caller's SDK can always
// decode what it got.
func (h *Proxy) passStream(w http.ResponseWriter, r *http.Request, ctx context.Context, c *call, addr string, resp *http.Response) {
	id, version := resp.Header.Get(invokeapi.HeaderRequestID), resp.Header.Get(invokeapi.HeaderExecutedVersion)
	if id == "" {
		id = c.requestID
	}
	if version == "" {
		version = invokeapi.LatestVersion
	}
	sw := invokeapi.StartStream(w, id, version)
	sr := invokeapi.NewStreamReader(resp.Body)
	for !sw.Completed() {
		m, err := sr.Next()
		if err != nil {
			f := h.failed(r, ctx, c, addr, err)
			if f.Kind != CallerGone {
				_ = sw.Complete(invokeapi.Failed("", failureDocument(c, f)))
			}
			return
		}
		if sw.Forward(m) != nil {
			return // the caller went away
		}
	}
	// The end of the sidecar's body, so that its connection is kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
}

// failed is the failure of an invocation that got no answer.
func (h *Proxy) failed(r *http.Request, ctx context.Context, c *call, addr string, err error) *Failure {
	switch {
	case r.Context().Err() != nil:
		return &Failure{Kind: CallerGone, Err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fail(FunctionTimeout, "function %s timed out after %s", c.key, c.fn.Timeout)
	}
	slog.Warn("invocation failed", "function", c.key.String(), "pod", addr, "err", err)
	f := fail(ConnectionLost, "lost the connection to the function's pod during the invocation")
	if c.invoke {
		f.Message = "lost the connection to the function's pod " + addr + " during the invocation: " + err.Error()
	}
	f.Err = err
	return f
}

func passThrough(w http.ResponseWriter, c *call, resp *http.Response) {
	dst := w.Header()
	for _, k := range invokeHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			dst[k] = v
		}
	}
	if dst.Get(invokeapi.HeaderRequestID) == "" {
		dst.Set(invokeapi.HeaderRequestID, c.requestID)
	}
	if dst.Get(invokeapi.HeaderExecutedVersion) == "" && resp.StatusCode < 300 {
		dst.Set(invokeapi.HeaderExecutedVersion, invokeapi.LatestVersion)
	}
	if resp.ContentLength >= 0 {
		dst.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		w.WriteHeader(resp.StatusCode)
		bp := bufPool.Get().(*[]byte)
		_, _ = io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{resp.Body}, *bp)
		bufPool.Put(bp)
		return
	}
	// Unknown length: a streamed result; pass chunks on as they come.
	w.WriteHeader(resp.StatusCode)
	copyFlush(w, resp.Body)
}

// bufPool holds copy buffers, so that a response costs no large allocation.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func copyFlush(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// toHTTP turns the function's result into the caller's HTTP response.
func (h *Proxy) toHTTP(w http.ResponseWriter, r *http.Request, ctx context.Context, c *call, addr string, resp *http.Response) error {
	if resp.Header.Get(invokeapi.HeaderFunctionError) != "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResult))
		var doc struct {
			ErrorType string `json:"errorType"`
		}
		_ = json.Unmarshal(b, &doc)
		if doc.ErrorType == invokeapi.TimedOutType {
			return fail(FunctionTimeout, "function %s timed out after %s", c.key, c.fn.Timeout)
		}
		return &Failure{Kind: FunctionFailed}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusTooManyRequests:
		return &Failure{Kind: Throttled, Message: "function " + c.key.String() + " is at its concurrency limit", RetryAfter: h.opts.RetryAfter}
	case http.StatusRequestEntityTooLarge:
		return &Failure{Kind: TooLarge}
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		slog.Warn("sidecar refused an invocation", "function", c.key.String(), "status", resp.StatusCode, "body", strings.TrimSpace(string(b)))
		return &Failure{Kind: FunctionFailed}
	}
	ct := resp.Header.Get("Content-Type")
	if id := event.RequestIDHeader(c.fn.EventFormat); id != "" {
		w.Header().Set(id, c.requestID)
	}
	if c.fn.EventFormat != event.Raw && strings.HasPrefix(ct, event.StreamContentType) {
		if err := event.Stream(w, resp.Body); err != nil {
			if ctx.Err() != nil {
				return h.failed(r, ctx, c, addr, ctx.Err())
			}
			slog.Warn("bad response stream", "function", c.key.String(), "err", err)
			return &Failure{Kind: FunctionFailed, Err: err}
		}
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResult))
	if err != nil {
		return h.failed(r, ctx, c, addr, err)
	}
	out, err := event.Decode(c.fn.EventFormat, ct, b)
	if err != nil {
		slog.Info("malformed function response", "function", c.key.String(), "err", err)
		return &Failure{Kind: FunctionFailed, Err: err}
	}
	out.Write(w)
	return nil
}

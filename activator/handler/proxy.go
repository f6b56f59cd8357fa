package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/route"
)

// maxResult bounds a buffered result read from a sidecar (Lambda's 6 MB
// response limit plus room for the JSON around an HTTP body).
const maxResult = 6*1024*1024 + 100 + 64*1024

// Proxy sends the invocation to the pod of the request's lease, bounded by
// the function's timeout plus a grace, and answers the caller: on the
// Invoke API with the sidecar's answer as is (streamed), on HTTP routes
// with the HTTP response decoded from the function's result.
//
// Once the payload may have reached a bootstrap, the Invoke API never gets
// a 5xx from here (the SDKs retry 5xx and would run the function twice):
// a timeout or a lost pod becomes 200 with X-Amz-Function-Error: Unhandled.
type Proxy struct {
	Opts    Options
	Invoker Invoker
}

// invokeHeaders are the response headers of the Invoke API passed through.
var invokeHeaders = []string{
	"Content-Type", "X-Amz-Function-Error", "X-Amzn-Requestid", "X-Amz-Executed-Version",
	"X-Amz-Log-Result", "X-Amzn-Errortype", "Retry-After", "X-Amzn-Trace-Id",
}

func (h *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := from(r)
	timeout := st.fn.Timeout + h.Opts.TimeoutGrace
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, err := h.Invoker.Invoke(ctx, st.lease.Pod.Addr, &proxy.Request{
		Function: st.key.Name,
		Payload:  st.payload,
		Header:   r.Header,
	})
	if err != nil {
		if proxy.NotDelivered(err) && r.Context().Err() == nil && ctx.Err() == nil {
			st.redo = true
			return
		}
		h.failed(w, r, ctx, st, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(proxy.NotRunHeader) != "" &&
		r.Context().Err() == nil && ctx.Err() == nil {
		// The pod began shutting down before its EndpointSlice said so,
		// and no bootstrap saw the payload: another pod takes it.
		st.lease.Retire()
		st.redo = true
		return
	}
	if st.target.Kind == route.Invoke {
		h.passThrough(w, r, ctx, st, resp)
		return
	}
	h.toHTTP(w, r, ctx, st, resp)
}

// failed answers a request whose invocation failed without an answer.
func (h *Proxy) failed(w http.ResponseWriter, r *http.Request, ctx context.Context, st *state, err error) {
	if r.Context().Err() != nil {
		st.code = 499
		return
	}
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	if st.target.Kind == route.Invoke {
		if timedOut {
			functionError(w, st.requestID, "Sandbox.Timedout",
				fmt.Sprintf("RequestId: %s Error: Task timed out after %s seconds", st.requestID, seconds(st.fn.Timeout)))
			return
		}
		functionError(w, st.requestID, "Runtime.Unknown",
			fmt.Sprintf("RequestId: %s Error: lost the connection to the function's pod %s during the invocation: %v", st.requestID, st.lease.Pod.Addr, err))
		return
	}
	if timedOut {
		httpError(w, st.requestID, http.StatusGatewayTimeout, fmt.Sprintf("Gateway Timeout: function %s timed out after %s", st.key, st.fn.Timeout))
		return
	}
	slog.Warn("invocation failed", "function", st.key.String(), "pod", st.lease.Pod.Addr, "err", err)
	httpError(w, st.requestID, http.StatusBadGateway, "Bad Gateway: lost the connection to the function's pod during the invocation")
}

func (h *Proxy) passThrough(w http.ResponseWriter, r *http.Request, ctx context.Context, st *state, resp *http.Response) {
	dst := w.Header()
	for _, k := range invokeHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			dst[k] = v
		}
	}
	if dst.Get("X-Amzn-Requestid") == "" {
		dst.Set("X-Amzn-RequestId", st.requestID)
	}
	if dst.Get("X-Amz-Executed-Version") == "" && resp.StatusCode < 300 {
		dst.Set("X-Amz-Executed-Version", "$LATEST")
	}
	if resp.ContentLength >= 0 {
		dst.Set("Content-Length", fmt.Sprint(resp.ContentLength))
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

func (h *Proxy) toHTTP(w http.ResponseWriter, r *http.Request, ctx context.Context, st *state, resp *http.Response) {
	if fe := resp.Header.Get("X-Amz-Function-Error"); fe != "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResult))
		var doc struct {
			ErrorType string `json:"errorType"`
		}
		_ = json.Unmarshal(b, &doc)
		if doc.ErrorType == "Sandbox.Timedout" {
			httpError(w, st.requestID, http.StatusGatewayTimeout, fmt.Sprintf("Gateway Timeout: function %s timed out after %s", st.key, st.fn.Timeout))
			return
		}
		httpError(w, st.requestID, http.StatusBadGateway, "Internal Server Error")
		return
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfter(h.Opts.RetryAfter))
		httpError(w, st.requestID, http.StatusTooManyRequests, fmt.Sprintf("Too Many Requests: function %s is at its concurrency limit", st.key))
		return
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
		httpError(w, st.requestID, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	case resp.StatusCode != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		slog.Warn("sidecar refused an invocation", "function", st.key.String(), "status", resp.StatusCode, "body", strings.TrimSpace(string(b)))
		httpError(w, st.requestID, http.StatusBadGateway, "Internal Server Error")
		return
	}
	ct := resp.Header.Get("Content-Type")
	if st.fn.EventFormat != event.Raw && strings.HasPrefix(ct, event.StreamContentType) {
		if err := event.Stream(w, resp.Body); err != nil {
			if ctx.Err() != nil {
				h.failed(w, r, ctx, st, ctx.Err())
				return
			}
			slog.Warn("bad response stream", "function", st.key.String(), "err", err)
			httpError(w, st.requestID, http.StatusBadGateway, "Internal Server Error")
		}
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResult))
	if err != nil {
		h.failed(w, r, ctx, st, err)
		return
	}
	out, err := event.Decode(st.fn.EventFormat, ct, b)
	if err != nil {
		slog.Info("malformed function response", "function", st.key.String(), "err", err)
		httpError(w, st.requestID, http.StatusBadGateway, "Internal Server Error")
		return
	}
	out.Write(w)
}

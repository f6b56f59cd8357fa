package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
)

// Route finds the function a request is for and answers 404 for unknown
// ones: on the Invoke API as ResourceNotFoundException, on HTTP routes as
// a JSON message. Any Authorization header (SigV4 or other) is accepted.
type Route struct {
	Opts      Options
	Functions Functions
	Metrics   *metrics.Metrics
	Next      http.Handler
}

func (h *Route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &state{start: time.Now(), requestID: NewRequestID()}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		code := sw.code
		if st.code != 0 {
			code = st.code
		}
		if code == 0 {
			code = 499
		}
		h.Metrics.Observe(st.key.Namespace, st.key.Name, code, time.Since(st.start))
	}()
	t, err := route.Parse(r, h.Opts.Route)
	if err != nil {
		var bad *route.ErrBadFunctionName
		switch {
		case errors.As(err, &bad):
			lambdaError(sw, st.requestID, http.StatusBadRequest, "InvalidParameterValueException", "User", err.Error(), nil)
		case route.IsInvokePath(r.URL.EscapedPath()):
			lambdaError(sw, st.requestID, http.StatusNotFound, "UnknownOperationException", "User", "Unknown operation: lambdapod's activator serves only Invoke (POST /2015-03-31/functions/{FunctionName}/invocations)", nil)
		default:
			httpError(sw, st.requestID, http.StatusNotFound, err.Error())
		}
		return
	}
	st.target = t
	st.key = queue.Key{Namespace: t.Namespace, Name: t.Name}
	if t.Kind == route.Invoke {
		if r.Method != http.MethodPost {
			lambdaError(sw, st.requestID, http.StatusNotFound, "UnknownOperationException", "User", "Unknown operation: "+r.Method+" "+r.URL.Path, nil)
			return
		}
		fn, ok := h.Functions.Lookup(t.Namespace, t.Name)
		if !ok || (t.Qualifier != "" && t.Qualifier != "$LATEST") {
			lambdaError(sw, st.requestID, http.StatusNotFound, "ResourceNotFoundException", "User",
				"Function not found: "+h.arn(t), nil)
			return
		}
		st.fn = fn
	} else {
		fn, ok := h.Functions.Lookup(t.Namespace, t.Name)
		if !ok {
			httpError(sw, st.requestID, http.StatusNotFound, fmt.Sprintf("Not Found: no function %q in namespace %q", t.Name, t.Namespace))
			return
		}
		st.fn = fn
	}
	h.Next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
}

// arn is the function's ARN as the caller named it, for error messages.
func (h *Route) arn(t route.Target) string {
	if strings.HasPrefix(t.FunctionName, "arn:") {
		return t.FunctionName
	}
	name := t.FunctionName
	if i := strings.Index(name, ":function:"); i >= 0 {
		return "arn:aws:lambda:" + h.Opts.Region + ":" + name
	}
	return "arn:aws:lambda:" + h.Opts.Region + ":" + h.Opts.AccountID + ":function:" + name
}

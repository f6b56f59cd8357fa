package handler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Kind is why a request got no answer from its function.
type Kind int

const (
	// CallerGone: the caller went away; nothing is written (logged as 499).
	CallerGone Kind = iota
	// NoRoute: the request names no function.
	NoRoute
	// NotFound: no such Function (or no such version on the Invoke API).
	NotFound
	// Refused: the Invoke API refused the request as Lambda would (a bad
	// FunctionName, invocation type, client context or payload);
	// Failure.Lambda is the answer.
	Refused
	// TooLarge: the HTTP body is over the limit.
	TooLarge
	// Throttled: the function's queue (or its pod) is full; retry later.
	Throttled
	// Overloaded: the queue is full and the activator answers 503.
	Overloaded
	// ActivationTimeout: no slot on a ready pod within the activation
	// timeout; nothing ran.
	ActivationTimeout
	// Unreachable: every pod tried refused the request; nothing ran.
	Unreachable
	// FunctionTimeout: the invocation ran past the function's timeout.
	FunctionTimeout
	// ConnectionLost: the pod went away during the invocation.
	ConnectionLost
	// FunctionFailed: the function failed or answered something that is no
	// HTTP response (HTTP routes only; the Invoke API passes it through).
	FunctionFailed
	// Internal: the activator could not make the event.
	Internal
	// CannotRun: the function has no ready pod and its status says its
	// pods cannot run (PodsCannotRun); nothing ran.
	CannotRun
	// Unauthenticated: no credentials, or credentials no one issued;
	// Failure.Lambda is the Invoke API's answer.
	Unauthenticated
	// Forbidden: the caller may not invoke the function, or its signature
	// does not match; Failure.Lambda is the Invoke API's answer.
	Forbidden
	// SlowBody: the caller did not send the request body within the body
	// timeout; nothing ran, and the connection is closed.
	SlowBody
)

// Failure is what a stage returns instead of an answer. The chain renders
// it once, in the format its route chose (see render).
type Failure struct {
	Kind Kind
	// Message says why, to the caller.
	Message string
	// Lambda is the Invoke API's answer for Refused.
	Lambda *invokeapi.Error
	// RetryAfter, when set, is sent as Retry-After.
	RetryAfter time.Duration
	// Err is the cause, for the log.
	Err error
}

func (f *Failure) Error() string {
	if f.Err != nil {
		return f.Message + ": " + f.Err.Error()
	}
	return f.Message
}

func (f *Failure) Unwrap() error { return f.Err }

func fail(k Kind, format string, args ...any) *Failure {
	return &Failure{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// httpStatus is each kind's status on HTTP routes.
var httpStatus = map[Kind]int{
	CallerGone:        499,
	NoRoute:           http.StatusNotFound,
	NotFound:          http.StatusNotFound,
	Refused:           http.StatusBadRequest,
	TooLarge:          http.StatusRequestEntityTooLarge,
	Throttled:         http.StatusTooManyRequests,
	Overloaded:        http.StatusServiceUnavailable,
	ActivationTimeout: http.StatusGatewayTimeout,
	Unreachable:       http.StatusBadGateway,
	FunctionTimeout:   http.StatusGatewayTimeout,
	ConnectionLost:    http.StatusBadGateway,
	FunctionFailed:    http.StatusBadGateway,
	Internal:          http.StatusInternalServerError,
	CannotRun:         http.StatusServiceUnavailable,
	Unauthenticated:   http.StatusUnauthorized,
	Forbidden:         http.StatusForbidden,
	SlowBody:          http.StatusRequestTimeout,
}

// render writes f as the call's format wants it and returns the status.
//
// On the Invoke API a request that never reached a bootstrap gets a
// service error (X-Amzn-ErrorType, {"Type","message"}); once the payload
// may have reached one, never a 5xx (the SDKs retry 5xx and would run the
// function twice): a timeout or a lost pod is 200 with
// X-Amz-Function-Error: Unhandled. On HTTP routes every failure is a JSON
// {"message"} with the status API Gateway would give.
func render(w http.ResponseWriter, c *call, f *Failure) int {
	if f.Kind == CallerGone {
		return 499
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", invokeapi.RetryAfter(f.RetryAfter))
	}
	if c.invoke {
		return renderInvoke(w, c, f)
	}
	status := httpStatus[f.Kind]
	if f.Kind == Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lambdapod"`)
	}
	msg := http.StatusText(status)
	switch {
	case f.Kind == FunctionFailed:
		msg = "Internal Server Error" // as API Gateway says it, without details
	case f.Message != "":
		msg += ": " + f.Message
	}
	b, _ := json.Marshal(map[string]string{"message": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// The {"message"} answers are API Gateway's, and so is the header.
	id := event.RequestIDHeader(c.fn.EventFormat)
	if id == "" {
		id = "Apigw-Requestid"
	}
	h.Set(id, c.requestID)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

func renderInvoke(w http.ResponseWriter, c *call, f *Failure) int {
	var e *invokeapi.Error
	switch f.Kind {
	case FunctionTimeout, ConnectionLost:
		// The payload may have reached a bootstrap: a function error, 200.
		if c.target.Stream {
			sw := invokeapi.StartStream(w, c.requestID, invokeapi.LatestVersion)
			_ = sw.Complete(invokeapi.Failed("", failureDocument(c, f)))
		} else {
			invokeapi.WriteFunctionError(w, c.requestID, failureDocument(c, f))
		}
		return http.StatusOK
	case Refused, Unauthenticated, Forbidden:
		e = f.Lambda
	case SlowBody:
		// As the sidecar answers a body it could not read.
		e = invokeapi.InvalidContent("Could not read the request body: " + f.Message)
	case NotFound, NoRoute:
		e = invokeapi.NotFound(c.target.Function.ARN(c.region))
	case Throttled:
		e = invokeapi.TooManyRequests(f.Message, f.RetryAfter)
	case Unreachable:
		e = invokeapi.NotReady(f.Message)
	case CannotRun:
		// As Lambda answers for a function in the Failed state, with the
		// cause.
		e = &invokeapi.Error{Status: http.StatusConflict, Type: "ResourceConflictException",
			Message: "The operation cannot be performed at this time. The function is currently in the following state: Failed. " + f.Message}
	default:
		status := httpStatus[f.Kind]
		e = invokeapi.ServiceException(status, http.StatusText(status)+": "+f.Message)
	}
	e.Write(w, c.requestID)
	return e.Status
}

// failureDocument is the error document of an invocation that got no
// answer once it may have run: a timeout (Sandbox.Timedout) or a lost pod
// (Runtime.Unknown).
func failureDocument(c *call, f *Failure) []byte {
	if f.Kind == FunctionTimeout {
		return invokeapi.TimeoutDocument(c.requestID, c.fn.Timeout)
	}
	return invokeapi.ErrorDocument("Runtime.Unknown", "RequestId: "+c.requestID+" Error: "+f.Message)
}

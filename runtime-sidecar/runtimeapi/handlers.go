package runtimeapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/telemetry"
)

const (
	pathPrefix     = "/2018-06-01/runtime/"
	pathNext       = "/2018-06-01/runtime/invocation/next"
	pathInvocation = "/2018-06-01/runtime/invocation/"
	pathInitError  = "/2018-06-01/runtime/init/error"

	headerResponseMode   = "Lambda-Runtime-Function-Response-Mode"
	headerErrorType      = "Lambda-Runtime-Function-Error-Type"
	trailerErrorType     = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody     = "Lambda-Runtime-Function-Error-Body"
	contentTypeJSON      = "application/json"
	responseModeStreamed = "streaming"
)

// Runtime API response bodies, as the RIE renders them
// (in its rapi/model and rendering packages).
var (
	bodyAccepted            = []byte(`{"status":"OK"}`)
	bodyInvalidRequestID    = []byte(`{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)
	bodyTooLarge            = []byte(`{"errorMessage":"Exceeded maximum allowed payload size (` + strconv.Itoa(invokeapi.MaxResponsePayload) + ` bytes).","errorType":"RequestEntityTooLarge"}`)
	bodyStreamTooLarge      = []byte(`{"errorMessage":"Exceeded maximum allowed payload size (` + strconv.Itoa(invokeapi.MaxStreamedResponse) + ` bytes).","errorType":"RequestEntityTooLarge"}`)
	bodyTruncated           = []byte(`{"errorMessage":"HTTP request detected as truncated","errorType":"TruncatedHTTPRequest"}`)
	bodyInvalidResponseMode = []byte(`{"errorMessage":"Invalid function response mode","errorType":"InvalidFunctionResponseMode"}`)
	bodyNotFound            = []byte(`{"errorMessage":"Not Found","errorType":"NotFound"}`)
	bodyMethodNotAllowed    = []byte(`{"errorMessage":"Method Not Allowed","errorType":"MethodNotAllowed"}`)

	jsonCT = []string{contentTypeJSON}
)

// writeRefused answers a request whose event the slot's state machine
// refused (err from Slot.transition).
func writeRefused(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusForbidden, []byte(`{"errorMessage":"`+err.Error()+`","errorType":"InvalidStateTransition"}`))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ServeHTTP routes the Runtime API of one slot.
func (s *Slot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == pathNext:
		if r.Method != http.MethodGet {
			writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
			return
		}
		s.next(w, r)
	case p == pathInitError:
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
			return
		}
		s.initError(w, r)
	case strings.HasPrefix(p, pathInvocation):
		rest := p[len(pathInvocation):]
		id, action, ok := strings.Cut(rest, "/")
		if !ok || (action != "response" && action != "error") {
			writeJSON(w, http.StatusNotFound, bodyNotFound)
			return
		}
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
			return
		}
		s.respond(w, r, id, action == "error")
	case strings.HasPrefix(p, extensions.PathPrefix):
		s.pool.ext.ServeHTTP(w, r, extensions.Caller{Slot: s.idx, RegistrationOpen: s.registrationOpen})
	case p == pathTelemetry || p == pathTelemetry+"/":
		s.subscribe(w, r, telemetry.TelemetryAPI)
	case p == pathLogs || p == pathLogs+"/":
		s.subscribe(w, r, telemetry.LogsAPI)
	default:
		writeJSON(w, http.StatusNotFound, bodyNotFound)
	}
}

// next is GET /runtime/invocation/next: it ends the Init phase (first call)
// or the previous invocation, then blocks until an invocation is queued.
func (s *Slot) next(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	from := s.state
	if err := s.transition(evNext); err != nil {
		s.mu.Unlock()
		if from == stDown {
			// The bootstrap is being stopped (reset); it gets nothing more.
			<-r.Context().Done()
			return
		}
		writeRefused(w, err)
		return
	}
	first := from == stStarted
	gen := s.gen
	procSet := s.procSet
	readyCh := s.readyCh
	initPassed := s.initPassed
	s.mu.Unlock()
	if first {
		// The init, for the REPORT of its first invocation. In pod mode
		// the bootstrap may call before the supervisor's answer to its
		// start has reached the sidecar.
		arrived := time.Now()
		select {
		case <-procSet:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		var initDur time.Duration
		if s.gen == gen {
			s.initDur = max(arrived.Sub(s.spawned), time.Microsecond)
			initDur = s.initDur
		}
		s.mu.Unlock()
		if initDur > 0 {
			s.telInitDone(initDur, "")
		}
	}

	if !initPassed {
		// Init ends when the runtime and every extension registered have
		// called /next: no invocation before, and not ready.
		if !s.waitInit(r) {
			return
		}
		s.mu.Lock()
		passed := false
		if s.gen == gen && !s.initPassed {
			s.initPassed = true
			passed = true
			close(readyCh)
		}
		s.mu.Unlock()
		if passed {
			s.pool.telInitPassed()
		}
	}
	if !s.waitAcks(r) {
		return
	}

	var inv *invocation.Invocation
	for {
		inv = s.pool.queue.Take(r.Context().Done(), nil)
		if inv == nil {
			return // the bootstrap went away
		}
		if inv.Dispatch() {
			break
		}
		// Canceled by its caller while queued: skip it.
	}

	timeout := s.pool.cfg.Timeout
	s.mu.Lock()
	var err error
	if s.gen != gen {
		// The bootstrap this /next came from was replaced meanwhile: the
		// state belongs to its successor, so the table cannot tell.
		err = &transitionError{from: s.state, ev: evDispatch}
	} else {
		err = s.transition(evDispatch)
	}
	if err != nil {
		s.mu.Unlock()
		// Another /next got here first, or the bootstrap is being reset:
		// someone else runs it.
		inv.Undispatch()
		s.pool.queue.Requeue(inv)
		writeRefused(w, err)
		return
	}
	now := time.Now()
	deadline := now.Add(timeout)
	inv.StartTime = now
	inv.OnFinish = s.finishFn
	inv.SetTimer(timeout, func() { s.onTimeout(inv) })
	s.current = inv
	proc := s.proc
	s.curProc, s.curInit = proc, s.initDur
	s.initDur = 0
	// The extensions get the invocation as the runtime does; its Invoke
	// phase lasts until they have all called /next again.
	acks := s.pool.ext.Invoke(s.idx, inv.ID, inv.FunctionARN, inv.TraceID, deadline)
	s.acks, s.acksDeadline = acks, deadline
	s.mu.Unlock()
	if n := len(acks); n > 0 {
		s.pool.cfg.Metrics.ExtensionEvents.WithLabelValues("INVOKE").Add(float64(n))
	}
	s.telStart(inv)
	if proc != nil {
		// START before the bootstrap can print anything of the invocation.
		proc.InvokeStart(inv.ID, s.pool.cfg.Version)
	}

	h := w.Header()
	h["Lambda-Runtime-Aws-Request-Id"] = []string{inv.ID}
	h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(deadline.UnixMilli(), 10)}
	h["Lambda-Runtime-Invoked-Function-Arn"] = []string{inv.FunctionARN}
	if inv.TraceID != "" {
		h["Lambda-Runtime-Trace-Id"] = []string{inv.TraceID}
	}
	if inv.ClientContext != "" {
		h["Lambda-Runtime-Client-Context"] = []string{inv.ClientContext}
	}
	if inv.CognitoIdentity != "" {
		h["Lambda-Runtime-Cognito-Identity"] = []string{inv.CognitoIdentity}
	}
	ct := inv.ContentType
	if ct == "" {
		ct = contentTypeJSON
	}
	h["Content-Type"] = []string{ct}
	h["Content-Length"] = []string{strconv.Itoa(len(inv.Payload))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Payload)
}

// registrationOpen reports whether the slot's runtime is in its Init:
// internal extensions register only then (Lambda closes the registration
// at the runtime's first /next).
func (s *Slot) registrationOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stStarted
}

// waitInit holds the runtime's /next until the extensions have called
// /next too, for at most Lambda's Init time: one that does not by then
// fails the Init. It returns false if the runtime went away meanwhile.
func (s *Slot) waitInit(r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), extensionInitTimeout)
	defer cancel()
	late := s.pool.ext.WaitInit(ctx, s.idx)
	if len(late) == 0 {
		return true
	}
	if r.Context().Err() == nil {
		s.pool.extensionFailed(extensions.Failure{Extension: late[0], Type: extensions.ErrorInit,
			Message: "extension " + late[0] + " did not call next within " + extensionInitTimeout.String()})
		// The bootstrap is being stopped: it gets nothing more.
		<-r.Context().Done()
	}
	return false
}

// waitAcks holds a /next until the extensions have called /next after the
// INVOKE of the slot's last invocation, at most until its deadline. It
// returns false if the runtime went away meanwhile.
func (s *Slot) waitAcks(r *http.Request) bool {
	s.mu.Lock()
	acks, deadline := s.acks, s.acksDeadline
	s.mu.Unlock()
	if len(acks) == 0 {
		return true
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for _, a := range acks {
		select {
		case <-a:
		case <-t.C:
			s.log.Warn("extensions did not finish the invocation by its deadline; going on")
			s.clearAcks(acks)
			return true
		case <-r.Context().Done():
			return false
		}
	}
	s.clearAcks(acks)
	return true
}

func (s *Slot) clearAcks(acks []<-chan struct{}) {
	s.mu.Lock()
	if len(s.acks) > 0 && len(acks) > 0 && s.acks[0] == acks[0] {
		s.acks = nil
	}
	s.mu.Unlock()
}

// respond is POST /runtime/invocation/{id}/response and /error.
func (s *Slot) respond(w http.ResponseWriter, r *http.Request, id string, isError bool) {
	ev := evResponse
	if isError {
		ev = evError
	}
	s.mu.Lock()
	inv := s.current
	if inv == nil || inv.ID != id {
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, bodyInvalidRequestID)
		return
	}
	err := s.transition(ev)
	s.mu.Unlock()
	if err != nil {
		writeRefused(w, err)
		return
	}

	if !isError {
		mode := r.Header.Get(headerResponseMode)
		if mode != "" && mode != responseModeStreamed {
			inv.Complete(invocation.FunctionErrorResult(invokeapi.ErrorDocument("Runtime.InvalidResponseModeHeader",
				"RequestId: "+inv.ID+" Error: invalid response mode header value: "+mode), invocation.OutcomeInvalidResponse))
			writeJSON(w, http.StatusBadRequest, bodyInvalidResponseMode)
			return
		}
		if mode == responseModeStreamed || inv.ResponseStream {
			s.stream(w, r, inv)
			return
		}
	}

	if r.ContentLength > invokeapi.MaxResponsePayload {
		s.tooLarge(w, r, inv)
		return
	}
	buf := invocation.GetBuffer()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, invokeapi.MaxResponsePayload+1))
	if n > invokeapi.MaxResponsePayload {
		invocation.PutBuffer(buf)
		s.tooLarge(w, r, inv)
		return
	}
	if err != nil {
		invocation.PutBuffer(buf)
		inv.Complete(invocation.FunctionErrorResult(invokeapi.ErrorDocument("Runtime.TruncatedResponse",
			"RequestId: "+inv.ID+" Error: runtime response was truncated"), invocation.OutcomeInvalidResponse))
		writeJSON(w, http.StatusBadRequest, bodyTruncated)
		return
	}

	var res *invocation.Result
	if errType := r.Trailer.Get(trailerErrorType); errType != "" {
		// The function failed mid-response (aws-lambda-go: its io.Reader
		// returned an error): the trailer carries the error document.
		invocation.PutBuffer(buf)
		res = invocation.FunctionErrorResult(trailerError(errType, r.Trailer.Get(trailerErrorBody)), invocation.OutcomeFunctionError)
	} else if isError {
		if buf.Len() == 0 {
			t := r.Header.Get(headerErrorType)
			if t == "" {
				t = "Runtime.Unknown"
			}
			invocation.PutBuffer(buf)
			res = invocation.FunctionErrorResult(invokeapi.ErrorDocument(t, ""), invocation.OutcomeFunctionError)
		} else {
			res = invocation.NewBufferedResult(buf, contentTypeJSON, true, invocation.OutcomeFunctionError)
		}
	} else {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = contentTypeJSON
		}
		res = invocation.NewBufferedResult(buf, ct, false, invocation.OutcomeSuccess)
	}
	if !inv.Complete(res) {
		// Timed out meanwhile: the request id is no longer current.
		writeJSON(w, http.StatusBadRequest, bodyInvalidRequestID)
		return
	}
	writeJSON(w, http.StatusAccepted, bodyAccepted)
}

// drainLimit bounds how much of an oversized body is read and dropped
// before the 413, and drainTime how long that may take.
const (
	drainLimit = 256 << 20
	drainTime  = 5 * time.Second
)

func (s *Slot) tooLarge(w http.ResponseWriter, r *http.Request, inv *invocation.Invocation) {
	inv.Complete(invocation.ResponseTooLargeResult())
	drain(w, r)
	writeJSON(w, http.StatusRequestEntityTooLarge, bodyTooLarge)
}

// drain reads the rest of a body refused for its size before the answer,
// which closes the connection: a runtime still writing it (aws-lambda-go
// sends its whole response before it reads ours) must not be left blocked
// on a connection that answered and closed, which under load can wedge it
// for good. Bounded in size and time.
func drain(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
	w.Header()["Connection"] = []string{"close"}
}

// stream passes a streamed response through to the caller as it arrives.
func (s *Slot) stream(w http.ResponseWriter, r *http.Request, inv *invocation.Invocation) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	st := &invocation.Stream{ContentType: ct, Body: r.Body, Trailer: r.Trailer, Done: make(chan struct{})}
	if !inv.StartStream(st) {
		writeJSON(w, http.StatusBadRequest, bodyInvalidRequestID)
		return
	}
	<-st.Done
	tooLarge := errors.Is(st.Err, invocation.ErrStreamTooLarge)
	outcome := invocation.OutcomeSuccess
	switch {
	case tooLarge:
		outcome = invocation.OutcomeResponseTooLarge
	case st.Err != nil:
		outcome = invocation.OutcomeInvalidResponse
	case r.Trailer.Get(trailerErrorType) != "":
		outcome = invocation.OutcomeFunctionError
	}
	if !inv.EndStream(outcome) {
		writeJSON(w, http.StatusBadRequest, bodyInvalidRequestID)
		return
	}
	if tooLarge {
		// The caller has had its InvokeComplete; the bootstrap is told as
		// a buffered response over its limit is (drained, then closed).
		drain(w, r)
		writeJSON(w, http.StatusRequestEntityTooLarge, bodyStreamTooLarge)
		return
	}
	if st.Err != nil {
		writeJSON(w, http.StatusBadRequest, bodyTruncated)
		return
	}
	writeJSON(w, http.StatusAccepted, bodyAccepted)
}

// trailerError decodes Lambda-Runtime-Function-Error-Body (base64 JSON).
func trailerError(errType, b64 string) []byte {
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil && len(b) > 0 {
			return b
		}
	}
	return invokeapi.ErrorDocument(errType, "")
}

// initError is POST /runtime/init/error: only valid during Init. The error
// is served to the first invocation; the bootstrap is restarted.
func (s *Slot) initError(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	err := s.transition(evInitError)
	s.mu.Unlock()
	if err != nil {
		writeRefused(w, err)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, invokeapi.MaxResponsePayload))
	if len(body) == 0 {
		t := r.Header.Get(headerErrorType)
		if t == "" {
			t = "Runtime.Unknown"
		}
		body = invokeapi.ErrorDocument(t, "")
	}
	s.mu.Lock()
	s.initErrBody = body
	s.mu.Unlock()
	select {
	case s.initErrCh <- struct{}{}:
	default:
	}
	writeJSON(w, http.StatusAccepted, bodyAccepted)
}

package extensions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Paths of the Extensions API.
const (
	PathPrefix    = "/2020-01-01/extension/"
	pathRegister  = PathPrefix + "register"
	pathNext      = PathPrefix + "event/next"
	pathInitError = PathPrefix + "init/error"
	pathExitError = PathPrefix + "exit/error"

	headerName       = "Lambda-Extension-Name"
	headerID         = "Lambda-Extension-Identifier"
	headerEventID    = "Lambda-Extension-Event-Identifier"
	headerFeature    = "Lambda-Extension-Accept-Feature"
	headerErrorType  = "Lambda-Extension-Function-Error-Type"
	maxErrorBodySize = 1 << 20

	// MaxExtensions is Lambda's limit of extensions per function.
	MaxExtensions = 10
)

// Error types of the emulator's extension handlers.
const (
	errMissingID     = "Extension.MissingExtensionIdentifier"
	errInvalidID     = "Extension.InvalidExtensionIdentifier"
	errInvalidName   = "Extension.InvalidExtensionName"
	errClosed        = "Extension.RegistrationClosed"
	errUnknownID     = "Extension.UnknownExtensionIdentifier"
	errInvalidState  = "Extension.InvalidExtensionState"
	errMissingHeader = "Extension.MissingHeader"
	errTooMany       = "Extension.TooManyExtensions"
	errInvalidEvent  = "Extension.InvalidEventType"
	errRequestFormat = "InvalidRequestFormat"

	notAllowed = "State transition is not allowed"
)

// Caller is the slot whose Runtime API address a request came to.
type Caller struct {
	Slot int
	// RegistrationOpen reports whether the slot's runtime is still in its
	// Init (has not called /next): internal extensions register only then.
	RegistrationOpen func() bool
}

// ServeHTTP serves one Extensions API request (a path under PathPrefix).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request, c Caller) {
	var method string
	var h func(http.ResponseWriter, *http.Request, Caller)
	switch req.URL.Path {
	case pathRegister:
		method, h = http.MethodPost, r.register
	case pathNext:
		method, h = http.MethodGet, r.next
	case pathInitError:
		method, h = http.MethodPost, r.initError
	case pathExitError:
		method, h = http.MethodPost, r.exitError
	default:
		writeJSON(w, http.StatusNotFound, []byte(`{"errorMessage":"Not Found","errorType":"NotFound"}`))
		return
	}
	if req.Method != method {
		writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"errorMessage":"Method Not Allowed","errorType":"MethodNotAllowed"}`))
		return
	}
	h(w, req, c)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError answers {"errorMessage","errorType"}, as the emulator
// renders the errors of the Extensions, Telemetry and Logs APIs.
func WriteError(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{msg, errType})
	writeJSON(w, status, b)
}

func forbidden(w http.ResponseWriter, errType, format string, args ...any) {
	WriteError(w, http.StatusForbidden, errType, fmt.Sprintf(format, args...))
}

func refused(w http.ResponseWriter, from state, to, who string) {
	forbidden(w, errInvalidState, "State transition from %s to %s failed for extension %s. Error: %s", stateNames[from], to, who, notAllowed)
}

type registerRequest struct {
	Events            []string `json:"events"`
	ConfigurationKeys []string `json:"configurationKeys"`
}

type registerResponse struct {
	AccountID       string `json:"accountId,omitempty"`
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
}

// register is POST /extension/register.
func (r *Registry) register(w http.ResponseWriter, req *http.Request, c Caller) {
	name := req.Header.Get(headerName)
	if name == "" {
		forbidden(w, errInvalidName, "Empty extension name")
		return
	}
	var body registerRequest
	b, err := io.ReadAll(io.LimitReader(req.Body, maxErrorBodySize))
	if err == nil {
		err = json.Unmarshal(b, &body)
	}
	if err == nil && len(body.ConfigurationKeys) != 0 {
		err = errors.New("configurationKeys are deprecated; use environment variables instead")
	}
	if err != nil {
		forbidden(w, errRequestFormat, "%s", err.Error())
		return
	}
	account := false
	for _, f := range strings.Split(req.Header.Get(headerFeature), ",") {
		if strings.TrimSpace(f) == "accountId" {
			account = true
		}
	}

	// Asked before r.mu is taken: slots call the registry with their lock
	// held.
	open := c.RegistrationOpen != nil && c.RegistrationOpen()
	r.mu.Lock()
	e := r.external[name]
	external := e != nil
	for _, ev := range body.Events {
		switch {
		case ev == Invoke:
		case ev == Shutdown && external:
		case ev == Shutdown:
			r.mu.Unlock()
			r.cfg.Log.Warn("extension registration refused", "extension", name, "event", ev)
			forbidden(w, errInvalidEvent, "%s: %s", ev, "ShutdownEventNotSupportedForInternalExtension")
			return
		default:
			r.mu.Unlock()
			r.cfg.Log.Warn("extension registration refused", "extension", name, "event", ev)
			forbidden(w, errInvalidEvent, "%s: %s", ev, "ErrorInvalidEventType")
			return
		}
	}
	if external {
		if e.state != stStarted {
			from := e.state
			r.mu.Unlock()
			refused(w, from, "Registered", name)
			return
		}
	} else {
		switch {
		case !open:
			r.mu.Unlock()
			forbidden(w, errClosed, "Extension registration closed already")
			return
		case len(r.byID) >= MaxExtensions:
			r.mu.Unlock()
			forbidden(w, errTooMany, "Extension limit (%d) reached", MaxExtensions)
			return
		case r.internal[c.Slot][name] != nil:
			r.mu.Unlock()
			forbidden(w, errInvalidState, "Extension with this name already registered")
			return
		}
		e = &ext{Info: Info{ID: uuid.NewString(), Name: name, Slot: c.Slot}, wake: make(chan struct{}, 1)}
		if r.internal[c.Slot] == nil {
			r.internal[c.Slot] = map[string]*ext{}
		}
		r.internal[c.Slot][name] = e
		r.byID[e.ID] = e
	}
	e.state = stRegistered
	e.Events = nil
	for _, ev := range body.Events {
		switch ev {
		case Invoke:
			e.invoke = true
		case Shutdown:
			e.shutdown = true
		}
		e.Events = append(e.Events, ev)
	}
	id := e.ID
	r.broadcast()
	r.mu.Unlock()

	kind := "internal"
	if external {
		kind = "external"
	}
	r.cfg.Log.Info("extension registered", "extension", name, "kind", kind, "events", body.Events, "slot", c.Slot)
	resp := registerResponse{FunctionName: r.cfg.Function.Name, FunctionVersion: r.cfg.Function.Version, Handler: r.cfg.Function.Handler}
	if account {
		resp.AccountID = r.cfg.Function.AccountID
	}
	out, _ := json.Marshal(resp)
	w.Header()[headerID] = []string{id}
	writeJSON(w, http.StatusOK, out)
}

// identify checks Lambda-Extension-Identifier as the emulator's middleware
// does.
func identify(w http.ResponseWriter, req *http.Request) (string, bool) {
	id := req.Header.Get(headerID)
	if id == "" {
		forbidden(w, errMissingID, "Missing Lambda-Extension-Identifier header")
		return "", false
	}
	if _, err := uuid.Parse(id); err != nil {
		forbidden(w, errInvalidID, "Invalid Lambda-Extension-Identifier")
		return "", false
	}
	return id, true
}

// Identify is the registered extension that Lambda-Extension-Identifier
// names, for the Telemetry and Logs APIs; without one it has answered
// the 403 the emulator gives.
func (r *Registry) Identify(w http.ResponseWriter, req *http.Request) (Info, bool) {
	id, ok := identify(w, req)
	if !ok {
		return Info{}, false
	}
	info, ok := r.Lookup(id)
	if !ok {
		forbidden(w, errUnknownID, "Unknown extension %s", id)
	}
	return info, ok
}

// next is GET /extension/event/next: it ends the extension's Init or its
// part of the last event, then holds until the next event.
func (r *Registry) next(w http.ResponseWriter, req *http.Request, _ Caller) {
	id, ok := identify(w, req)
	if !ok {
		return
	}
	r.mu.Lock()
	e := r.byID[id]
	if e == nil || e.state == stStarted {
		r.mu.Unlock()
		r.cfg.Log.Warn("unknown extension called /next", "id", id)
		forbidden(w, errUnknownID, "Unknown extension %s", id)
		return
	}
	if e.state != stRegistered && e.state != stRunning {
		from := e.state
		r.mu.Unlock()
		refused(w, from, "Ready", id)
		return
	}
	if e.current != nil {
		e.current.finish()
		e.current = nil
	}
	e.everNext = true
	e.state = stReady
	e.waiting = true
	r.broadcast()
	for len(e.queue) == 0 && e.state == stReady {
		r.mu.Unlock()
		select {
		case <-e.wake:
		case <-req.Context().Done():
		}
		r.mu.Lock()
		if req.Context().Err() != nil {
			// It gave up (or died): another /next may follow.
			if e.state == stReady {
				e.state = stRunning
			}
			e.waiting = false
			r.mu.Unlock()
			return
		}
	}
	if e.state != stReady {
		// Gone (its process exited, or its bootstrap was replaced).
		e.waiting = false
		r.mu.Unlock()
		return
	}
	ev := e.queue[0]
	e.queue = e.queue[1:]
	e.current = ev
	e.state = stRunning
	e.waiting = false
	r.mu.Unlock()

	w.Header()[headerEventID] = []string{uuid.NewString()}
	writeJSON(w, http.StatusOK, ev.body)
}

// initError is POST /extension/init/error.
func (r *Registry) initError(w http.ResponseWriter, req *http.Request, _ Caller) {
	r.reportError(w, req, ErrorInit)
}

// exitError is POST /extension/exit/error.
func (r *Registry) exitError(w http.ResponseWriter, req *http.Request, _ Caller) {
	r.reportError(w, req, ErrorExit)
}

func (r *Registry) reportError(w http.ResponseWriter, req *http.Request, kind string) {
	id, ok := identify(w, req)
	if !ok {
		return
	}
	errType := req.Header.Get(headerErrorType)
	if errType == "" {
		forbidden(w, errMissingHeader, "%s not found", headerErrorType)
		return
	}
	r.mu.Lock()
	e := r.byID[id]
	if e == nil || e.state == stStarted {
		r.mu.Unlock()
		forbidden(w, errUnknownID, "Unknown %s", headerID)
		return
	}
	var allowed bool
	to, target := stInitError, "InitError"
	if kind == ErrorInit {
		allowed = e.state == stRegistered || e.state == stInitError
	} else {
		to, target = stExitError, "Exited"
		allowed = e.state == stRegistered || e.state == stReady || e.state == stRunning || e.state == stExitError
	}
	if !allowed {
		from := e.state
		r.mu.Unlock()
		refused(w, from, target, id)
		return
	}
	e.state = to
	e.errType = errType
	name := e.Name
	r.broadcast()
	r.mu.Unlock()

	body, _ := io.ReadAll(io.LimitReader(req.Body, maxErrorBodySize))
	r.cfg.Log.Warn("extension reported an error", "extension", name, "kind", kind, "errorType", errType, "body", string(body))
	writeJSON(w, http.StatusAccepted, []byte(`{"status":"OK"}`))
	if r.cfg.OnFailure != nil {
		verb := "failed to initialize"
		if kind == ErrorExit {
			verb = "reported an exit error"
		}
		r.cfg.OnFailure(Failure{Extension: name, Type: kind, Message: "extension " + name + " " + verb + ": " + errType})
	}
}

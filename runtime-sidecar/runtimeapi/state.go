package runtimeapi

import "slices"

// slotState is where a slot's bootstrap is in the runtime life cycle. The
// names are the runtime interface emulator's, because bootstraps see them
// in InvalidStateTransition messages.
type slotState int

const (
	stDown      slotState = iota // no bootstrap, or one being stopped
	stStarted                    // started, has not called /next yet (Init)
	stReady                      // called /next, waiting for an invocation
	stRunning                    // holds an invocation
	stResponded                  // posted /response or /error
	stInitError                  // posted /init/error
)

var stateNames = [...]string{"Shutdown", "Started", "Ready", "Running", "RuntimeResponseSentState", "InitError"}

// slotEvent is what moves a slot: a Runtime API request of its bootstrap,
// or the sidecar starting or stopping that bootstrap.
type slotEvent int

const (
	evSpawn     slotEvent = iota // run starts a bootstrap
	evNext                       // GET /next
	evDispatch                   // the /next got an invocation
	evResponse                   // POST /response
	evError                      // POST /error
	evInitError                  // POST /init/error
	evStop                       // bootstrap exit, reset (timeout), failed start, drain
)

// slotTransitions is the slot's state machine (drawn in the package doc):
// the states each event is allowed in and the state it leads to. A
// refused event leaves the state alone; its name is the target the
// InvalidStateTransition message names, which for a dispatch is still the
// Ready of the /next it answers.
var slotTransitions = [...]struct {
	from []slotState
	to   slotState
	name string
}{
	evSpawn:     {[]slotState{stDown}, stStarted, "Started"},
	evNext:      {[]slotState{stStarted, stReady, stResponded}, stReady, "Ready"},
	evDispatch:  {[]slotState{stReady}, stRunning, "Ready"},
	evResponse:  {[]slotState{stRunning}, stResponded, "InvocationResponse"},
	evError:     {[]slotState{stRunning}, stResponded, "InvocationErrorResponse"},
	evInitError: {[]slotState{stStarted}, stInitError, "InitError"},
	evStop:      {[]slotState{stDown, stStarted, stReady, stRunning, stResponded, stInitError}, stDown, "Shutdown"},
}

// transition applies ev to the slot; s.mu must be held. A refusal is the
// *transitionError the Runtime API answers with.
func (s *Slot) transition(ev slotEvent) error {
	t := &slotTransitions[ev]
	if !slices.Contains(t.from, s.state) {
		return &transitionError{from: s.state, ev: ev}
	}
	s.state = t.to
	return nil
}

// mustTransition applies an event the sidecar raises itself. The table
// allows it wherever the sidecar raises it, so a refusal is a bug in the
// sidecar, not a misbehaving bootstrap.
func (s *Slot) mustTransition(ev slotEvent) {
	if err := s.transition(ev); err != nil {
		panic(err)
	}
}

// transitionError is an event refused in the state the slot was in.
type transitionError struct {
	from slotState
	ev   slotEvent
}

func (e *transitionError) Error() string {
	return "State transition from " + stateNames[e.from] + " to " + slotTransitions[e.ev].name +
		" failed for runtime. Error: State transition is not allowed"
}

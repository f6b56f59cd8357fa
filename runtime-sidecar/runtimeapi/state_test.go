package runtimeapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

var allStates = []slotState{stDown, stStarted, stReady, stRunning, stResponded, stInitError}

var allEvents = []slotEvent{evSpawn, evNext, evDispatch, evResponse, evError, evInitError, evStop}

var eventNames = map[slotEvent]string{evSpawn: "spawn", evNext: "/next", evDispatch: "dispatch",
	evResponse: "/response", evError: "/error", evInitError: "/init/error", evStop: "stop"}

// allowedSlot is the state machine written out independently of
// slotTransitions, so a slip in either shows up as a difference.
var allowedSlot = map[slotState]map[slotEvent]slotState{
	stDown:      {evSpawn: stStarted, evStop: stDown},
	stStarted:   {evNext: stReady, evInitError: stInitError, evStop: stDown},
	stReady:     {evNext: stReady, evDispatch: stRunning, evStop: stDown},
	stRunning:   {evResponse: stResponded, evError: stResponded, evStop: stDown},
	stResponded: {evNext: stReady, evStop: stDown},
	stInitError: {evStop: stDown},
}

func TestSlotTableShape(t *testing.T) {
	if len(stateNames) != len(allStates) {
		t.Fatalf("%d state names for %d states", len(stateNames), len(allStates))
	}
	if len(slotTransitions) != len(allEvents) {
		t.Fatalf("%d table rows for %d events", len(slotTransitions), len(allEvents))
	}
	for _, ev := range allEvents {
		if tr := slotTransitions[ev]; len(tr.from) == 0 || tr.name == "" {
			t.Errorf("%s: empty row %+v", eventNames[ev], tr)
		}
	}
}

// TestSlotTransition tries every event in every state.
func TestSlotTransition(t *testing.T) {
	for _, from := range allStates {
		for _, ev := range allEvents {
			s := &Slot{state: from}
			err := s.transition(ev)
			to, ok := allowedSlot[from][ev]
			switch {
			case ok && err != nil:
				t.Errorf("%s + %s: refused: %v", stateNames[from], eventNames[ev], err)
			case ok && s.state != to:
				t.Errorf("%s + %s: now %s, want %s", stateNames[from], eventNames[ev], stateNames[s.state], stateNames[to])
			case !ok && err == nil:
				t.Errorf("%s + %s: allowed, moved to %s", stateNames[from], eventNames[ev], stateNames[s.state])
			case !ok && s.state != from:
				t.Errorf("%s + %s: refused but moved to %s", stateNames[from], eventNames[ev], stateNames[s.state])
			case !ok:
				if te, isTE := err.(*transitionError); !isTE || te.from != from || te.ev != ev {
					t.Errorf("%s + %s: error %#v", stateNames[from], eventNames[ev], err)
				}
			}
		}
	}
}

// TestRefusalBody pins the 403 bodies bootstraps see; the names in them
// are not always the target state's (a dispatch answers a /next).
func TestRefusalBody(t *testing.T) {
	for _, c := range []struct {
		from slotState
		ev   slotEvent
		msg  string
	}{
		{stRunning, evInitError, "State transition from Running to InitError failed for runtime. Error: State transition is not allowed"},
		{stResponded, evResponse, "State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. Error: State transition is not allowed"},
		{stResponded, evError, "State transition from RuntimeResponseSentState to InvocationErrorResponse failed for runtime. Error: State transition is not allowed"},
		{stInitError, evNext, "State transition from InitError to Ready failed for runtime. Error: State transition is not allowed"},
		{stRunning, evNext, "State transition from Running to Ready failed for runtime. Error: State transition is not allowed"},
		{stRunning, evDispatch, "State transition from Running to Ready failed for runtime. Error: State transition is not allowed"},
		{stDown, evDispatch, "State transition from Shutdown to Ready failed for runtime. Error: State transition is not allowed"},
		{stReady, evResponse, "State transition from Ready to InvocationResponse failed for runtime. Error: State transition is not allowed"},
		{stStarted, evError, "State transition from Started to InvocationErrorResponse failed for runtime. Error: State transition is not allowed"},
	} {
		s := &Slot{state: c.from}
		err := s.transition(c.ev)
		if err == nil {
			t.Errorf("%s + %s: allowed", stateNames[c.from], eventNames[c.ev])
			continue
		}
		rec := httptest.NewRecorder()
		writeRefused(rec, err)
		want := `{"errorMessage":"` + c.msg + `","errorType":"InvalidStateTransition"}`
		if rec.Code != http.StatusForbidden || rec.Body.String() != want {
			t.Errorf("%s + %s: %d %s, want 403 %s", stateNames[c.from], eventNames[c.ev], rec.Code, rec.Body, want)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
}

func TestMustTransitionPanicsOnRefusal(t *testing.T) {
	s := &Slot{state: stReady}
	defer func() {
		if recover() == nil {
			t.Error("spawn while Ready did not panic")
		}
		if s.state != stReady {
			t.Errorf("state moved to %s", stateNames[s.state])
		}
	}()
	s.mustTransition(evSpawn)
}

package invocation

import (
	"strings"
	"testing"
)

var allStates = []State{Queued, Dispatched, Streaming, Done, Canceled}

// allowedMoves is the state machine written out independently of
// transitions, so a slip in either shows up as a difference.
var allowedMoves = map[[2]State]bool{
	{Queued, Dispatched}:    true,
	{Queued, Canceled}:      true,
	{Queued, Done}:          true,
	{Dispatched, Queued}:    true,
	{Dispatched, Streaming}: true,
	{Dispatched, Done}:      true,
	{Streaming, Done}:       true,
}

func inState(s State) *Invocation {
	inv := New(nil, "")
	inv.state.Store(int32(s))
	return inv
}

func panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

// TestTransition tries every pair of states, from the expected state and
// from every other one (a lost race).
func TestTransition(t *testing.T) {
	for _, s := range allStates {
		if int(s) >= len(transitions) || strings.HasPrefix(s.String(), "State(") {
			t.Fatalf("%s has no row or no name", s)
		}
	}
	for _, from := range allStates {
		for _, to := range allStates {
			if !allowedMoves[[2]State{from, to}] {
				inv := inState(from)
				if !panics(func() { inv.transition(from, to) }) {
					t.Errorf("%s -> %s: allowed", from, to)
				}
				if inv.State() != from {
					t.Errorf("%s -> %s: refused but now %s", from, to, inv.State())
				}
				continue
			}
			for _, cur := range allStates {
				inv := inState(cur)
				ok := inv.transition(from, to)
				switch {
				case cur == from && (!ok || inv.State() != to):
					t.Errorf("%s -> %s: got %v, now %s", from, to, ok, inv.State())
				case cur != from && (ok || inv.State() != cur):
					t.Errorf("%s -> %s while %s: got %v, now %s", from, to, cur, ok, inv.State())
				}
			}
		}
	}
}

// TestMethods runs every state-changing method in every state: each must
// succeed in exactly one state, end in its target and report how the
// invocation ended exactly when it ends.
func TestMethods(t *testing.T) {
	result := func() *Result { return &Result{Outcome: OutcomeSuccess} }
	for _, m := range []struct {
		name    string
		call    func(*Invocation) bool
		from    State
		to      State
		outcome Outcome // "" when the invocation goes on
	}{
		{"Dispatch", (*Invocation).Dispatch, Queued, Dispatched, ""},
		{"Undispatch", (*Invocation).Undispatch, Dispatched, Queued, ""},
		{"Cancel", (*Invocation).Cancel, Queued, Canceled, OutcomeCanceled},
		{"Complete", func(inv *Invocation) bool { return inv.Complete(result()) }, Dispatched, Done, OutcomeSuccess},
		{"CompleteQueued", func(inv *Invocation) bool { return inv.CompleteQueued(result()) }, Queued, Done, OutcomeSuccess},
		{"StartStream", func(inv *Invocation) bool {
			return inv.StartStream(&Stream{Body: strings.NewReader(""), Done: make(chan struct{})})
		}, Dispatched, Streaming, ""},
		{"EndStream", func(inv *Invocation) bool { return inv.EndStream(OutcomeFunctionError) }, Streaming, Done, OutcomeFunctionError},
		{"TimeoutStream", (*Invocation).TimeoutStream, Streaming, Done, OutcomeTimeout},
	} {
		for _, cur := range allStates {
			inv := inState(cur)
			var ended []Outcome
			inv.OnEnd = func(_ *Invocation, o Outcome) { ended = append(ended, o) }
			ok := m.call(inv)
			if cur != m.from {
				if ok || inv.State() != cur || len(ended) != 0 {
					t.Errorf("%s while %s: got %v, now %s, ended %v", m.name, cur, ok, inv.State(), ended)
				}
				continue
			}
			if !ok || inv.State() != m.to {
				t.Errorf("%s while %s: got %v, now %s", m.name, cur, ok, inv.State())
			}
			if m.outcome == "" && len(ended) != 0 || m.outcome != "" && (len(ended) != 1 || ended[0] != m.outcome) {
				t.Errorf("%s: ended %v, want %q", m.name, ended, m.outcome)
			}
		}
	}
}

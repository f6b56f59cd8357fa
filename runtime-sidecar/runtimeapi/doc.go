// Package runtimeapi serves the Lambda Runtime API
// (/2018-06-01/runtime/...) to bootstraps and runs their life cycle: each
// bootstrap slot has its own listener, its own process and at most one
// invocation at a time, as on Lambda.
//
// # Slot states
//
// A slot follows the runtime state machine of the runtime interface
// emulator, whose state names bootstraps see in refusals. Every change of
// state goes through Slot.transition and the table slotTransitions:
//
//	                spawn
//	Shutdown ---------------> Started ---- /init/error ----> InitError
//	                             |
//	                             | /next (Init ends)
//	                             v
//	             +-----------> Ready <-----+
//	             |               | |       | /next again
//	             |               | +-------+
//	       /next |      dispatch |
//	             |               v
//	RuntimeResponseSentState <-- Running
//	              /response, /error
//
//	stop: from every state to Shutdown
//
// What raises each event:
//
//   - spawn: the slot's run loop starts a bootstrap, first or again after
//     a stop (with a back-off after an init failure).
//   - /next: the bootstrap asks for work. The first one ends Init (once
//     the extensions registered have called their next too: until then
//     it is held, and the slot is not ready); after
//     /response or /error it ends the invocation; while Ready it replaces
//     a /next the bootstrap gave up on.
//   - dispatch: a pending /next took an invocation from the queue (once
//     the extensions have called next after the last one's INVOKE, or
//     its deadline passed), and the extensions got its INVOKE.
//   - /response, /error: the bootstrap answers its invocation (buffered or
//     streamed; a streamed answer stays RuntimeResponseSentState while it
//     flows).
//   - /init/error: the bootstrap reports a failed Init; the sidecar then
//     stops it, and the error answers the invocations of the back-off.
//   - stop: the bootstrap exited, was reset because its invocation timed
//     out, could not be started, or the pool is stopping (drain).
//
// A request whose event the table refuses leaves the state alone and gets
// 403 InvalidStateTransition ("State transition from <state> to <target>
// failed for runtime ..."). Three cases differ:
//
//   - /next in Shutdown (a bootstrap being stopped) is held unanswered
//     until the bootstrap goes away: it gets nothing more.
//   - /response or /error for an id other than the slot's invocation gets
//     400 InvalidRequestID before the state is looked at; a response that
//     comes after a timeout is one.
//   - a refused dispatch (another /next of the slot took the slot first,
//     or the bootstrap was replaced while this /next waited) puts the
//     invocation back at the head of the queue before the 403.
package runtimeapi

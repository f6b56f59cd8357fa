package invocation

import (
	"strconv"
	"time"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// FunctionErrorResult is a function-error result with a JSON body.
func FunctionErrorResult(body []byte, outcome Outcome) *Result {
	return &Result{Body: body, ContentType: "application/json", FunctionError: true, Outcome: outcome}
}

// TimeoutResult: {"errorType":"Sandbox.Timedout","errorMessage":"RequestId: <id> Error: Task timed out after 3.00 seconds"}.
func TimeoutResult(id string, timeout time.Duration) *Result {
	return FunctionErrorResult(invokeapi.TimeoutDocument(id, timeout), OutcomeTimeout)
}

// ExitMessage is the Runtime.ExitError message for an exit description
// such as "exit status 2" or "signal: killed" ("" = exit status 0).
func ExitMessage(id, exit string) string {
	if exit == "" || exit == "exit status 0" {
		return "RequestId: " + id + " Error: Runtime exited without providing a reason"
	}
	return "RequestId: " + id + " Error: Runtime exited with error: " + exit
}

// ExitResult: {"errorType":"Runtime.ExitError","errorMessage":"RequestId: <id> Error: Runtime exited with error: exit status 2"}.
func ExitResult(id, exit string, outcome Outcome) *Result {
	return FunctionErrorResult(invokeapi.ErrorDocument("Runtime.ExitError", ExitMessage(id, exit)), outcome)
}

// ResponseTooLargeResult is what the caller gets when the bootstrap posts a
// response over invokeapi.MaxResponsePayload.
func ResponseTooLargeResult() *Result {
	return FunctionErrorResult(invokeapi.ErrorDocument("Function.ResponseSizeTooLarge",
		"Response payload size exceeded maximum allowed payload size ("+strconv.Itoa(invokeapi.MaxResponsePayload)+" bytes)."),
		OutcomeResponseTooLarge)
}

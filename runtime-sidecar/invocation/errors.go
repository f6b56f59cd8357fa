package invocation

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Error documents the caller gets (with X-Amz-Function-Error: Unhandled)
// when an invocation fails outside the function's own error reporting.
// Field order follows Lambda: errorType, then errorMessage.
type errorDoc struct {
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

// ErrorDocument renders {"errorType":t,"errorMessage":m}.
func ErrorDocument(errorType, message string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorDoc{ErrorType: errorType, ErrorMessage: message})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// FunctionErrorResult is a function-error result with a JSON body.
func FunctionErrorResult(body []byte, outcome Outcome) *Result {
	return &Result{Body: body, ContentType: "application/json", FunctionError: true, Outcome: outcome}
}

// TimeoutResult: {"errorType":"Sandbox.Timedout","errorMessage":"RequestId: <id> Error: Task timed out after 3.00 seconds"}.
func TimeoutResult(id string, timeout time.Duration) *Result {
	return FunctionErrorResult(ErrorDocument("Sandbox.Timedout",
		"RequestId: "+id+" Error: Task timed out after "+strconv.FormatFloat(timeout.Seconds(), 'f', 2, 64)+" seconds"),
		OutcomeTimeout)
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
	return FunctionErrorResult(ErrorDocument("Runtime.ExitError", ExitMessage(id, exit)), outcome)
}

// ResponseTooLargeResult is what the caller gets when the bootstrap posts a
// response over MaxPayloadSize.
func ResponseTooLargeResult() *Result {
	return FunctionErrorResult(ErrorDocument("Function.ResponseSizeTooLarge",
		"Response payload size exceeded maximum allowed payload size ("+strconv.Itoa(MaxPayloadSize)+" bytes)."),
		OutcomeResponseTooLarge)
}

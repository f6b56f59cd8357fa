// Package invokeapi is the Lambda Invoke API
// (POST /2015-03-31/functions/{FunctionName}/invocations) as lambdapod
// serves it twice: in the activator, the front door that the AWS SDKs and
// CLI reach with --endpoint-url, and in the runtime sidecar of every pod.
// Both parse names, check requests and write errors through this package,
// so a caller gets the same answer from either, and that answer is
// Lambda's:
//
//   - FunctionName: name, name:qualifier, a partial ARN
//     (123456789012:function:name[:qualifier]) or a full ARN, possibly
//     percent-encoded. A name that cannot be one is 400
//     InvalidParameterValueException; a qualifier in the name that
//     disagrees with the Qualifier parameter is 400 as well.
//   - X-Amz-Invocation-Type: RequestResponse (the default), Event or DryRun;
//     anything else is 400.
//   - Payload: at most 6 MiB synchronously and 1 MiB for Event
//     invocations, else 413 RequestTooLargeException; not JSON is 400
//     InvalidRequestContentException.
//   - Service errors carry X-Amzn-ErrorType and {"Type","message"}, which
//     the SDKs decode into typed exceptions; function errors are 200 with
//     X-Amz-Function-Error: Unhandled and an {"errorType","errorMessage"}
//     document, because the SDKs retry 5xx and would run a function twice.
//
// It imports nothing of lambdapod's and no Kubernetes package: the runtime
// sidecar links it.
package invokeapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Paths of the Invoke API.
const (
	// APIVersion is the path of Invoke's API version, under which Lambda
	// serves its other operations too.
	APIVersion = "/2015-03-31"
	PathPrefix = APIVersion + "/functions/"
	PathSuffix = "/invocations"
)

// Names in ARNs and answers.
const (
	// AccountID is the account in the ARNs that lambdapod makes: there is
	// no AWS account.
	AccountID = "000000000000"
	// LatestVersion is what Lambda calls an unpublished function's version,
	// the only one lambdapod runs.
	LatestVersion = "$LATEST"
	// DefaultRegion is the region in ARNs when none is configured.
	DefaultRegion = "us-east-1"
)

// Headers of the Invoke API, as Go's http.Header canonicalises them.
const (
	HeaderInvocationType  = "X-Amz-Invocation-Type"
	HeaderLogType         = "X-Amz-Log-Type"
	HeaderClientContext   = "X-Amz-Client-Context"
	HeaderCognitoIdentity = "X-Amz-Cognito-Identity"
	HeaderTraceID         = "X-Amzn-Trace-Id"
	HeaderFunctionError   = "X-Amz-Function-Error"
	HeaderExecutedVersion = "X-Amz-Executed-Version"
	HeaderLogResult       = "X-Amz-Log-Result"
	HeaderRequestID       = "X-Amzn-Requestid"
	HeaderErrorType       = "X-Amzn-Errortype"
)

// Payload limits. Lambda refuses a synchronous request over 6 MiB with
// "Request must be smaller than 6291456 bytes for the InvokeFunction
// operation"; Event invocations take at most 1 MB. A response may be 100
// bytes larger than a request (the Runtime API's MaxPayloadSize).
const (
	MaxSyncPayload     = 6 * 1024 * 1024
	MaxAsyncPayload    = 1024 * 1024
	MaxResponsePayload = MaxSyncPayload + 100
)

// NewRequestID returns a random UUID (version 4), as Lambda uses for
// request ids.
func NewRequestID() string { return uuid.NewString() }

// ValidRequestID reports whether id has NewRequestID's form (a UUID in its
// 36-character text form).
func ValidRequestID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

// FunctionARN is the ARN of a function of lambdapod's account.
func FunctionARN(region, name string) string {
	return "arn:aws:lambda:" + region + ":" + AccountID + ":function:" + name
}

// InvocationType is X-Amz-Invocation-Type.
type InvocationType string

const (
	RequestResponse InvocationType = "RequestResponse"
	Event           InvocationType = "Event"
	DryRun          InvocationType = "DryRun"
)

// ParseInvocationType reads X-Amz-Invocation-Type; absent means
// RequestResponse.
func ParseInvocationType(v string) (InvocationType, *Error) {
	switch t := InvocationType(v); t {
	case "":
		return RequestResponse, nil
	case RequestResponse, Event, DryRun:
		return t, nil
	}
	return "", InvalidParameter("1 validation error detected: Value '" + v +
		"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
}

// PayloadLimit is the largest request payload of the invocation type.
func (t InvocationType) PayloadLimit() int {
	if t == Event {
		return MaxAsyncPayload
	}
	return MaxSyncPayload
}

// TooLarge is the answer to a payload over t's limit, in Lambda's words;
// size is the payload's length when known (its Content-Length), else 0.
func (t InvocationType) TooLarge(size int64) *Error {
	msg := fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", t.PayloadLimit())
	if t == Event {
		if size > 0 {
			msg = fmt.Sprintf("%d byte payload is too large for the Event invocation type (limit %d bytes)", size, t.PayloadLimit())
		} else {
			msg = fmt.Sprintf("Payload is too large for the Event invocation type (limit %d bytes)", t.PayloadLimit())
		}
	}
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: "RequestTooLargeException", Message: msg}
}

// SplitPath returns the escaped FunctionName of an Invoke API path.
func SplitPath(escapedPath string) (escapedName string, ok bool) {
	return splitPath(escapedPath, PathPrefix, PathSuffix)
}

func splitPath(escapedPath, prefix, suffix string) (escapedName string, ok bool) {
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, suffix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// IsInvokePath reports whether the path is under the Invoke API's prefix.
func IsInvokePath(escapedPath string) bool { return strings.HasPrefix(escapedPath, PathPrefix) }

// IsAPIPath reports whether a path is under the API version of Invoke
// (/2015-03-31), where Lambda serves its other operations too, or under
// InvokeWithResponseStream's (/2021-11-15).
func IsAPIPath(escapedPath string) bool {
	for _, v := range [...]string{APIVersion, StreamAPIVersion} {
		if escapedPath == v || strings.HasPrefix(escapedPath, v+"/") {
			return true
		}
	}
	return false
}

// FunctionName is an Invoke call's FunctionName, parsed.
type FunctionName struct {
	// Raw is what the caller wrote, unescaped.
	Raw string
	// Name is the function's name, without ARN parts or qualifier.
	Name string
	// Qualifier is the version or alias, from the name or the Qualifier
	// parameter; empty when neither gives one.
	Qualifier string
}

// ParseFunctionName parses the escaped FunctionName of an Invoke path and
// the request's Qualifier parameter.
func ParseFunctionName(escaped string, query url.Values) (FunctionName, *Error) {
	raw, err := url.PathUnescape(escaped)
	if err != nil {
		return FunctionName{}, InvalidParameter("Invalid FunctionName " + strconv.Quote(escaped) + ": bad percent-encoding")
	}
	fn := FunctionName{Raw: raw}
	bad := func(why string) (FunctionName, *Error) {
		return fn, InvalidParameter("Invalid FunctionName " + strconv.Quote(raw) + ": " + why)
	}
	if raw == "" || len(raw) > 170 {
		return bad("it must be 1 to 170 characters long")
	}
	parts := strings.Split(raw, ":")
	switch {
	case parts[0] == "arn":
		// arn:partition:lambda:region:account:function:name[:qualifier]
		if len(parts) < 7 || len(parts) > 8 || parts[2] != "lambda" || parts[5] != "function" {
			return bad("an ARN must look like arn:aws:lambda:region:account:function:name[:qualifier]")
		}
		fn.Name = parts[6]
		if len(parts) == 8 {
			fn.Qualifier = parts[7]
		}
	case len(parts) >= 3 && parts[1] == "function":
		// account:function:name[:qualifier]
		if len(parts) > 4 {
			return bad("a partial ARN must look like account:function:name[:qualifier]")
		}
		fn.Name = parts[2]
		if len(parts) == 4 {
			fn.Qualifier = parts[3]
		}
	case len(parts) == 1:
		fn.Name = raw
	case len(parts) == 2:
		fn.Name, fn.Qualifier = parts[0], parts[1]
	default:
		return bad("expected name, name:qualifier, account:function:name or a function ARN")
	}
	if !validName(fn.Name) {
		return bad("a function name has only letters, digits, '-', '_' and '.'")
	}
	if len(parts) > 1 && strings.HasSuffix(raw, ":") {
		return bad("the qualifier after ':' is empty")
	}
	if q := query.Get("Qualifier"); q != "" {
		if fn.Qualifier != "" && fn.Qualifier != q {
			return fn, InvalidParameter("The derived qualifier from the function name does not match the specified qualifier.")
		}
		fn.Qualifier = q
	}
	if fn.Qualifier != "" && !validQualifier(fn.Qualifier) {
		return bad("a qualifier has only letters, digits, '$', '-' and '_'")
	}
	return fn, nil
}

// ARN is the function's ARN as the caller named it, for messages: a full
// ARN as written, a partial one completed with region, a name in
// lambdapod's account.
func (fn FunctionName) ARN(region string) string {
	switch {
	case strings.HasPrefix(fn.Raw, "arn:"):
		return fn.Raw
	case strings.Contains(fn.Raw, ":function:"):
		return "arn:aws:lambda:" + region + ":" + fn.Raw
	}
	return FunctionARN(region, fn.Raw)
}

// validName is Lambda's FunctionName pattern for the name part.
func validName(s string) bool { return s != "" && len(s) <= 140 && onlyWordsAnd(s, "-_.") }

// validQualifier is Lambda's Qualifier pattern.
func validQualifier(s string) bool { return len(s) <= 128 && onlyWordsAnd(s, "-_$") }

// onlyWordsAnd reports whether s has only ASCII letters, digits and the
// bytes of extra.
func onlyWordsAnd(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// DecodeClientContext decodes X-Amz-Client-Context (base64 of a JSON
// object) to the JSON that the function receives; "" when absent.
func DecodeClientContext(v string) (string, *Error) {
	if v == "" {
		return "", nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !json.Valid(b) {
		return "", InvalidContent("Client context must be a valid Base64-encoded JSON object.")
	}
	return string(b), nil
}

// CheckPayload refuses a payload that is not JSON, as Lambda does: an empty
// one is accepted.
func CheckPayload(b []byte) *Error {
	if len(b) == 0 || json.Valid(b) {
		return nil
	}
	return InvalidContent("Could not parse request body into json: the payload is not valid JSON")
}

// Error is a service error of the Invoke API: the caller's request was not
// run (or not accepted) by a function.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Type is the exception, in X-Amzn-ErrorType.
	Type string
	// Message says what went wrong and what to change.
	Message string
	// Reason, on TooManyRequestsException, says which limit was hit.
	Reason string
	// RetryAfter, when set, is sent as Retry-After.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Kind is the error document's Type: User for 4xx, Service for 5xx.
func (e *Error) Kind() string {
	if e.Status >= 500 {
		return "Service"
	}
	return "User"
}

// Write answers with the error: X-Amzn-ErrorType names the exception and
// the body carries Type and message, the shape the SDKs decode.
func (e *Error) Write(w http.ResponseWriter, requestID string) {
	doc := struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
		Reason  string `json:"Reason,omitempty"`
	}{e.Kind(), e.Message, e.Reason}
	b, _ := json.Marshal(doc)
	h := w.Header()
	h[HeaderErrorType] = []string{e.Type}
	if requestID != "" {
		h[HeaderRequestID] = []string{requestID}
	}
	if e.RetryAfter > 0 {
		h["Retry-After"] = []string{RetryAfter(e.RetryAfter)}
	}
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// RetryAfter formats a Retry-After: whole seconds, at least 1.
func RetryAfter(d time.Duration) string {
	return strconv.Itoa(max(int((d+time.Second-1)/time.Second), 1))
}

// NotFound is the answer for a function that does not exist (or a
// qualifier that names no version).
func NotFound(arn string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "ResourceNotFoundException", Message: "Function not found: " + arn}
}

// InvalidParameter is a 400 for a parameter that cannot be right.
func InvalidParameter(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "InvalidParameterValueException", Message: msg}
}

// InvalidContent is a 400 for a body or client context that cannot be
// parsed.
func InvalidContent(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "InvalidRequestContentException", Message: msg}
}

// UnknownOperation is the answer to a request that is not an Invoke call.
func UnknownOperation(method, path string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "UnknownOperationException",
		Message: "Unknown operation " + method + " " + path + ": lambdapod serves only Invoke (POST " + PathPrefix + "{FunctionName}" + PathSuffix +
			") and InvokeWithResponseStream (POST " + StreamPathPrefix + "{FunctionName}" + StreamPathSuffix + ")"}
}

// TooManyRequests is a throttle: the SDKs back off and retry it.
func TooManyRequests(msg string, retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Type: "TooManyRequestsException", Message: "Rate Exceeded: " + msg,
		Reason: "ConcurrentInvocationLimitExceeded", RetryAfter: retryAfter}
}

// ServiceException is a 5xx for a request that never reached a function.
func ServiceException(status int, msg string) *Error {
	return &Error{Status: status, Type: "ServiceException", Message: msg}
}

// NotReady is a 502 for a function whose pods could not take the request.
func NotReady(msg string) *Error {
	return &Error{Status: http.StatusBadGateway, Type: "ResourceNotReadyException", Message: msg}
}

// ErrorDocument is a function error document, as a runtime posts to
// /error and the caller receives: errorType first, as Lambda writes it.
func ErrorDocument(errType, msg string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}{errType, msg})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// TimedOutType is the errorType of an invocation that ran past its timeout.
const TimedOutType = "Sandbox.Timedout"

// TimeoutDocument is the error document of an invocation that timed out,
// in Lambda's words: "Task timed out after 3.00 seconds".
func TimeoutDocument(requestID string, timeout time.Duration) []byte {
	return ErrorDocument(TimedOutType, "RequestId: "+requestID+" Error: Task timed out after "+
		strconv.FormatFloat(timeout.Seconds(), 'f', 2, 64)+" seconds")
}

// WriteFunctionError answers a synchronous invocation whose function failed:
// 200 with X-Amz-Function-Error: Unhandled, as Lambda does for crashes and
// timeouts.
func WriteFunctionError(w http.ResponseWriter, requestID string, doc []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h[HeaderFunctionError] = []string{"Unhandled"}
	h[HeaderExecutedVersion] = []string{LatestVersion}
	if requestID != "" {
		h[HeaderRequestID] = []string{requestID}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(doc))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

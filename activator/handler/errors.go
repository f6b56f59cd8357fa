package handler

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// lambdaError writes an Invoke API service error: the shape the AWS SDKs
// decode (X-Amzn-ErrorType names the exception, the body carries Type and
// message).
func lambdaError(w http.ResponseWriter, requestID string, status int, errType, typ, msg string, extra map[string]string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", errType)
	if requestID != "" {
		h.Set("X-Amzn-RequestId", requestID)
	}
	body := map[string]string{"Type": typ, "message": msg}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// functionError writes a synchronous invocation's function error: 200 with
// X-Amz-Function-Error: Unhandled, as Lambda does for timeouts and crashes.
func functionError(w http.ResponseWriter, requestID, errType, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amz-Function-Error", "Unhandled")
	h.Set("X-Amz-Executed-Version", "$LATEST")
	if requestID != "" {
		h.Set("X-Amzn-RequestId", requestID)
	}
	b, _ := json.Marshal(map[string]string{"errorType": errType, "errorMessage": msg})
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// httpError writes an error on an HTTP route as API Gateway does: a JSON
// object with a message.
func httpError(w http.ResponseWriter, requestID string, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if requestID != "" {
		h.Set("Apigw-Requestid", requestID)
	}
	b, _ := json.Marshal(map[string]string{"message": msg})
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func retryAfter(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// seconds formats a duration the way Lambda's timeout message does: 3.00.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64)
}

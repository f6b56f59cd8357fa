package handler

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// streamEvents decodes an InvokeWithResponseStream answer as "type:payload".
func streamEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sr := invokeapi.NewStreamReader(bytes.NewReader(body))
	for {
		m, err := sr.Next()
		if err != nil {
			return out
		}
		out = append(out, m.Headers.Get(":event-type").String()+":"+string(m.Payload))
	}
}

// The sidecar's event stream reaches the caller as it was; one that the pod
// cuts, or that outlives the function's timeout, ends with an
// InvokeComplete carrying the error, whole events only.
func TestInvokeWithResponseStream(t *testing.T) {
	const path = "/2021-11-15/functions/hello/response-streaming-invocations"
	var mode string
	sc := newSidecar(t, func(w http.ResponseWriter, r *http.Request, p []byte) {
		if r.URL.Path != path {
			t.Errorf("the sidecar got %s", r.URL.Path)
		}
		sw := invokeapi.StartStream(w, "sidecar-rid", "$LATEST")
		_ = sw.Chunk([]byte("a"))
		switch mode {
		case "cut":
			_, _ = w.Write([]byte{0, 0, 0, 200, 0, 0}) // half an event
			panic(http.ErrAbortHandler)
		case "slow":
			time.Sleep(1600 * time.Millisecond)
		}
		_ = sw.Chunk([]byte("b"))
		_ = sw.Complete(invokeapi.StreamComplete{})
	})
	e := newEnv(t, Options{TimeoutGrace: 10 * time.Millisecond, ActivationTimeout: 200 * time.Millisecond}, fn1, 10)
	e.pools.SetEndpoints(queue.Key{Namespace: "default", Name: "hello"}, []string{sc.addr()})

	w := e.do("POST", path, `{}`)
	if got := strings.Join(streamEvents(t, w.Body.Bytes()), "|"); w.Code != 200 || got != "PayloadChunk:a|PayloadChunk:b|InvokeComplete:{}" ||
		w.Header().Get("Content-Type") != invokeapi.EventStreamContentType || w.Header().Get("X-Amzn-RequestId") != "sidecar-rid" {
		t.Fatalf("stream: %d %v %q", w.Code, w.Header(), got)
	}
	mode = "cut"
	w = e.do("POST", path, `{}`)
	if got := strings.Join(streamEvents(t, w.Body.Bytes()), "|"); w.Code != 200 || !strings.HasPrefix(got, `PayloadChunk:a|InvokeComplete:{"ErrorCode":"Runtime.Unknown","ErrorDetails":"RequestId: `) ||
		!strings.Contains(got, "lost the connection to the function's pod") {
		t.Fatalf("cut stream: %d %q", w.Code, got)
	}
	mode = "slow"
	w = e.do("POST", path, `{}`)
	if got := strings.Join(streamEvents(t, w.Body.Bytes()), "|"); w.Code != 200 || !strings.HasPrefix(got, `PayloadChunk:a|InvokeComplete:{"ErrorCode":"Sandbox.Timedout"`) ||
		!strings.Contains(got, "Task timed out after 1.00 seconds") {
		t.Fatalf("slow stream: %d %q", w.Code, got)
	}

	w = e.do("POST", path, `{}`, "X-Amz-Invocation-Type", "Event")
	if w.Code != 400 || w.Header().Get("X-Amzn-ErrorType") != "InvalidParameterValueException" || !strings.Contains(w.Body.String(), "[RequestResponse, DryRun]") {
		t.Fatalf("Event: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = e.do("POST", path, `{}`, "X-Amz-Log-Type", "All")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "logType") {
		t.Fatalf("log type: %d %s", w.Code, w.Body)
	}
	calls := sc.calls.Load()
	w = e.do("POST", path, `{}`, "X-Amz-Invocation-Type", "DryRun")
	if w.Code != 204 || sc.calls.Load() != calls {
		t.Fatalf("DryRun: %d, %d calls", w.Code, sc.calls.Load()-calls)
	}
	w = e.do("POST", "/2021-11-15/functions/nope/response-streaming-invocations", `{}`)
	if w.Code != 404 || w.Header().Get("X-Amzn-ErrorType") != "ResourceNotFoundException" {
		t.Fatalf("unknown: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

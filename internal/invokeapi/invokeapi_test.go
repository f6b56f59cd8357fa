package invokeapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

func TestParseFunctionName(t *testing.T) {
	cases := []struct {
		escaped, query string
		want           FunctionName
		status         int    // 0: no error
		msg            string // in the error's message
	}{
		{escaped: "hello", want: FunctionName{Raw: "hello", Name: "hello"}},
		{escaped: "hello:$LATEST", want: FunctionName{Raw: "hello:$LATEST", Name: "hello", Qualifier: "$LATEST"}},
		{escaped: "hello%3Aprod", want: FunctionName{Raw: "hello:prod", Name: "hello", Qualifier: "prod"}},
		{escaped: "hello", query: "Qualifier=7", want: FunctionName{Raw: "hello", Name: "hello", Qualifier: "7"}},
		{escaped: "hello:7", query: "Qualifier=7", want: FunctionName{Raw: "hello:7", Name: "hello", Qualifier: "7"}},
		{escaped: "123456789012:function:team.hello", want: FunctionName{Raw: "123456789012:function:team.hello", Name: "team.hello"}},
		{escaped: "123456789012:function:hello:1", want: FunctionName{Raw: "123456789012:function:hello:1", Name: "hello", Qualifier: "1"}},
		{escaped: "arn%3Aaws%3Alambda%3Aeu-west-1%3A1%3Afunction%3AHello_World", want: FunctionName{Raw: "arn:aws:lambda:eu-west-1:1:function:Hello_World", Name: "Hello_World"}},
		{escaped: "arn:aws:lambda:us-east-1:1:function:hello:$LATEST", want: FunctionName{Raw: "arn:aws:lambda:us-east-1:1:function:hello:$LATEST", Name: "hello", Qualifier: "$LATEST"}},

		{escaped: "hello:1", query: "Qualifier=2", status: 400, msg: "The derived qualifier from the function name does not match the specified qualifier."},
		{escaped: "arn:aws:lambda:us-east-1:1:function", status: 400, msg: "an ARN must look like"},
		{escaped: "arn:aws:s3:::bucket", status: 400, msg: "an ARN must look like"},
		{escaped: "1:function:a:b:c", status: 400, msg: "a partial ARN must look like"},
		{escaped: "a:b:c", status: 400, msg: "expected name"},
		{escaped: "hello:", status: 400, msg: "the qualifier after ':' is empty"},
		{escaped: "hello%20world", status: 400, msg: "only letters, digits"},
		{escaped: "hello:a%2Fb", status: 400, msg: "a qualifier has only"},
		{escaped: "%zz", status: 400, msg: "bad percent-encoding"},
		{escaped: strings.Repeat("a", 171), status: 400, msg: "1 to 170 characters"},
	}
	for _, tc := range cases {
		q, _ := url.ParseQuery(tc.query)
		got, err := ParseFunctionName(tc.escaped, q)
		if tc.status != 0 {
			if err == nil || err.Status != tc.status || err.Type != "InvalidParameterValueException" || !strings.Contains(err.Message, tc.msg) {
				t.Errorf("%s?%s: got %+v, %v; want %d with %q", tc.escaped, tc.query, got, err, tc.status, tc.msg)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s?%s: got %+v, %v; want %+v", tc.escaped, tc.query, got, err, tc.want)
		}
	}
}

func TestARN(t *testing.T) {
	for raw, want := range map[string]string{
		"hello":                                  "arn:aws:lambda:eu-west-1:000000000000:function:hello",
		"hello:prod":                             "arn:aws:lambda:eu-west-1:000000000000:function:hello:prod",
		"123456789012:function:hello":            "arn:aws:lambda:eu-west-1:123456789012:function:hello",
		"arn:aws:lambda:us-east-2:1:function:hi": "arn:aws:lambda:us-east-2:1:function:hi",
	} {
		if got := (FunctionName{Raw: raw}).ARN("eu-west-1"); got != want {
			t.Errorf("ARN of %s = %s, want %s", raw, got, want)
		}
	}
}

func TestInvocationTypesAndLimits(t *testing.T) {
	for in, want := range map[string]InvocationType{"": RequestResponse, "RequestResponse": RequestResponse, "Event": Event, "DryRun": DryRun} {
		if got, err := ParseInvocationType(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseInvocationType("event"); err == nil || err.Status != 400 ||
		!strings.Contains(err.Message, "Member must satisfy enum value set: [Event, RequestResponse, DryRun]") {
		t.Errorf("a lowercase type: %v", err)
	}
	if RequestResponse.PayloadLimit() != 6291456 || DryRun.PayloadLimit() != 6291456 || Event.PayloadLimit() != 1048576 {
		t.Errorf("limits %d %d", RequestResponse.PayloadLimit(), Event.PayloadLimit())
	}
	if e := RequestResponse.TooLarge(7000000); e.Status != 413 || e.Type != "RequestTooLargeException" ||
		e.Message != "Request must be smaller than 6291456 bytes for the InvokeFunction operation" {
		t.Errorf("sync: %+v", e)
	}
	if e := Event.TooLarge(2000000); e.Message != "2000000 byte payload is too large for the Event invocation type (limit 1048576 bytes)" {
		t.Errorf("async: %+v", e)
	}
}

func TestWriters(t *testing.T) {
	w := httptest.NewRecorder()
	TooManyRequests("the queue is full", 1500*time.Millisecond).Write(w, "rid")
	if w.Code != 429 || w.Header().Get("X-Amzn-ErrorType") != "TooManyRequestsException" || w.Header().Get("Retry-After") != "2" ||
		w.Header().Get("X-Amzn-RequestId") != "rid" || w.Header().Get("Content-Type") != "application/json" ||
		w.Body.String() != `{"Type":"User","message":"Rate Exceeded: the queue is full","Reason":"ConcurrentInvocationLimitExceeded"}` {
		t.Errorf("429: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	ServiceException(http.StatusServiceUnavailable, "busy").Write(w, "")
	if w.Code != 503 || w.Body.String() != `{"Type":"Service","message":"busy"}` || w.Header().Get("X-Amzn-RequestId") != "" {
		t.Errorf("503: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	WriteFunctionError(w, "rid", TimeoutDocument("rid", 3*time.Second))
	if w.Code != 200 || w.Header().Get("X-Amz-Function-Error") != "Unhandled" || w.Header().Get("X-Amz-Executed-Version") != "$LATEST" ||
		w.Body.String() != `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: rid Error: Task timed out after 3.00 seconds"}` {
		t.Errorf("timeout: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if got := string(ErrorDocument("E", "<&>")); got != `{"errorType":"E","errorMessage":"<&>"}` {
		t.Errorf("error document %s", got)
	}
}

func TestClientContextAndPayload(t *testing.T) {
	if cc, err := DecodeClientContext("eyJhIjoxfQ=="); err != nil || cc != `{"a":1}` {
		t.Errorf("good: %q %v", cc, err)
	}
	for _, bad := range []string{"not base64!", "bm90IGpzb24="} {
		if _, err := DecodeClientContext(bad); err == nil || err.Type != "InvalidRequestContentException" {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if CheckPayload(nil) != nil || CheckPayload([]byte(`{"a":1}`)) != nil || CheckPayload([]byte(`{"a"`)) == nil {
		t.Error("CheckPayload")
	}
}

func TestSplitPath(t *testing.T) {
	for p, want := range map[string]string{
		"/2015-03-31/functions/hello/invocations":                    "hello",
		"/2015-03-31/functions/a%2Fb/invocations":                    "a%2Fb",
		"/2015-03-31/functions//invocations":                         "",
		"/2015-03-31/functions/a/b/invocations":                      "",
		"/2015-03-31/functions/hello":                                "",
		"/2015-03-31/functions/hello/invocations/more":               "",
		"/2015-03-31/functions/hello/response-streaming-invocations": "",
		"/2021-11-15/functions/hello/response-streaming-invocations": "stream hello",
		"/2021-11-15/functions/a%2Fb/response-streaming-invocations": "stream a%2Fb",
		"/2021-11-15/functions//response-streaming-invocations":      "",
		"/2021-11-15/functions/hello/invocations":                    "",
	} {
		got, ok := SplitPath(p)
		if s, sok := SplitStreamPath(p); sok {
			got, ok = "stream "+s, ok || sok
		}
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v", p, got, ok)
		}
	}
	if !IsAPIPath("/2021-11-15/functions") || !IsStreamPath("/2021-11-15/functions/x") || IsStreamPath("/2015-03-31/functions/x") {
		t.Error("IsAPIPath / IsStreamPath")
	}
}

func TestStreamInvocationAndLogTypes(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "RequestResponse": true, "DryRun": true, "Event": false, "x": false} {
		if _, err := ParseStreamInvocationType(v); (err == nil) != ok {
			t.Errorf("invocation type %q: %v", v, err)
		}
	}
	for v, ok := range map[string]bool{"": true, "None": true, "Tail": true, "tail": false} {
		if err := CheckLogType(v); (err == nil) != ok {
			t.Errorf("log type %q: %v", v, err)
		}
	}
}

// What StreamWriter writes, StreamReader reads back: chunks as they were,
// and the InvokeComplete document.
func TestStreamRoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := StartStream(rec, "id-1", LatestVersion)
	if err := sw.Chunk([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	_ = sw.Chunk(nil)
	_ = sw.Chunk([]byte("world"))
	_ = sw.Complete(Failed("", []byte(`{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out"}`)))
	if !sw.Completed() || !rec.Flushed {
		t.Error("not completed or not flushed")
	}
	if ct := rec.Header().Get("Content-Type"); ct != EventStreamContentType {
		t.Errorf("Content-Type %q", ct)
	}
	var events []string
	eachEvent(rec.Body, func(m eventstream.Message) {
		events = append(events, m.Headers.Get(eventTypeHeader).String()+":"+m.Headers.Get(contentTypeHeader).String()+":"+string(m.Payload))
	})
	want := []string{"PayloadChunk:application/octet-stream:hello ", "PayloadChunk:application/octet-stream:world",
		`InvokeComplete:application/json:{"ErrorCode":"Sandbox.Timedout","ErrorDetails":"Task timed out"}`}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Errorf("events\n%q\nwant\n%q", events, want)
	}
	if c := Failed("", []byte("not json")); c.ErrorCode != "Unhandled" || c.ErrorDetails != "not json" {
		t.Errorf("Failed(not json) = %+v", c)
	}
	if c := Failed("Runtime.X", nil); c.ErrorCode != "Runtime.X" || c.ErrorDetails != "" {
		t.Errorf("Failed(Runtime.X, nil) = %+v", c)
	}
}

// A writer splits a long payload into events of at most MaxChunk; a reader
// refuses an event over MaxEvent before it reads its payload.
func TestStreamEventSizes(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := StartStream(rec, "", LatestVersion)
	_ = sw.Chunk(bytes.Repeat([]byte("x"), 2*MaxChunk+1))
	var sizes []int
	eachEvent(rec.Body, func(m eventstream.Message) { sizes = append(sizes, len(m.Payload)) })
	if fmt.Sprint(sizes) != fmt.Sprint([]int{MaxChunk, MaxChunk, 1}) {
		t.Errorf("chunk sizes %v", sizes)
	}

	rec = httptest.NewRecorder()
	enc := eventstream.NewEncoder()
	_ = enc.Encode(rec.Body, eventstream.Message{Payload: []byte("ok")})
	_ = enc.Encode(rec.Body, eventstream.Message{Payload: make([]byte, MaxEvent)})
	r := NewStreamReader(rec.Body)
	if m, err := r.Next(); err != nil || string(m.Payload) != "ok" {
		t.Fatalf("first event: %q %v", m.Payload, err)
	}
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "over the 1048576 the reader takes") {
		t.Fatalf("an event over the limit: %v", err)
	}
}

// eachEvent calls f with each event of the stream in r, until its end or
// an error.
func eachEvent(r io.Reader, f func(eventstream.Message)) {
	sr := NewStreamReader(r)
	for {
		m, err := sr.Next()
		if err != nil {
			return
		}
		f(m)
	}
}

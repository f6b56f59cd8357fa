// Package streamtest reads InvokeWithResponseStream answers through the AWS
// SDK for Go v2, for the tests of the runtime sidecar and of the activator:
// what a caller's SDK delivers, event by event.
package streamtest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// readOnlyBodies hides the io.WriterTo of request bodies from net/http,
// around a race in the SDK (smithy-go v1.28.8): once the answer's head has
// come, the SDK closes the request body, whose WriteTo then returns io.EOF
// as an error. net/http, which reads a body of known length once more
// after sending it (through WriteTo), takes that for a failed write and
// closes the connection, and an event stream still arriving on it breaks
// with "use of closed network connection". A server that answers at once
// (the sidecar, the activator on a warm pod) loses that race often; with
// Read, a closed body is a plain end of file.
type readOnlyBodies struct{ c lambda.HTTPClient }

// ReadOnlyBodies wraps c, an SDK client's HTTP client, around that race,
// for tests whose functions answer at once with more than a few bytes.
func ReadOnlyBodies(c lambda.HTTPClient) lambda.HTTPClient { return readOnlyBodies{c} }

func (h readOnlyBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body = struct{ io.ReadCloser }{r.Body}
	}
	return h.c.Do(r)
}

// Streamed is what the SDK delivered.
type Streamed struct {
	Out      *lambda.InvokeWithResponseStreamOutput
	Chunks   [][]byte
	Complete *types.InvokeWithResponseStreamCompleteEvent
}

// Payload is the chunks joined.
func (s Streamed) Payload() string { return string(bytes.Join(s.Chunks, nil)) }

// Invoke calls InvokeWithResponseStream and reads the whole event stream;
// onChunk, if set, runs as each PayloadChunk arrives, before the next is
// read. A stream that is not PayloadChunks then exactly one InvokeComplete
// fails the test. The error is the call's (the answer was no stream).
func Invoke(ctx context.Context, t *testing.T, c *lambda.Client, in *lambda.InvokeWithResponseStreamInput, onChunk func(i int, p []byte)) (Streamed, error) {
	t.Helper()
	out, err := c.InvokeWithResponseStream(ctx, in, func(o *lambda.Options) { o.HTTPClient = readOnlyBodies{o.HTTPClient} })
	if err != nil {
		return Streamed{}, err
	}
	st := Streamed{Out: out}
	es := out.GetStream()
	defer es.Close()
	for ev := range es.Events() {
		switch v := ev.(type) {
		case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			if st.Complete != nil {
				t.Errorf("a PayloadChunk after InvokeComplete: %q", v.Value.Payload)
			}
			if onChunk != nil {
				onChunk(len(st.Chunks), v.Value.Payload)
			}
			st.Chunks = append(st.Chunks, v.Value.Payload)
		case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			if st.Complete != nil {
				t.Error("a second InvokeComplete")
			}
			st.Complete = &v.Value
		default:
			t.Errorf("unexpected event %T", ev)
		}
	}
	if err := es.Err(); err != nil {
		t.Fatalf("event stream: %v (after %d chunks %q, InvokeComplete %v)", err, len(st.Chunks), st.Payload(), st.Complete != nil)
	}
	if st.Complete == nil {
		t.Fatalf("the stream ended without InvokeComplete (payload %q)", st.Payload())
	}
	return st, nil
}

// WantComplete checks the InvokeComplete event: its ErrorCode is code and
// its ErrorDetails contain details (both empty: no error).
func WantComplete(t *testing.T, st Streamed, code, details string) {
	t.Helper()
	if got := aws.ToString(st.Complete.ErrorCode); got != code {
		t.Errorf("InvokeComplete.ErrorCode = %q, want %q", got, code)
	}
	if got := aws.ToString(st.Complete.ErrorDetails); !strings.Contains(got, details) || (details == "" && got != "") {
		t.Errorf("InvokeComplete.ErrorDetails = %q, want %q", got, details)
	}
}

// WantHead checks the answer's status, executed version and content type.
func WantHead(t *testing.T, st Streamed) {
	t.Helper()
	if st.Out.StatusCode != 200 || aws.ToString(st.Out.ExecutedVersion) != "$LATEST" ||
		aws.ToString(st.Out.ResponseStreamContentType) != "application/vnd.amazon.eventstream" {
		t.Errorf("status %d, version %q, content type %q", st.Out.StatusCode, aws.ToString(st.Out.ExecutedVersion), aws.ToString(st.Out.ResponseStreamContentType))
	}
}

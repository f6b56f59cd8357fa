package conformance

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// streamed is what the SDK's InvokeWithResponseStream delivered.
type streamed struct {
	out      *lambda.InvokeWithResponseStreamOutput
	chunks   [][]byte
	complete *types.InvokeWithResponseStreamCompleteEvent
}

func (s streamed) payload() string { return string(bytes.Join(s.chunks, nil)) }

// sdkStream calls InvokeWithResponseStream and reads the whole event
// stream; onChunk, if set, runs as each PayloadChunk arrives.
func sdkStream(t *testing.T, c *lambda.Client, in *lambda.InvokeWithResponseStreamInput, onChunk func(i int, p []byte)) (streamed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if in.FunctionName == nil {
		in.FunctionName = aws.String("function")
	}
	out, err := c.InvokeWithResponseStream(ctx, in)
	if err != nil {
		return streamed{}, err
	}
	st := streamed{out: out}
	es := out.GetStream()
	defer es.Close()
	for ev := range es.Events() {
		switch v := ev.(type) {
		case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			if st.complete != nil {
				t.Errorf("a PayloadChunk after InvokeComplete: %q", v.Value.Payload)
			}
			if onChunk != nil {
				onChunk(len(st.chunks), v.Value.Payload)
			}
			st.chunks = append(st.chunks, v.Value.Payload)
		case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			if st.complete != nil {
				t.Error("a second InvokeComplete")
			}
			st.complete = &v.Value
		default:
			t.Errorf("unexpected event %T", ev)
		}
	}
	if err := es.Err(); err != nil {
		t.Fatalf("event stream: %v", err)
	}
	if st.complete == nil {
		t.Fatalf("the stream ended without InvokeComplete (payload %q)", st.payload())
	}
	return st, nil
}

func wantComplete(t *testing.T, st streamed, code, details string) {
	t.Helper()
	if got := aws.ToString(st.complete.ErrorCode); got != code {
		t.Errorf("InvokeComplete.ErrorCode = %q, want %q", got, code)
	}
	if got := aws.ToString(st.complete.ErrorDetails); !strings.Contains(got, details) || (details == "" && got != "") {
		t.Errorf("InvokeComplete.ErrorDetails = %q, want %q", got, details)
	}
}

// The SDK's InvokeWithResponseStream of an aws-lambda-go handler that
// returns an io.Reader: the first chunk reaches the caller while the
// handler still runs (it cannot end before the test, having seen that
// chunk, opens its gate), then the rest, then InvokeComplete without an
// error; the answer's status, version and content type are Lambda's.
func TestSDKInvokeWithResponseStream(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	gate := filepath.Join(t.TempDir(), "gate")
	st, err := sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{
		Payload: []byte(`{"action":"streamgate","mark":"` + gate + `"}`),
	}, func(i int, p []byte) {
		if i == 0 {
			if string(p) != "first\n" {
				t.Errorf("first chunk %s, want %q", truncate(p), "first\n")
			}
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gate); err != nil {
		t.Fatal("no chunk arrived before the handler ended")
	}
	if want := "first\nsecond\n" + strings.Repeat("z", 100_000); st.payload() != want {
		t.Errorf("payload %s, want %d bytes", truncate([]byte(st.payload())), len(want))
	}
	if len(st.chunks) < 2 {
		t.Errorf("%d chunks, want the first on its own", len(st.chunks))
	}
	wantComplete(t, st, "", "")
	if st.out.StatusCode != 200 || aws.ToString(st.out.ExecutedVersion) != "$LATEST" ||
		aws.ToString(st.out.ResponseStreamContentType) != "application/vnd.amazon.eventstream" {
		t.Errorf("status %d, version %q, content type %q", st.out.StatusCode, aws.ToString(st.out.ExecutedVersion), aws.ToString(st.out.ResponseStreamContentType))
	}
}

// Failures through the SDK: a reader that fails mid-stream (aws-lambda-go's
// error trailers), an error returned before any byte (/error), a timeout,
// a buffered response (whole, then InvokeComplete), DryRun, an unknown
// function and the invocation types Lambda refuses on this operation.
func TestSDKInvokeWithResponseStreamAnswers(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--timeout", "1s"}})
	c := s.client()
	stream := func(payload string) streamed {
		t.Helper()
		st, err := sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{Payload: []byte(payload)}, nil)
		if err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		return st
	}

	st := stream(`{"action":"streamerr"}`)
	if st.payload() != "partial output" {
		t.Errorf("streamerr payload %q", st.payload())
	}
	wantComplete(t, st, "errorString", "stream broke")

	st = stream(`{"action":"error"}`)
	if len(st.chunks) != 0 {
		t.Errorf("an error document sent as payload: %q", st.payload())
	}
	wantComplete(t, st, "errorString", "something went wrong")

	st = stream(`{"action":"echo","n":1}`)
	if st.payload() != `{"action":"echo","n":1}` {
		t.Errorf("buffered payload %q", st.payload())
	}
	wantComplete(t, st, "", "")

	st = stream(`{"action":"sleep","sleepMs":3000}`)
	wantComplete(t, st, "Sandbox.Timedout", "Task timed out after 1.00 seconds")

	// The function ran again after the timeout (a new bootstrap).
	st = stream(`{"action":"stream"}`)
	if st.payload() != "chunk-1\nchunk-2\n" {
		t.Errorf("after the timeout: %q", st.payload())
	}
	wantComplete(t, st, "", "")

	ctx := context.Background()
	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("function"),
		InvocationType: types.ResponseStreamingInvocationTypeDryRun})
	if err != nil || out.StatusCode != http.StatusNoContent {
		t.Errorf("DryRun: %v %+v", err, out)
	}

	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(nf.ErrorMessage(), "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope") {
		t.Errorf("unknown function: %v", err)
	}

	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("function"),
		InvocationType: "Event", Payload: []byte(`{}`)})
	var bad *types.InvalidParameterValueException
	if !errors.As(err, &bad) || !strings.Contains(bad.ErrorMessage(), "[RequestResponse, DryRun]") {
		t.Errorf("Event: %v", err)
	}

	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("function:7"), Payload: []byte(`{}`)})
	if !errors.As(err, &nf) {
		t.Errorf("unknown qualifier: %v", err)
	}
	_, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("function"),
		Payload: bytes.Repeat([]byte("x"), 6*1024*1024+1)})
	var tooLarge *types.RequestTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Errorf("7 MB payload: %v", err)
	}
}

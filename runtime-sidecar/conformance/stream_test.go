package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdapod/lambdapod/internal/streamtest"
)

// sdkStream calls InvokeWithResponseStream on the sidecar's function.
func sdkStream(t *testing.T, c *lambda.Client, in *lambda.InvokeWithResponseStreamInput, onChunk func(i int, p []byte)) (streamtest.Streamed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if in.FunctionName == nil {
		in.FunctionName = aws.String("function")
	}
	return streamtest.Invoke(ctx, t, c, in, onChunk)
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
	if want := "first\nsecond\n" + strings.Repeat("z", 100_000); st.Payload() != want {
		t.Errorf("payload %s, want %d bytes", truncate([]byte(st.Payload())), len(want))
	}
	if len(st.Chunks) < 2 {
		t.Errorf("%d chunks, want the first on its own", len(st.Chunks))
	}
	streamtest.WantComplete(t, st, "", "")
	streamtest.WantHead(t, st)
}

// Failures through the SDK: a reader that fails mid-stream (aws-lambda-go's
// error trailers), an error returned before any byte (/error), a timeout,
// a buffered response (whole, then InvokeComplete), DryRun, an unknown
// function and the invocation types Lambda refuses on this operation.
func TestSDKInvokeWithResponseStreamAnswers(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), flags: []string{"--timeout", "1s"}})
	c := s.client()
	stream := func(payload string) streamtest.Streamed {
		t.Helper()
		st, err := sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{Payload: []byte(payload)}, nil)
		if err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		return st
	}

	st := stream(`{"action":"streamerr"}`)
	if st.Payload() != "partial output" {
		t.Errorf("streamerr payload %q", st.Payload())
	}
	streamtest.WantComplete(t, st, "errorString", "stream broke")

	st = stream(`{"action":"error"}`)
	if len(st.Chunks) != 0 {
		t.Errorf("an error document sent as payload: %q", st.Payload())
	}
	streamtest.WantComplete(t, st, "errorString", "something went wrong")

	st = stream(`{"action":"echo","n":1}`)
	if st.Payload() != `{"action":"echo","n":1}` {
		t.Errorf("buffered payload %q", st.Payload())
	}
	streamtest.WantComplete(t, st, "", "")

	st = stream(`{"action":"sleep","sleepMs":3000}`)
	streamtest.WantComplete(t, st, "Sandbox.Timedout", "Task timed out after 1.00 seconds")

	// The function ran again after the timeout (a new bootstrap).
	st = stream(`{"action":"stream"}`)
	if st.Payload() != "chunk-1\nchunk-2\n" {
		t.Errorf("after the timeout: %q", st.Payload())
	}
	streamtest.WantComplete(t, st, "", "")

	// A full ARN with a qualifier, a client context and Tail: the function
	// sees what it sees on Invoke; the request id the SDK reports is its.
	st, err := sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:function"), Qualifier: aws.String("$LATEST"),
		ClientContext: aws.String(base64.StdEncoding.EncodeToString([]byte(`{"custom":{"k":"v"}}`))), LogType: types.LogTypeTail,
		Payload: []byte(`{"action":"inspect"}`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := decodeInspect(t, []byte(st.Payload()))
	rid, _ := awsmiddleware.GetRequestIDMetadata(st.Out.ResultMetadata)
	if in.ClientContext.Custom["k"] != "v" || in.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:function:$LATEST" || in.RequestID != rid {
		t.Errorf("the function saw client context %+v, ARN %q, request id %q (the SDK's %q)", in.ClientContext, in.FunctionArn, in.RequestID, rid)
	}
	streamtest.WantComplete(t, st, "", "")

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

// A streamed response stops at Lambda's 200 MiB: the caller gets exactly
// that many bytes, then InvokeComplete with Function.ResponseSizeTooLarge;
// the bootstrap is told so and takes the next invocation.
func TestSDKInvokeWithResponseStreamLimit(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap()})
	c := s.client()
	n := 0
	st, err := sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{Payload: []byte(`{"action":"huge"}`)}, func(_ int, p []byte) {
		n += len(p)
		if bytes.Count(p, []byte("x")) != len(p) {
			t.Fatalf("a chunk that is not the function's: %s", truncate(p))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 200<<20 {
		t.Errorf("%d bytes streamed, want exactly %d", n, 200<<20)
	}
	streamtest.WantComplete(t, st, "Function.ResponseSizeTooLarge", "Response payload size exceeded maximum allowed payload size (209715200 bytes).")
	st, err = sdkStream(t, c, &lambda.InvokeWithResponseStreamInput{Payload: []byte(`{"action":"echo"}`)}, nil)
	if err != nil || st.Payload() != `{"action":"echo"}` {
		t.Errorf("after the limit: %v %q", err, st.Payload())
	}
	if got := s.metric(`lambdapod_sidecar_invocations_total{outcome="response_too_large"}`); got != "1" {
		t.Errorf("response_too_large invocations: %q", got)
	}
}

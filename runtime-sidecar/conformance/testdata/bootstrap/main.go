// Command bootstrap is a real aws-lambda-go function used by the
// conformance tests. The event's "action" picks the behaviour, so one build
// serves every case:
//
//	echo (default)  return the event unchanged
//	inspect         return what the function saw (context, env, pid)
//	error           return an error
//	panic           panic
//	sleep           sleep sleepMs, ignoring the deadline
//	crash           os.Exit(3) mid-invocation
//	large           return a 7 MB JSON string
//	stream          return an io.Reader that yields two chunks 300 ms apart
//	streamerr       return an io.Reader that fails after a first chunk
//	furl            return *events.LambdaFunctionURLStreamingResponse
//	record          write the event to $RECORD_DIR/<request id>, then echo
//
// With the argument "exit-before-next" it exits with status 7 before
// calling lambda.Start (an init failure).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action  string `json:"action"`
	SleepMs int    `json:"sleepMs"`
}

type failingReader struct {
	sent bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial output"), nil
	}
	return 0, errors.New("stream broke")
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev event
	_ = json.Unmarshal(raw, &ev)
	lc, _ := lambdacontext.FromContext(ctx)
	switch ev.Action {
	case "inspect":
		deadline, _ := ctx.Deadline()
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LAMBDA") || strings.HasPrefix(k, "_") ||
				k == "TZ" || k == "LANG" || strings.HasPrefix(k, "LAMBDAPOD") {
				env[k] = v
			}
		}
		trace, _ := ctx.Value("x-amzn-trace-id").(string)
		return map[string]any{
			"requestId":     lc.AwsRequestID,
			"functionArn":   lc.InvokedFunctionArn,
			"deadlineMs":    deadline.UnixMilli(),
			"traceId":       trace,
			"clientContext": lc.ClientContext,
			"identity":      lc.Identity,
			"pid":           os.Getpid(),
			"env":           env,
			"functionName":  lambdacontext.FunctionName,
			"memory":        lambdacontext.MemoryLimitInMB,
			"version":       lambdacontext.FunctionVersion,
		}, nil
	case "error":
		return nil, errors.New("something went wrong")
	case "panic":
		panic("the handler panicked")
	case "sleep":
		time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
		return map[string]any{"slept": ev.SleepMs, "pid": os.Getpid()}, nil
	case "crash":
		os.Exit(3)
	case "large":
		return strings.Repeat("x", 7*1024*1024), nil
	case "stream":
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("chunk-1\n"))
			time.Sleep(300 * time.Millisecond)
			_, _ = pw.Write([]byte("chunk-2\n"))
			pw.Close()
		}()
		return pr, nil
	case "streamerr":
		return &failingReader{}, nil
	case "furl":
		return &events.LambdaFunctionURLStreamingResponse{
			StatusCode: 201,
			Headers:    map[string]string{"Content-Type": "text/plain"},
			Body:       strings.NewReader("hello from a function URL stream"),
		}, nil
	case "record":
		if err := os.WriteFile(filepath.Join(os.Getenv("RECORD_DIR"), lc.AwsRequestID), raw, 0o644); err != nil {
			return nil, err
		}
	}
	return raw, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exit-before-next" {
		os.Exit(7)
	}
	lambda.Start(handle)
}

// Command bootstrap is a real aws-lambda-go function used by the
// conformance tests. The event's "action" picks the behaviour, so one build
// serves every case:
//
//	echo (default)  return the event unchanged
//	inspect         return what the function saw (context, env, pid)
//	error           return an error
//	panic           panic
//	sleep           sleep sleepMs, ignoring the deadline; first create the
//	                file "mark" names, if any, so a test knows it runs
//	crash           os.Exit(3) mid-invocation
//	large           return a 7 MB JSON string
//	stream          return an io.Reader that yields two chunks 300 ms apart
//	streamerr       return an io.Reader that fails after a first chunk
//	streamgate      return an io.Reader that yields "first\n", then waits
//	                (at most 10 s) for the file "mark" names to exist, then
//	                yields "second\n" and 100 KB of "z": the function cannot
//	                end before its caller saw the first chunk
//	furl            return *events.LambdaFunctionURLStreamingResponse
//	huge            return an io.Reader of 201 MiB of "x", past the streamed
//	                response limit
//	record          write the event to $RECORD_DIR/<request id>, then echo
//	log             print "line" to stdout (and "stderr" to stderr, if
//	                set), then sleep sleepMs (if set) and echo
//
// Its first argument picks how the process behaves outside invocations:
//
//	exit-before-next  exit with status 7 before lambda.Start (an init failure)
//	init-error        post Runtime.ConfigInvalid to /init/error, then hang
//	                  instead of exiting, as a careless runtime may
//	ignore-sigterm    append the time of each SIGTERM to $SIGTERM_LOG and
//	                  carry on, so only SIGKILL stops it
//
// With $START_LOG set, every start first appends its time (Unix ns) there.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action  string `json:"action"`
	SleepMs int    `json:"sleepMs"`
	Mark    string `json:"mark"`
	Line    string `json:"line"`
	Stderr  string `json:"stderr"`
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

// xs reads as left bytes of 'x'. Its field is unexported, so that it
// encodes as {} and aws-lambda-go streams it as a reader, not as JSON.
type xs struct{ left int }

func (r *xs) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.left)]
	for i := range p {
		p[i] = 'x'
	}
	r.left -= len(p)
	return len(p), nil
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
		if ev.Mark != "" {
			if err := os.WriteFile(ev.Mark, nil, 0o644); err != nil {
				return nil, err
			}
		}
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
	case "streamgate":
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("first\n"))
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(ev.Mark); err == nil {
					break
				}
			}
			_, _ = pw.Write([]byte("second\n"))
			_, _ = pw.Write([]byte(strings.Repeat("z", 100_000)))
			pw.Close()
		}()
		return pr, nil
	case "huge":
		return &xs{left: 201 << 20}, nil
	case "furl":
		return &events.LambdaFunctionURLStreamingResponse{
			StatusCode: 201,
			Headers:    map[string]string{"Content-Type": "text/plain"},
			Body:       strings.NewReader("hello from a function URL stream"),
		}, nil
	case "log":
		fmt.Println(ev.Line)
		if ev.Stderr != "" {
			fmt.Fprintln(os.Stderr, ev.Stderr)
		}
		time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
	case "record":
		if err := os.WriteFile(filepath.Join(os.Getenv("RECORD_DIR"), lc.AwsRequestID), raw, 0o644); err != nil {
			return nil, err
		}
	}
	return raw, nil
}

// initErrorDoc is what the init-error mode posts to /init/error.
const initErrorDoc = `{"errorMessage":"missing config","errorType":"Runtime.ConfigInvalid"}`

func appendTime(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		os.Exit(9)
	}
	_, _ = f.WriteString(strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
	f.Close()
}

func main() {
	if p := os.Getenv("START_LOG"); p != "" {
		appendTime(p)
	}
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "exit-before-next":
		os.Exit(7)
	case "init-error":
		req, _ := http.NewRequest(http.MethodPost, "http://"+os.Getenv("AWS_LAMBDA_RUNTIME_API")+"/2018-06-01/runtime/init/error",
			strings.NewReader(initErrorDoc))
		req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.ConfigInvalid")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			os.Exit(8)
		}
		resp.Body.Close()
		time.Sleep(time.Hour)
	case "ignore-sigterm":
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			for range term {
				appendTime(os.Getenv("SIGTERM_LOG"))
			}
		}()
	}
	lambda.Start(handle)
}

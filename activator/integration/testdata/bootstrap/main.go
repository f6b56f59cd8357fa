// Command bootstrap is a real aws-lambda-go function for the activator's
// integration tests.
//
// An API Gateway HTTP API 2.0 event (it has requestContext) gets a 2.0
// response whose body is "<method> <rawPath> <body>", with headers x-pod
// (the POD_ID environment variable) and a cookie; ?sleepMs=N sleeps first.
// Any other event is echoed as {"pod":POD_ID,"event":<event>,"inflight":n}
// after sleeping sleepMs, where n is the number of invocations this process
// was running at the peak of this one; {"fail":true} returns an error
// instead. Every invocation of a non-HTTP event prints
// "invoked <request id> <event>" (the event tests count them).
//
// {"streamGate":path} returns an io.Reader (aws-lambda-go streams it) that
// yields "first <pod>\n", waits (at most 10 s) for the file path to exist,
// then yields "second\n": the function cannot end before its caller saw
// the first chunk. {"streamFail":true} returns one that yields "partial"
// and then fails with "stream broke".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// inflight counts the invocations running in this process.
var inflight atomic.Int32

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	peak := inflight.Add(1)
	defer inflight.Add(-1)
	var probe struct {
		// An HTTP API event has requestContext.http; a destination's
		// invocation record has a requestContext too, without it.
		RequestContext struct {
			HTTP json.RawMessage `json:"http"`
		} `json:"requestContext"`
		SleepMs    int    `json:"sleepMs"`
		Fail       bool   `json:"fail"`
		StreamGate string `json:"streamGate"`
		StreamFail bool   `json:"streamFail"`
	}
	_ = json.Unmarshal(raw, &probe)
	if len(probe.RequestContext.HTTP) > 0 {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		if ms, _ := strconv.Atoi(ev.QueryStringParameters["sleepMs"]); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		return events.APIGatewayV2HTTPResponse{
			StatusCode: 200,
			Headers:    map[string]string{"content-type": "text/plain", "x-pod": os.Getenv("POD_ID")},
			Cookies:    []string{"seen=1; Path=/"},
			Body:       fmt.Sprintf("%s %s %s", ev.RequestContext.HTTP.Method, ev.RawPath, ev.Body),
		}, nil
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		fmt.Printf("invoked %s %s\n", lc.AwsRequestID, raw)
	}
	if probe.SleepMs > 0 {
		time.Sleep(time.Duration(probe.SleepMs) * time.Millisecond)
	}
	if probe.Fail {
		return nil, errors.New("requested failure")
	}
	if probe.StreamGate != "" {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("first " + os.Getenv("POD_ID") + "\n"))
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(probe.StreamGate); err == nil {
					break
				}
			}
			_, _ = pw.Write([]byte("second\n"))
			pw.Close()
		}()
		return pr, nil
	}
	if probe.StreamFail {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("partial"))
			pw.CloseWithError(errors.New("stream broke"))
		}()
		return pr, nil
	}
	return map[string]any{"pod": os.Getenv("POD_ID"), "event": raw, "inflight": max(peak, inflight.Load())}, nil
}

func main() { lambda.Start(handle) }

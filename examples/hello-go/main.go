// Command hello is a Lambda function written with aws-lambda-go, the
// sample that `make dev` builds from git with the Go build strategy and
// invokes through the activator.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// greeting changes between commits in the end-to-end tests.
const greeting = "Hello from lambdapod"

// inflight counts the invocations this process runs at once: Lambda (and
// lambdapod, whatever the number of activators) gives a process one at a
// time, and the end-to-end tests check it from here.
var inflight atomic.Int32

func handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	peak := inflight.Add(1)
	defer inflight.Add(-1)
	// ?sleep=2s makes the invocation last that long, past its deadline if
	// need be (the end-to-end tests' timeout case).
	if d, err := time.ParseDuration(req.QueryStringParameters["sleep"]); err == nil && d > 0 {
		time.Sleep(d)
	}
	who := req.QueryStringParameters["name"]
	if who == "" {
		who = "world"
	}
	return events.APIGatewayV2HTTPResponse{
		StatusCode: 200,
		Headers: map[string]string{
			"Content-Type":            "text/plain",
			"X-Invocations-In-Flight": strconv.Itoa(int(max(peak, inflight.Load()))),
			"X-Pod":                   os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME"),
		},
		Body: fmt.Sprintf("%s, %s! (%s %s, function %s)\n", greeting, who, req.RequestContext.HTTP.Method, req.RawPath, os.Getenv("AWS_LAMBDA_FUNCTION_NAME")),
	}, nil
}

func main() {
	lambda.Start(handle)
}

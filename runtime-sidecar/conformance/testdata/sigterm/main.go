// Command sigterm is an aws-lambda-go bootstrap that enables SIGTERM the
// way Lambda's Go runtime does: lambda.WithEnableSIGTERM registers the
// internal extension GoLangEnableSIGTERM through the Extensions API, and
// the function's SIGTERM handler prints a marker.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.StartWithOptions(func(context.Context, map[string]any) (string, error) { return "ok", nil },
		lambda.WithEnableSIGTERM(func() {
			fmt.Println("SIGTERM-HANDLER-RAN")
			os.Exit(0)
		}))
}

// Command runtime-sidecar serves the Lambda Runtime API to unmodified
// bootstraps and the Lambda Invoke API to callers. See
// runtime-sidecar/app for flags and environment.
package main

import (
	"os"

	"github.com/lambdapod/lambdapod/runtime-sidecar/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stderr))
}

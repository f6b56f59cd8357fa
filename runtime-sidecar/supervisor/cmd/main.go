// Command supervisor runs a function's bootstrap in the function container
// for the runtime sidecar (pod mode). See runtime-sidecar/supervisor.
package main

import (
	"os"

	"github.com/lambdapod/lambdapod/runtime-sidecar/supervisor"
)

func main() {
	os.Exit(supervisor.Main(os.Args[1:], os.Stderr))
}

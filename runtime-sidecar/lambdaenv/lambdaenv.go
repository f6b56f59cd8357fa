// Package lambdaenv builds the environment a bootstrap sees, the minimum
// safe set that Lambda documents for custom runtimes (AWS_LAMBDA_*,
// _HANDLER, LAMBDA_TASK_ROOT ...) plus what of the sidecar's own
// environment may pass through.
package lambdaenv

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/lambdapod/lambdapod/internal/contract"
)

// Function describes the function as the bootstrap must see it.
type Function struct {
	Name    string
	Version string
	Memory  string // MiB, integer string
	Region  string
	Handler string // "" = not set
	// LogFormat (Text or JSON) and LogLevel (the application log level)
	// are Lambda's advanced logging controls, for the runtime library to
	// format and filter its logs by; "" leaves the variable to the
	// parent environment.
	LogFormat string
	LogLevel  string
}

// Removed are variables a bootstrap must never inherit: _LAMBDA_SERVER_PORT
// switches aws-lambda-go to its legacy net/rpc mode and
// AWS_LAMBDA_MAX_CONCURRENCY makes it poll /next concurrently.
var Removed = []string{"_LAMBDA_SERVER_PORT", "AWS_LAMBDA_MAX_CONCURRENCY"}

// Env is what a bootstrap's environment is built from: Override always
// wins over the parent environment, Default only fills gaps.
type Env struct {
	Override []string `json:"override,omitempty"`
	Default  []string `json:"default,omitempty"`
}

// For returns the environment lists for fn with the Runtime API at
// runtimeAPI. Function identity (name, version, memory, region) and the
// Runtime API address override the parent environment; the other Lambda
// variables are defaults.
func For(fn Function, runtimeAPI string) Env {
	e := Env{
		Override: []string{
			"AWS_LAMBDA_FUNCTION_NAME=" + fn.Name,
			"AWS_LAMBDA_FUNCTION_VERSION=" + fn.Version,
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + fn.Memory,
			"AWS_REGION=" + fn.Region,
			"AWS_DEFAULT_REGION=" + fn.Region,
			"AWS_LAMBDA_RUNTIME_API=" + runtimeAPI,
		},
		Default: Defaults(fn),
	}
	if fn.LogFormat != "" {
		e.Override = append(e.Override, contract.EnvLogFormat+"="+fn.LogFormat)
	}
	if fn.LogLevel != "" {
		e.Override = append(e.Override, contract.EnvLogLevel+"="+fn.LogLevel)
	}
	return e
}

// Apply builds the environment from base (the parent environment): entries
// prefixed LAMBDAPOD_ and those in Removed are dropped, e.Default fills
// variables base lacks, e.Override replaces.
func Apply(base []string, e Env) []string {
	over := make(map[string]bool, len(e.Override))
	for _, kv := range e.Override {
		k, _, _ := strings.Cut(kv, "=")
		over[k] = true
	}
	out := make([]string, 0, len(base)+len(e.Override)+len(e.Default))
	seen := map[string]bool{}
	for _, kv := range base {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || strings.HasPrefix(k, contract.EnvPrefix) || isRemoved(k) || over[k] {
			continue
		}
		seen[k] = true
		out = append(out, kv)
	}
	for _, kv := range e.Default {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] && !over[k] {
			seen[k] = true
			out = append(out, kv)
		}
	}
	return append(out, e.Override...)
}

// Defaults are the Lambda variables a parent environment may override.
func Defaults(fn Function) []string {
	d := []string{
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + LogStreamName(time.Now(), fn.Version),
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"LAMBDA_TASK_ROOT=/var/task",
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		"TZ=:UTC",
		"LANG=en_US.UTF-8",
		"AWS_XRAY_CONTEXT_MISSING=LOG_ERROR",
	}
	if fn.Handler != "" {
		d = append(d, "_HANDLER="+fn.Handler)
	}
	return d
}

// LogStreamName is Lambda's format: 2024/01/31/[$LATEST]<32 hex>.
func LogStreamName(now time.Time, version string) string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return now.UTC().Format("2006/01/02") + "/[" + version + "]" + hex.EncodeToString(r[:])
}

func isRemoved(k string) bool {
	for _, r := range Removed {
		if k == r {
			return true
		}
	}
	return false
}

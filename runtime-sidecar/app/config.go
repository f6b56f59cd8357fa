// Package app wires the runtime sidecar together: configuration from flags
// and environment, the Runtime API pool, the invoke side, signals and
// draining.
package app

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
)

// Mode selects who runs the bootstraps.
const (
	ModeLocal  = "local"  // children of the sidecar (standalone, like the RIE)
	ModeSocket = "socket" // a supervisor in the function container (pod mode)
)

// DefaultBootstraps are tried in order when no bootstrap command is given.
var DefaultBootstraps = []string{"/var/runtime/bootstrap", "/var/task/bootstrap", "/opt/bootstrap"}

// Config is the sidecar's configuration.
type Config struct {
	RuntimeAPI    string
	InvokeAddr    string
	Timeout       time.Duration
	Concurrency   int
	QueueSize     int
	MaxInFlight   int
	BodyTimeout   time.Duration
	MaxConns      int
	FunctionName  string
	Version       string
	Memory        string
	Region        string
	Handler       string
	Mode          string
	ControlSocket string
	StopGrace     time.Duration
	DrainTimeout  time.Duration
	LogLevel      string
	LogFormat     string
	// FunctionLogFormat (Text or JSON), SystemLogLevel and
	// ApplicationLogLevel are Lambda's advanced logging controls: the
	// format of the platform lines (and, standalone, their level), and
	// what the bootstrap finds in AWS_LAMBDA_LOG_FORMAT and
	// AWS_LAMBDA_LOG_LEVEL ("" leaves them to the environment).
	FunctionLogFormat   string
	SystemLogLevel      string
	ApplicationLogLevel string
	PlatformLog         process.LogFormat
	Bootstrap           []string
	BootstrapDir        string
	// ExtensionsDir holds the external extensions (standalone; in pod
	// mode the supervisor has its own).
	ExtensionsDir string
	// InvokeKey, when set, is the activators' public key: invocations
	// must carry a token signed with it for Namespace/FunctionName.
	InvokeKey ed25519.PublicKey
	Namespace string
}

const usage = `Usage:
  runtime-sidecar [flags] -- /path/to/bootstrap [args...]   standalone: run the bootstrap as a child
  runtime-sidecar [flags]                                   pod mode when LAMBDAPOD_CONTROL_SOCKET is set

Serves the Lambda Runtime API to bootstraps and the Lambda Invoke API
(POST /2015-03-31/functions/{name}/invocations) to callers.

Flags (environment variable in brackets):
`

// ParseConfig reads flags from args and defaults from getenv.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("runtime-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.RuntimeAPI, "runtime-api", env(contract.EnvRuntimeAPI, contract.RuntimeAPIAddr),
		"Runtime API address of bootstrap 0; bootstrap i listens on port+i (port 0: ephemeral ports) [LAMBDAPOD_RUNTIME_API]")
	fs.StringVar(&c.InvokeAddr, "invoke-addr", env(contract.EnvInvokeAddr, ":"+strconv.Itoa(contract.InvokePort)),
		"Invoke API, health and metrics address [LAMBDAPOD_INVOKE_ADDR]")
	timeout := fs.String("timeout", getenv(contract.EnvTimeout),
		"function timeout as a Go duration [LAMBDAPOD_TIMEOUT]; default AWS_LAMBDA_FUNCTION_TIMEOUT seconds, else 300s")
	concurrency := fs.String("concurrency", env(contract.EnvConcurrency, "1"),
		"bootstrap processes, each running one invocation at a time [LAMBDAPOD_CONCURRENCY]")
	maxInFlight := fs.String("max-inflight", env(contract.EnvMaxInFlight, "0"),
		"invocations admitted at once; another gets 429 marked not-run busy at once instead of waiting in the queue (0: no limit) ["+contract.EnvMaxInFlight+"]")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", 30*time.Second,
		"longest time a caller may take to send an invocation's payload; a slower one is refused and gives its slot back")
	fs.IntVar(&c.MaxConns, "max-connections", 1000,
		"Invoke API connections open at once; more wait in the listen backlog (each costs memory whether or not it sends anything)")
	queue := fs.String("queue-size", env("LAMBDAPOD_QUEUE_SIZE", "100"),
		"invocations that may wait for a free bootstrap; more get 429 [LAMBDAPOD_QUEUE_SIZE]")
	fs.StringVar(&c.FunctionName, "function-name", getenv(contract.EnvFunctionName),
		"function name (default \"function\" standalone; required in pod mode) [AWS_LAMBDA_FUNCTION_NAME]")
	fs.StringVar(&c.Version, "function-version", env(contract.EnvFunctionVersion, invokeapi.LatestVersion),
		"function version [AWS_LAMBDA_FUNCTION_VERSION]")
	fs.StringVar(&c.Memory, "memory", env(contract.EnvMemorySize, "3008"),
		"memory size in MiB shown to the function [AWS_LAMBDA_FUNCTION_MEMORY_SIZE]")
	fs.StringVar(&c.Region, "region", env(contract.EnvRegion, env(contract.EnvDefaultRegion, invokeapi.DefaultRegion)),
		"region [AWS_REGION, AWS_DEFAULT_REGION]")
	fs.StringVar(&c.Handler, "handler", env(contract.EnvHandler, getenv("AWS_LAMBDA_FUNCTION_HANDLER")),
		"handler passed as _HANDLER [_HANDLER, AWS_LAMBDA_FUNCTION_HANDLER]")
	fs.StringVar(&c.Mode, "supervisor", "",
		"who runs the bootstraps: local (children) or socket (a supervisor); default socket when a control socket is configured")
	fs.StringVar(&c.ControlSocket, "control-socket", getenv(contract.EnvControlSocket),
		"unix socket the supervisor connects to (pod mode) [LAMBDAPOD_CONTROL_SOCKET]")
	stopGrace := fs.String("stop-grace", env("LAMBDAPOD_STOP_GRACE", "2s"),
		"time between SIGTERM and SIGKILL when a bootstrap is reset or stopped (at most 2s) [LAMBDAPOD_STOP_GRACE]")
	drain := fs.String("drain-timeout", getenv("LAMBDAPOD_DRAIN_TIMEOUT"),
		"on SIGTERM, how long to wait for running and queued invocations (default timeout+10s) [LAMBDAPOD_DRAIN_TIMEOUT]")
	invokeKey := fs.String("invoke-key", getenv(contract.EnvInvokeKey),
		"the activators' public key (base64 Ed25519): when set, take only invocations with a token they signed for this function; the manager sets it in pods ["+contract.EnvInvokeKey+"]")
	fs.StringVar(&c.Namespace, "function-namespace", getenv(contract.EnvFunctionNamespace),
		"the function's namespace, which invoke tokens name ["+contract.EnvFunctionNamespace+"]")
	fs.StringVar(&c.ExtensionsDir, "extensions-dir", env(contract.EnvExtensionsDir, contract.ExtensionsDir),
		"external extensions (executables) started before the bootstrap, standalone; a missing directory has none ["+contract.EnvExtensionsDir+"]")
	fs.StringVar(&c.LogLevel, "log-level", env("LAMBDAPOD_LOG_LEVEL", "info"), "debug, info, warn or error [LAMBDAPOD_LOG_LEVEL]")
	fs.StringVar(&c.LogFormat, "log-format", env("LAMBDAPOD_LOG_FORMAT", "text"), "text or json [LAMBDAPOD_LOG_FORMAT]")
	fs.StringVar(&c.FunctionLogFormat, "function-log-format", getenv(contract.EnvLogFormat),
		"the function's log format, Text or JSON (JSON: the platform lines are Lambda's platform.* JSON records); passed to the bootstrap ["+contract.EnvLogFormat+"]")
	fs.StringVar(&c.SystemLogLevel, "system-log-level", getenv(contract.EnvSystemLogLevel),
		"with JSON, the least level of the platform records written: DEBUG, INFO (default) or WARN ["+contract.EnvSystemLogLevel+"]")
	fs.StringVar(&c.ApplicationLogLevel, "application-log-level", getenv(contract.EnvLogLevel),
		"the application log level passed to the bootstrap: TRACE, DEBUG, INFO, WARN, ERROR or FATAL ["+contract.EnvLogLevel+"]")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.Bootstrap = fs.Args()

	var err error
	if *timeout != "" {
		if c.Timeout, err = time.ParseDuration(*timeout); err != nil {
			return c, fmt.Errorf("invalid timeout %q: %v", *timeout, err)
		}
	} else if s := getenv("AWS_LAMBDA_FUNCTION_TIMEOUT"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return c, fmt.Errorf("invalid AWS_LAMBDA_FUNCTION_TIMEOUT %q: want seconds", s)
		}
		c.Timeout = time.Duration(secs * float64(time.Second))
	} else {
		c.Timeout = 300 * time.Second
	}
	if c.Timeout <= 0 {
		return c, fmt.Errorf("timeout must be positive, got %s", c.Timeout)
	}
	if c.Concurrency, err = strconv.Atoi(*concurrency); err != nil || c.Concurrency < 1 || c.Concurrency > 1000 {
		return c, fmt.Errorf("invalid concurrency %q: want an integer from 1 to 1000", *concurrency)
	}
	if c.MaxInFlight, err = strconv.Atoi(*maxInFlight); err != nil || c.MaxInFlight < 0 {
		return c, fmt.Errorf("invalid max in-flight %q: want an integer >= 0", *maxInFlight)
	}
	if c.BodyTimeout <= 0 {
		return c, fmt.Errorf("invalid body timeout %s: want a positive duration", c.BodyTimeout)
	}
	if c.MaxConns < 1 {
		return c, fmt.Errorf("invalid max connections %d: want at least 1", c.MaxConns)
	}
	if c.QueueSize, err = strconv.Atoi(*queue); err != nil || c.QueueSize < 0 {
		return c, fmt.Errorf("invalid queue size %q: want an integer >= 0", *queue)
	}
	if m, err := strconv.Atoi(c.Memory); err != nil || m <= 0 {
		return c, fmt.Errorf("invalid memory size %q: want MiB as a positive integer", c.Memory)
	}
	if c.StopGrace, err = time.ParseDuration(*stopGrace); err != nil || c.StopGrace < 0 || c.StopGrace > 2*time.Second {
		return c, fmt.Errorf("invalid stop grace %q: want a duration from 0 to 2s", *stopGrace)
	}
	c.DrainTimeout = c.Timeout + 10*time.Second
	if *drain != "" {
		if c.DrainTimeout, err = time.ParseDuration(*drain); err != nil || c.DrainTimeout < 0 {
			return c, fmt.Errorf("invalid drain timeout %q", *drain)
		}
	}
	if *invokeKey != "" {
		if c.InvokeKey, err = invoketoken.ParsePublicKey(*invokeKey); err != nil {
			return c, fmt.Errorf("%v (--invoke-key, %s)", err, contract.EnvInvokeKey)
		}
		if c.Namespace == "" {
			return c, fmt.Errorf("--function-namespace (%s) is required with an invoke key: tokens name the function by namespace", contract.EnvFunctionNamespace)
		}
	}
	if c.PlatformLog, err = process.ParseLogFormat(c.FunctionLogFormat, c.SystemLogLevel, c.ApplicationLogLevel); err != nil {
		return c, err
	}
	if c.FunctionLogFormat != "" {
		c.FunctionLogFormat = "Text"
		if c.PlatformLog.JSON {
			c.FunctionLogFormat = "JSON"
		}
	}
	c.ApplicationLogLevel = strings.ToUpper(c.ApplicationLogLevel)
	switch c.ApplicationLogLevel {
	case "", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL":
	default:
		return c, fmt.Errorf("invalid application log level %q: want TRACE, DEBUG, INFO, WARN, ERROR or FATAL", c.ApplicationLogLevel)
	}
	if _, _, err := net.SplitHostPort(c.RuntimeAPI); err != nil {
		return c, fmt.Errorf("invalid runtime API address %q: %v", c.RuntimeAPI, err)
	}

	switch c.Mode {
	case "":
		if c.ControlSocket != "" && len(c.Bootstrap) == 0 {
			c.Mode = ModeSocket
		} else {
			c.Mode = ModeLocal
		}
	case ModeLocal, ModeSocket:
	default:
		return c, fmt.Errorf("invalid --supervisor %q: want local or socket", c.Mode)
	}
	if c.Mode == ModeSocket {
		if len(c.Bootstrap) > 0 {
			return c, errors.New("a bootstrap command after -- runs the bootstrap locally; it cannot be combined with --supervisor=socket")
		}
		if c.ControlSocket == "" {
			c.ControlSocket = contract.ControlSocket
		}
		if c.FunctionName == "" {
			return c, errors.New("AWS_LAMBDA_FUNCTION_NAME (or --function-name) is required in pod mode")
		}
	} else {
		if c.FunctionName == "" {
			c.FunctionName = "function"
		}
		if len(c.Bootstrap) == 0 {
			for _, b := range DefaultBootstraps {
				if st, err := os.Stat(b); err == nil && !st.IsDir() {
					c.Bootstrap = []string{b}
					break
				}
			}
			if len(c.Bootstrap) == 0 {
				return c, errors.New("no bootstrap: pass one after -- (runtime-sidecar [flags] -- /path/to/bootstrap), " +
					"install one at " + strings.Join(DefaultBootstraps, ", ") + ", or set LAMBDAPOD_CONTROL_SOCKET for pod mode")
			}
			if st, err := os.Stat("/var/task"); err == nil && st.IsDir() {
				c.BootstrapDir = "/var/task"
			}
		}
	}
	return c, nil
}

// slotAddrs returns the Runtime API address of each bootstrap slot.
func slotAddrs(base string, n int) ([]string, error) {
	host, port, err := net.SplitHostPort(base)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("invalid runtime API port %q", port)
	}
	out := make([]string, n)
	for i := range out {
		pp := 0
		if p != 0 {
			pp = p + i
		}
		out[i] = net.JoinHostPort(host, strconv.Itoa(pp))
	}
	return out, nil
}

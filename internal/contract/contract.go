// Package contract holds what lambdapod's binaries agree on: the names the
// manager writes and the activator, the runtime sidecar, the supervisor and
// the build steps read. Each is spelled here once.
//
// It is a leaf: it imports nothing of lambdapod's and no Kubernetes
// package, so the runtime sidecar and the supervisor (on every cold start)
// can import it at no cost.
package contract

// Labels on everything the operator creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "lambdapod"
	// LabelFunction names the Function an object belongs to.
	LabelFunction = "lambdapod.io/function"
	// ManagedBySelector selects what lambdapod made (the activator watches
	// the EndpointSlices of these Services).
	ManagedBySelector = LabelManagedBy + "=" + ManagedByValue
)

// Labels and annotations on a build's PipelineRun.
const (
	// LabelCommit and LabelBuildSpec identify the (commit, build spec)
	// pair a run builds, so an existing run is found, not made again.
	LabelCommit    = "lambdapod.io/commit"
	LabelBuildSpec = "lambdapod.io/build-spec"
	// AnnotationRevision is the spec.source.git.revision that resolved to
	// the commit.
	AnnotationRevision = "lambdapod.io/revision"
)

// Server-side apply field managers.
const (
	// FieldManager applies everything the Function controller owns.
	FieldManager = "lambdapod"
	// AutoscalerFieldManager owns a Deployment's spec.replicas and nothing
	// else: the autoscaler is the only writer of replicas.
	AutoscalerFieldManager = "lambdapod-autoscaler"
)

// A function pod: its containers, ports and the supervisor.
const (
	SidecarContainer = "runtime-sidecar"
	// FunctionContainer runs the user's bootstrap under the supervisor.
	FunctionContainer = "function"
	// InvokePortName is the sidecar's invoke port, in the Service and its
	// EndpointSlices.
	InvokePortName = "http"
	InvokePort     = 8080
	// RuntimeAPIAddr is where the sidecar serves the Lambda Runtime API to
	// the bootstrap; the pod's containers share one network namespace.
	RuntimeAPIAddr = "127.0.0.1:9001"
	// SharedDir is the emptyDir through which the supervisor binary
	// crosses from the sidecar's image to the function's, for images that
	// do not carry it.
	SharedDir      = "/lambdapod"
	SupervisorPath = SharedDir + "/supervisor"
	// SupervisorLabel on an image says that it carries the supervisor at
	// the label's value (builds put it at SupervisorPath): its pods then
	// need no volume to receive it, which saves the kubelet's wait for
	// volumes (its next 300 ms check) on every cold start.
	SupervisorLabel = "lambdapod.io/supervisor"
	// ControlSocket is where the supervisor reaches the sidecar: an
	// abstract unix socket, in the pod's network namespace, so that it
	// needs no volume.
	ControlSocket = "@lambdapod/control.sock"
)

// Between the activator and the runtime sidecar. A pod admits at most its
// concurrency of invocations, whichever activator sends them; the activators
// hold the others. The sidecar is the one clock of an invocation: it drops
// one that no bootstrap took within the caller's bound, and counts the
// function's timeout from the moment a bootstrap takes it (/next).
const (
	// HeaderNotRun marks an answer for an invocation that no bootstrap
	// ever saw, so the activator may send it elsewhere or later without
	// running the function twice. Its value says why.
	HeaderNotRun = "X-Lambdapod-Not-Run"
	// NotRunBusy (with 429): every slot of the pod is taken.
	NotRunBusy = "busy"
	// NotRunShuttingDown (with 503): the pod is shutting down.
	NotRunShuttingDown = "shutting-down"
	// NotRunNotStarted (with 503): no bootstrap took the invocation
	// within HeaderStartWithin.
	NotRunNotStarted = "not-started"
	// HeaderStartWithin (milliseconds) bounds the wait for a bootstrap to
	// take the invocation: past it, the sidecar drops the invocation and
	// answers NotRunNotStarted, so the caller's activation timeout and the
	// pod agree on whether it ran. Sent by the activator.
	HeaderStartWithin = "X-Lambdapod-Start-Within"
	// HeaderInvokeToken carries the activator's token for the function
	// (package invoketoken); a sidecar given EnvInvokeKey refuses an
	// invocation without a valid one: 403 with NotRunRefused.
	HeaderInvokeToken = "X-Lambdapod-Invoke-Token"
	// NotRunRefused (with 403): the invocation came without a valid
	// invoke token.
	NotRunRefused = "refused"
	// HeaderRequestID is the request id the activator gave the caller (an
	// Event's 202 carries it before the function runs); the sidecar makes
	// it the invocation's id, so that the function sees the id its caller
	// got. A value that is not a UUID is ignored.
	HeaderRequestID = "X-Lambdapod-Request-Id"
)

// Environment variables the manager renders into the sidecar's container
// (and, for the control socket and concurrency, the function's) and the
// sidecar or the supervisor read.
const (
	EnvRuntimeAPI    = "LAMBDAPOD_RUNTIME_API"
	EnvInvokeAddr    = "LAMBDAPOD_INVOKE_ADDR"
	EnvControlSocket = "LAMBDAPOD_CONTROL_SOCKET"
	EnvTimeout       = "LAMBDAPOD_TIMEOUT"
	EnvConcurrency   = "LAMBDAPOD_CONCURRENCY"
	// EnvMaxInFlight is how many invocations the sidecar admits at once;
	// the manager sets it to the concurrency.
	EnvMaxInFlight = "LAMBDAPOD_MAX_INFLIGHT"
	// EnvInvokeKey is the activators' public key (package invoketoken):
	// when set, the sidecar takes only invocations that carry a token
	// signed with it for this function.
	EnvInvokeKey = "LAMBDAPOD_INVOKE_KEY"
	// EnvFunctionNamespace is the function's namespace, which its tokens
	// name.
	EnvFunctionNamespace = "LAMBDAPOD_FUNCTION_NAMESPACE"
	// EnvSystemLogLevel (DEBUG, INFO or WARN) filters the platform's
	// records in a JSON log (Lambda's system log level); the process that
	// writes them, the supervisor or a standalone sidecar, reads it.
	EnvSystemLogLevel = "LAMBDAPOD_SYSTEM_LOG_LEVEL"
	// EnvExtensionsDir overrides ExtensionsDir.
	EnvExtensionsDir = "LAMBDAPOD_EXTENSIONS_DIR"
	// EnvPrefix starts every lambdapod variable; the sidecar keeps them
	// out of the bootstrap's environment.
	EnvPrefix = "LAMBDAPOD_"
)

// Lambda's execution environment around the bootstrap.
const (
	// ExtensionsDir holds a function image's external extensions, one
	// executable each, started before the bootstrap.
	ExtensionsDir = "/opt/extensions"
	// SandboxHost is the name by which extensions in a function's
	// environment reach each other (Telemetry and Logs API destinations
	// are http://sandbox.localdomain:PORT): the pod resolves it to
	// itself.
	SandboxHost = "sandbox.localdomain"
)

// Lambda's own environment variables that the manager renders and the
// sidecar reads.
const (
	EnvFunctionName    = "AWS_LAMBDA_FUNCTION_NAME"
	EnvFunctionVersion = "AWS_LAMBDA_FUNCTION_VERSION"
	EnvMemorySize      = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
	EnvRegion          = "AWS_REGION"
	EnvDefaultRegion   = "AWS_DEFAULT_REGION"
	EnvHandler         = "_HANDLER"
	// EnvLogFormat ("Text" or "JSON") and EnvLogLevel (the application
	// log level, JSON only) are Lambda's advanced logging controls, read
	// by the bootstrap's runtime library and, for the format of the
	// platform's lines, by the process that writes them.
	EnvLogFormat = "AWS_LAMBDA_LOG_FORMAT"
	EnvLogLevel  = "AWS_LAMBDA_LOG_LEVEL"
)

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Function runs a Lambda-style function as scale-to-zero pods: a bootstrap
// that speaks the AWS Lambda Runtime API, built from git or taken from an
// image, reached over HTTP through the activator.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fn,categories=lambdapod
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1035 label of at most 63 characters (lowercase letters, digits and '-', starting with a letter), because it names the function's Service"
type Function struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the user wants: where the code comes from, how to build
	// and run it, how far to scale it and how HTTP reaches it.
	// +required
	Spec FunctionSpec `json:"spec"`

	// status is what the operator observed.
	// +kubebuilder:default={observedGeneration:-1}
	// +optional
	Status FunctionStatus `json:"status,omitempty"`
}

// FunctionSpec is the desired state of a Function.
//
// +kubebuilder:validation:XValidation:rule="!has(self.build) || has(self.source.git)",message="spec.build applies only to git sources: remove spec.build, or use spec.source.git instead of spec.source.image"
// +kubebuilder:validation:XValidation:rule="!has(self.source.git) || has(self.build)",message="spec.build is required for a git source: set spec.build.image to the repository the built image is pushed to"
// +kubebuilder:validation:XValidation:rule="!has(self.scale) || !has(self.scale.targetConcurrency) || self.scale.targetConcurrency <= (has(self.runtime) && has(self.runtime.concurrency) ? self.runtime.concurrency : 1)",message="spec.scale.targetConcurrency may not exceed spec.runtime.concurrency, the most invocations one pod takes at once"
type FunctionSpec struct {
	// source says where the function's code comes from.
	// +required
	Source Source `json:"source"`

	// build says how a git source becomes an image. Only for git sources.
	// +optional
	Build *BuildSpec `json:"build,omitempty"`

	// runtime configures the function's pods and the Lambda environment.
	// +kubebuilder:default={}
	// +optional
	Runtime RuntimeSpec `json:"runtime,omitempty"`

	// scale bounds the number of pods, down to zero.
	// +kubebuilder:default={}
	// +optional
	Scale ScaleSpec `json:"scale,omitempty"`

	// http says how HTTP requests become invocation events.
	// +kubebuilder:default={}
	// +optional
	HTTP HTTPSpec `json:"http,omitempty"`

	// authType says who may invoke the function, through its HTTP routes
	// and the Invoke API alike, as a Lambda Function URL's AuthType.
	// RBAC, the default: the caller presents credentials (a bearer token
	// that the API server accepts, or an AWS Signature Version 4 made with
	// a lambdapod access key) of an identity that Kubernetes RBAC allows
	// the verb invoke on this Function (resource functions, group
	// lambdapod.io). None: anyone who reaches the activator may invoke
	// it; an explicit choice, as NONE is on Lambda.
	// +kubebuilder:default=RBAC
	// +optional
	AuthType AuthType `json:"authType,omitempty"`

	// async says how Event (asynchronous) invocations that fail are
	// retried and how long an accepted event may wait, as Lambda's
	// asynchronous invocation configuration does. Empty: Lambda's
	// defaults (two retries, six hours).
	// +optional
	Async *AsyncSpec `json:"async,omitempty"`

	// schedules run the function on a timetable, as EventBridge rules do:
	// at each time the manager queues one Event invocation (a Scheduled
	// Event, or the schedule's input), once per time even across a change
	// of the manager's leader. Needs the activators' event queue.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Schedules []Schedule `json:"schedules,omitempty"`
}

// AsyncSpec is a function's asynchronous invocation configuration (Lambda's
// MaximumRetryAttempts and MaximumEventAgeInSeconds).
type AsyncSpec struct {
	// maximumRetryAttempts is how many times an Event invocation that
	// failed (an error, a timeout, a crash) is run again: 0 to 2, default
	// 2. Retries come about one and then two minutes later.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2
	// +optional
	MaximumRetryAttempts *int32 `json:"maximumRetryAttempts,omitempty"`

	// maximumEventAge is how long after it was accepted an event may still
	// run (a first run or a retry): 60s to 6h, default 6h. An older event
	// is dropped.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('60s') && duration(self) <= duration('6h')",message="spec.async.maximumEventAge must be between 60s and 6h, as on Lambda"
	// +optional
	MaximumEventAge *metav1.Duration `json:"maximumEventAge,omitempty"`

	// destinations receive an invocation record (Lambda's JSON: the
	// request, the response and how it ended) when an Event invocation
	// succeeded, or failed for good (retries exhausted, or too old to run).
	// +optional
	Destinations *Destinations `json:"destinations,omitempty"`
}

// Destinations says where the records of ended Event invocations go, as
// Lambda's DestinationConfig.
type Destinations struct {
	// onSuccess receives the record of an invocation that succeeded.
	// +optional
	OnSuccess *Destination `json:"onSuccess,omitempty"`

	// onFailure receives the record of an event that failed on its last
	// attempt (condition RetriesExhausted) or was dropped before it could
	// run (EventAgeExceeded).
	// +optional
	OnFailure *Destination `json:"onFailure,omitempty"`
}

// Destination is another Function or an HTTP URL: exactly one.
// +kubebuilder:validation:XValidation:rule="has(self.function) != has(self.url)",message="a destination is exactly one of function (a Function in the same namespace) or url"
type Destination struct {
	// function is the name of a Function in the same namespace: it is
	// invoked asynchronously (an Event) with the record as its payload.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Function string `json:"function,omitempty"`

	// url receives the record in a POST (application/json). A 2xx answer
	// is a delivery; anything else is counted as a failed delivery in
	// lambdapod_activator_event_destination_deliveries_total, and not
	// retried, as on Lambda.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="a destination url must be an absolute http:// or https:// URL"
	// +optional
	URL string `json:"url,omitempty"`
}

// Schedule runs a function on a timetable, as an EventBridge schedule rule
// whose target is the function: an Event invocation at each time.
type Schedule struct {
	// name tells the schedules of a Function apart (a DNS label).
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// expression is EventBridge's schedule syntax, in UTC: rate(1 minute),
	// rate(5 minutes), rate(1 hour), rate(2 days) (singular for 1), or
	// cron(minutes hours day-of-month month day-of-week year) with one of
	// the day fields ?, e.g. cron(0 12 * * ? *) for every day at noon or
	// cron(0/15 8-17 ? * MON-FRI *).
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^rate[(]([1-9][0-9]*) (minute|hour|day)s?[)]$') || self.matches('^cron[(][^ ]+( [^ ]+){5}[)]$')",message="expression must be rate(<value> <unit>) (unit minute, hour or day) or cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>), as in EventBridge"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('rate(') || (self.startsWith('rate(1 ') ? !self.endsWith('s)') : self.endsWith('s)'))",message="a rate takes the singular unit for 1 (rate(1 minute)) and the plural otherwise (rate(5 minutes)), as in EventBridge"
	// +required
	Expression string `json:"expression"`

	// input, if set, is the payload of every invocation (EventBridge's
	// constant input) instead of the Scheduled Event.
	// +optional
	Input *apiextensionsv1.JSON `json:"input,omitempty"`
}

// ScheduleStatus is what happened to a schedule.
type ScheduleStatus struct {
	// name is the schedule's name.
	// +required
	Name string `json:"name"`

	// lastScheduleTime is the last time an Event was queued for.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// nextScheduleTime is the next time an Event will be queued for.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
}

// AuthType says who may invoke a Function.
// +kubebuilder:validation:Enum=RBAC;None
type AuthType string

const (
	// AuthRBAC: callers RBAC allows the verb invoke on the Function.
	AuthRBAC AuthType = "RBAC"
	// AuthNone: anyone.
	AuthNone AuthType = "None"
)

// Source is exactly one of git or image.
//
// +kubebuilder:validation:XValidation:rule="has(self.git) != has(self.image)",message="spec.source must set exactly one of git or image"
type Source struct {
	// git builds the function from a git repository on every new commit.
	// +optional
	Git *GitSource `json:"git,omitempty"`

	// image runs a prebuilt image whose entrypoint (or /var/runtime/bootstrap,
	// /var/task/bootstrap or /opt/bootstrap) is a Lambda bootstrap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ')",message="spec.source.image must be an image reference without spaces, such as repo/name:tag or repo/name@sha256:..."
	// +optional
	Image string `json:"image,omitempty"`
}

// GitSource is a git repository and the revision to build.
type GitSource struct {
	// url of the repository: https://, http://, ssh://, git:// or file://,
	// or scp-style user@host:path.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh|git|file)://[^ /]*/[^ ]*[^ /]$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^ ]+$')",message="spec.source.git.url must be an https://, http://, ssh://, git:// or file:// URL with a repository path, or user@host:path"
	// +required
	URL string `json:"url"`

	// revision is the branch, tag or commit to build.
	// +kubebuilder:default=main
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +optional
	Revision string `json:"revision,omitempty"`

	// contextDir is the directory inside the repository that holds the
	// function, relative to its root.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.contains('..')",message="spec.source.git.contextDir must be a relative path inside the repository, without '..'"
	// +optional
	ContextDir string `json:"contextDir,omitempty"`

	// secretRef names a Secret in the Function's namespace with credentials
	// for a private repository (basic-auth username/password, or an
	// ssh-privatekey), and the webhook secret of push events.
	// +optional
	SecretRef *corev1.LocalObjectReference `json:"secretRef,omitempty"`

	// pollInterval is how often the revision is resolved with git ls-remote
	// to find new commits that no push webhook announced.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="spec.source.git.pollInterval must be at least 10s"
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`
}

// BuildStrategy names how a repository becomes an image.
// +kubebuilder:validation:Enum=Dockerfile;Go
type BuildStrategy string

const (
	// BuildStrategyDockerfile builds a Dockerfile in the repository.
	BuildStrategyDockerfile BuildStrategy = "Dockerfile"
	// BuildStrategyGo compiles a Go main package to a static bootstrap.
	BuildStrategyGo BuildStrategy = "Go"
)

// BuildSpec says how to build a git source.
type BuildSpec struct {
	// strategy is Dockerfile (any Dockerfile in the repository) or Go (a Go
	// main package compiled to a static bootstrap).
	// +kubebuilder:default=Dockerfile
	// +optional
	Strategy BuildStrategy `json:"strategy,omitempty"`

	// dockerfile is the Dockerfile's path inside the context directory,
	// relative to it (no '..').
	// +kubebuilder:default=Dockerfile
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.contains('..')",message="spec.build.dockerfile must be a relative path inside the context directory, without '..': to build a Dockerfile elsewhere in the repository, set spec.source.git.contextDir to a directory that holds it"
	// +optional
	Dockerfile string `json:"dockerfile,omitempty"`

	// image is the repository the built image is pushed to, without tag or
	// digest; each build is tagged with its commit.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains('@') && !self.contains(' ')",message="spec.build.image must be a repository such as registry/team/name, without a digest"
	// +required
	Image string `json:"image"`

	// serviceAccountName runs the build, with its push credentials.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// timeout bounds one build.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('2h')",message="spec.build.timeout must be between 1m and 2h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// RuntimeSpec configures the function's pods and the Lambda environment.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.runAsRoot) && self.runAsRoot && has(self.runAsUser))",message="spec.runtime.runAsUser and spec.runtime.runAsRoot exclude each other: a Function that runs as root runs as the image's user"
type RuntimeSpec struct {
	// handler is passed to the bootstrap as _HANDLER.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Handler string `json:"handler,omitempty"`

	// command runs instead of the image's entrypoint: the bootstrap and its
	// arguments.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Command []string `json:"command,omitempty"`

	// env is added to the bootstrap's environment. The variables that
	// lambdapod sets from the spec are reserved.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['_HANDLER', '_LAMBDA_SERVER_PORT', 'AWS_LAMBDA_RUNTIME_API', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_FUNCTION_TIMEOUT', 'AWS_LAMBDA_MAX_CONCURRENCY', 'AWS_LAMBDA_INITIALIZATION_TYPE', 'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_LAMBDA_LOG_FORMAT', 'AWS_LAMBDA_LOG_LEVEL', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR']))",message="spec.runtime.env may not set a variable that lambdapod sets itself (_HANDLER, AWS_LAMBDA_*, LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR): use spec.runtime.handler, memory, timeout and logging instead"
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// memory is the function's memory, as on Lambda from 128Mi to 10240Mi:
	// the container's memory limit and AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
	// +kubebuilder:default="128Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('128Mi')) >= 0 && quantity(string(self)).compareTo(quantity('10240Mi')) <= 0",message="spec.runtime.memory must be between 128Mi and 10240Mi, as on Lambda"
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`

	// timeout bounds one invocation, as on Lambda from 1s to 15m.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('15m')",message="spec.runtime.timeout must be between 1s and 15m, as on Lambda"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// concurrency is the most invocations one pod runs at once, each in
	// its own bootstrap process. 1, the default, is what Lambda does.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Concurrency int32 `json:"concurrency,omitempty"`

	// ephemeralStorage bounds what the function may write to its
	// container's file system (/tmp), as Lambda's ephemeral storage from
	// 512Mi to 10Gi.
	// +kubebuilder:default="512Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('512Mi')) >= 0 && quantity(string(self)).compareTo(quantity('10Gi')) <= 0",message="spec.runtime.ephemeralStorage must be between 512Mi and 10Gi, as on Lambda"
	// +optional
	EphemeralStorage *resource.Quantity `json:"ephemeralStorage,omitempty"`

	// runAsUser is the uid the function's processes run as. By default the
	// image's user when it is a uid other than 0, else 993, the uid of
	// Lambda's sbx_user1051.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	RunAsUser *int64 `json:"runAsUser,omitempty"`

	// runAsRoot opts out of confinement, for an image that must run as
	// root: the function's container then runs as the image says, may gain
	// privileges and keeps the default capabilities. Function pods are
	// otherwise confined as the restricted Pod Security Standard asks
	// (non-root, no privilege escalation, all capabilities dropped,
	// seccomp RuntimeDefault), and a namespace that enforces that standard
	// refuses the pods of a Function that opts out.
	// +optional
	RunAsRoot bool `json:"runAsRoot,omitempty"`

	// logging is Lambda's advanced logging controls (LoggingConfig): the
	// format of the function's log and, in JSON, the levels below which
	// records are dropped. Empty: Text, as on Lambda.
	// +optional
	Logging *LoggingSpec `json:"logging,omitempty"`
}

// LoggingSpec is Lambda's LoggingConfig, without a log group: the log is
// the function container's, read with kubectl logs.
//
// +kubebuilder:validation:XValidation:rule="(!has(self.applicationLogLevel) && !has(self.systemLogLevel)) || (has(self.format) && self.format == 'JSON')",message="spec.runtime.logging.applicationLogLevel and systemLogLevel apply to the JSON log format only, as on Lambda: set spec.runtime.logging.format to JSON, or remove the levels"
type LoggingSpec struct {
	// format is Text (the default: the runtime's lines as it writes them,
	// and the platform's START, END and REPORT lines) or JSON (the
	// platform writes JSON records such as platform.start and
	// platform.report, and the runtime library, told by
	// AWS_LAMBDA_LOG_FORMAT, may write JSON too).
	// +kubebuilder:default=Text
	// +optional
	Format LogFormat `json:"format,omitempty"`

	// applicationLogLevel is the least level of the function's own log
	// lines that are kept: TRACE, DEBUG, INFO (the default), WARN, ERROR or
	// FATAL. JSON only. The runtime library gets it as
	// AWS_LAMBDA_LOG_LEVEL, and, as on Lambda, a line of the function's
	// output that is a JSON object with a "level" below it is dropped (a
	// line without one counts as INFO).
	// +optional
	ApplicationLogLevel ApplicationLogLevel `json:"applicationLogLevel,omitempty"`

	// systemLogLevel is the least level of the platform's records that are
	// written: DEBUG, INFO (the default: platform.start and
	// platform.report) or WARN (none of them). JSON only.
	// +optional
	SystemLogLevel SystemLogLevel `json:"systemLogLevel,omitempty"`
}

// LogFormat is the format of a function's log.
// +kubebuilder:validation:Enum=Text;JSON
type LogFormat string

const (
	// LogFormatText is plain lines, as Lambda writes them by default.
	LogFormatText LogFormat = "Text"
	// LogFormatJSON is one JSON object a record.
	LogFormatJSON LogFormat = "JSON"
)

// ApplicationLogLevel is Lambda's application log level.
// +kubebuilder:validation:Enum=TRACE;DEBUG;INFO;WARN;ERROR;FATAL
type ApplicationLogLevel string

// SystemLogLevel is Lambda's system log level.
// +kubebuilder:validation:Enum=DEBUG;INFO;WARN
type SystemLogLevel string

// ScaleSpec bounds the number of pods.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="spec.scale.minReplicas must not be greater than spec.scale.maxReplicas"
type ScaleSpec struct {
	// minReplicas is the fewest pods; 0 lets the function scale to zero.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinReplicas int32 `json:"minReplicas"`

	// maxReplicas is the most pods.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxReplicas int32 `json:"maxReplicas,omitempty"`

	// scaleToZeroAfter is how long a function with minReplicas 0 keeps its
	// last pod without requests.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="spec.scale.scaleToZeroAfter must be between 10s and 24h"
	// +optional
	ScaleToZeroAfter *metav1.Duration `json:"scaleToZeroAfter,omitempty"`

	// targetConcurrency is the in-flight invocations per pod the autoscaler
	// aims for; by default spec.runtime.concurrency.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	TargetConcurrency *int32 `json:"targetConcurrency,omitempty"`
}

// EventFormat is the shape of the event an HTTP request becomes.
// +kubebuilder:validation:Enum=HTTPAPIv2;RESTv1;ALB;Raw
type EventFormat string

const (
	// EventFormatHTTPAPIv2 is API Gateway's HTTP API payload 2.0, also used
	// by Lambda function URLs.
	EventFormatHTTPAPIv2 EventFormat = "HTTPAPIv2"
	// EventFormatRESTv1 is API Gateway's REST API proxy payload 1.0.
	EventFormatRESTv1 EventFormat = "RESTv1"
	// EventFormatALB is an Application Load Balancer target event.
	EventFormatALB EventFormat = "ALB"
	// EventFormatRaw passes the request body through as the event.
	EventFormatRaw EventFormat = "Raw"
)

// HTTPSpec says how HTTP requests become events.
//
// +kubebuilder:validation:XValidation:rule="!has(self.multiValueHeaders) || !self.multiValueHeaders || self.eventFormat == 'ALB'",message="spec.http.multiValueHeaders applies to eventFormat ALB only (RESTv1 events always carry both forms; HTTPAPIv2 joins values with commas)"
type HTTPSpec struct {
	// eventFormat is the event shape HTTP requests become: HTTPAPIv2 (API
	// Gateway HTTP API 2.0 and function URLs), RESTv1, ALB or Raw.
	// +kubebuilder:default=HTTPAPIv2
	// +optional
	EventFormat EventFormat `json:"eventFormat,omitempty"`

	// multiValueHeaders, with eventFormat ALB, is the target group's
	// lambda.multi_value_headers.enabled: events carry every value of a
	// repeated header or query parameter in multiValueHeaders and
	// multiValueQueryStringParameters (and not headers and
	// queryStringParameters), and the function answers with
	// multiValueHeaders. Off, the default: the last value wins.
	// +optional
	MultiValueHeaders *bool `json:"multiValueHeaders,omitempty"`
}

// Condition types of a Function, read by kstatus, kubectl wait and Argo CD.
const (
	// ConditionReady is True when the function serves its current spec.
	ConditionReady = "Ready"
	// ConditionReconciling is present and True while the operator works
	// towards the spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is present and True when progress needs the user.
	ConditionStalled = "Stalled"
	// ConditionBuilt is about the latest build of a git source.
	ConditionBuilt = "Built"
	// ConditionDeployed is True when the Deployment has rolled out.
	ConditionDeployed = "Deployed"
)

// FunctionStatus is the observed state of a Function.
type FunctionStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready always; Reconciling and Stalled when true; Built
	// for git sources; Deployed.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// url is where HTTP requests reach the function through the activator.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`

	// image is the image the function runs.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Image string `json:"image,omitempty"`

	// commit is the git commit the running image was built from.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Commit string `json:"commit,omitempty"`

	// latestBuild is the most recent build of a git source: the Tekton
	// PipelineRun for the commit the revision resolves to, whether it is
	// running, succeeded or failed. status.image and status.commit change
	// only when a build succeeds.
	// +optional
	LatestBuild *BuildStatus `json:"latestBuild,omitempty"`

	// replicas is the number of pods the function has now.
	// +optional
	Replicas int32 `json:"replicas"`

	// readyReplicas is the number of those pods ready for invocations.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// desiredReplicas is the number of pods the autoscaler asked for.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`

	// pendingEvents is the number of accepted Event invocations (and
	// retries) in the event queue that have not ended yet.
	// +optional
	PendingEvents *int64 `json:"pendingEvents,omitempty"`

	// schedules says when each of spec.schedules last queued an Event and
	// when it will next.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Schedules []ScheduleStatus `json:"schedules,omitempty"`
}

// BuildStatus names one build of a git source.
type BuildStatus struct {
	// pipelineRun is the name of the Tekton PipelineRun, in the Function's
	// namespace: `tkn pipelinerun logs <name>` shows its logs.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PipelineRun string `json:"pipelineRun,omitempty"`

	// commit is the git commit it builds.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Commit string `json:"commit,omitempty"`

	// specHash identifies the build settings it was made for (its
	// lambdapod.io/build-spec label); a change to spec.build or to the
	// repository location makes a new build of the same commit.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SpecHash string `json:"specHash,omitempty"`
}

// +kubebuilder:object:root=true

// FunctionList is a list of Functions.
type FunctionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Function `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Function{}, &FunctionList{})
}

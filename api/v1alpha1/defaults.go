package v1alpha1

import "time"

// The API's defaults. The API server fills them in from the CRD's
// +kubebuilder:default markers; these functions give the same values for
// objects that bypassed defaulting (built in Go, or read from an older
// schema), so every binary reads a spec the same way. A test checks that the
// generated CRD and these constants agree.
const (
	DefaultRevision         = "main"
	DefaultPollInterval     = time.Minute
	DefaultBuildStrategy    = BuildStrategyDockerfile
	DefaultDockerfile       = "Dockerfile"
	DefaultBuildTimeout     = 10 * time.Minute
	DefaultMemoryMiB        = 128
	DefaultTimeout          = 30 * time.Second
	DefaultConcurrency      = 1
	DefaultMinReplicas      = 0
	DefaultMaxReplicas      = 10
	DefaultScaleToZeroAfter = 5 * time.Minute
	DefaultEventFormat      = EventFormatHTTPAPIv2
	DefaultAuthType         = AuthRBAC
	// DefaultEphemeralStorageMiB is Lambda's default /tmp.
	DefaultEphemeralStorageMiB = 512
	// DefaultLogFormat is Lambda's, and the only one with no levels.
	DefaultLogFormat = LogFormatText
	// DefaultApplicationLogLevel and DefaultSystemLogLevel are Lambda's
	// levels of a JSON log that sets none.
	DefaultApplicationLogLevel = ApplicationLogLevel("INFO")
	DefaultSystemLogLevel      = SystemLogLevel("INFO")
	// DefaultRunAsUser is the uid of Lambda's sbx_user1051, for images
	// whose user is root or a name.
	DefaultRunAsUser = 993
)

const mebibyte = 1 << 20

// RevisionOrDefault is the branch, tag or commit to build.
func (g *GitSource) RevisionOrDefault() string {
	if g.Revision == "" {
		return DefaultRevision
	}
	return g.Revision
}

// PollIntervalOrDefault is how often the revision is resolved again.
func (g *GitSource) PollIntervalOrDefault() time.Duration {
	if g.PollInterval != nil && g.PollInterval.Duration > 0 {
		return g.PollInterval.Duration
	}
	return DefaultPollInterval
}

// StrategyOrDefault is how the repository becomes an image.
func (b *BuildSpec) StrategyOrDefault() BuildStrategy {
	if b.Strategy == "" {
		return DefaultBuildStrategy
	}
	return b.Strategy
}

// DockerfileOrDefault is the Dockerfile's path in the context directory.
func (b *BuildSpec) DockerfileOrDefault() string {
	if b.Dockerfile == "" {
		return DefaultDockerfile
	}
	return b.Dockerfile
}

// TimeoutOrDefault bounds one build.
func (b *BuildSpec) TimeoutOrDefault() time.Duration {
	if b.Timeout != nil && b.Timeout.Duration > 0 {
		return b.Timeout.Duration
	}
	return DefaultBuildTimeout
}

// MemoryMiB is the function's memory in MiB.
func (r *RuntimeSpec) MemoryMiB() int64 {
	if r.Memory == nil || r.Memory.IsZero() {
		return DefaultMemoryMiB
	}
	return r.Memory.Value() / mebibyte
}

// TimeoutOrDefault bounds one invocation.
func (r *RuntimeSpec) TimeoutOrDefault() time.Duration {
	if r.Timeout != nil && r.Timeout.Duration > 0 {
		return r.Timeout.Duration
	}
	return DefaultTimeout
}

// ConcurrencyOrDefault is the most invocations one pod runs at once.
func (r *RuntimeSpec) ConcurrencyOrDefault() int32 {
	if r.Concurrency < 1 {
		return DefaultConcurrency
	}
	return r.Concurrency
}

// MaxReplicasOrDefault is the most pods.
func (s *ScaleSpec) MaxReplicasOrDefault() int32 {
	if s.MaxReplicas < 1 {
		return DefaultMaxReplicas
	}
	return s.MaxReplicas
}

// ScaleToZeroAfterOrDefault is how long the last pod stays without requests.
func (s *ScaleSpec) ScaleToZeroAfterOrDefault() time.Duration {
	if s.ScaleToZeroAfter != nil && s.ScaleToZeroAfter.Duration > 0 {
		return s.ScaleToZeroAfter.Duration
	}
	return DefaultScaleToZeroAfter
}

// TargetConcurrency is the in-flight invocations per pod the autoscaler
// aims for: spec.scale.targetConcurrency, else spec.runtime.concurrency.
func (spec *FunctionSpec) TargetConcurrency() int32 {
	if t := spec.Scale.TargetConcurrency; t != nil && *t > 0 {
		return *t
	}
	return spec.Runtime.ConcurrencyOrDefault()
}

// EventFormatOrDefault is the event shape HTTP requests become.
func (h *HTTPSpec) EventFormatOrDefault() EventFormat {
	if h.EventFormat == "" {
		return DefaultEventFormat
	}
	return h.EventFormat
}

// AuthTypeOrDefault says who may invoke the function.
func (spec *FunctionSpec) AuthTypeOrDefault() AuthType {
	if spec.AuthType == "" {
		return DefaultAuthType
	}
	return spec.AuthType
}

// EphemeralStorageMiB bounds the function's writable storage, in MiB.
func (r *RuntimeSpec) EphemeralStorageMiB() int64 {
	if r.EphemeralStorage == nil || r.EphemeralStorage.IsZero() {
		return DefaultEphemeralStorageMiB
	}
	return r.EphemeralStorage.Value() / mebibyte
}

// Lambda's asynchronous invocation defaults.
const (
	DefaultMaximumRetryAttempts = 2
	DefaultMaximumEventAge      = 6 * time.Hour
)

// MaximumRetryAttemptsOrDefault is spec.async.maximumRetryAttempts, or 2.
func (s *FunctionSpec) MaximumRetryAttemptsOrDefault() int {
	if s.Async != nil && s.Async.MaximumRetryAttempts != nil {
		return int(*s.Async.MaximumRetryAttempts)
	}
	return DefaultMaximumRetryAttempts
}

// MaximumEventAgeOrDefault is spec.async.maximumEventAge, or 6h.
func (s *FunctionSpec) MaximumEventAgeOrDefault() time.Duration {
	if s.Async != nil && s.Async.MaximumEventAge != nil && s.Async.MaximumEventAge.Duration > 0 {
		return s.Async.MaximumEventAge.Duration
	}
	return DefaultMaximumEventAge
}

// LogFormatOrDefault is the format of the function's log.
func (r *RuntimeSpec) LogFormatOrDefault() LogFormat {
	if r.Logging == nil || r.Logging.Format == "" {
		return DefaultLogFormat
	}
	return r.Logging.Format
}

// ApplicationLogLevelOrDefault is the least level of the function's records
// in a JSON log.
func (r *RuntimeSpec) ApplicationLogLevelOrDefault() ApplicationLogLevel {
	if r.Logging == nil || r.Logging.ApplicationLogLevel == "" {
		return DefaultApplicationLogLevel
	}
	return r.Logging.ApplicationLogLevel
}

// SystemLogLevelOrDefault is the least level of the platform's records in a
// JSON log.
func (r *RuntimeSpec) SystemLogLevelOrDefault() SystemLogLevel {
	if r.Logging == nil || r.Logging.SystemLogLevel == "" {
		return DefaultSystemLogLevel
	}
	return r.Logging.SystemLogLevel
}

// Package resources builds the objects the Function controller owns, as
// server-side apply configurations. The builders are pure: the same Function
// and Config always give the same objects, so golden files pin them down.
package resources

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

const (
	sharedVolume = "lambdapod"
	// drainGrace is added to the function timeout for the pod's grace
	// period: the sidecar finishes an invocation that just started, then
	// stops the bootstrap (SIGTERM, SIGKILL after 2s).
	drainGrace = 10 * time.Second
)

// Config is the operator-wide configuration the builders need.
type Config struct {
	// SidecarImage holds /runtime-sidecar and /supervisor.
	SidecarImage string
	// Region is AWS_REGION as the function sees it, and the region in ARNs.
	Region string
	// ActivatorURL is the activator's external base URL, for path routing:
	// a function's URL is ActivatorURL/<namespace>/<name>/.
	ActivatorURL string
	// Domain, when set, selects host routing: <DomainScheme>://<name>.<namespace>.<Domain>/.
	Domain string
	// DomainScheme is the scheme of host-routed URLs: "https" when the
	// Ingress in front of the activator terminates TLS ("http" if empty).
	DomainScheme string
	// InvokeKey, when set, is the activators' public key (package
	// invoketoken, base64): sidecars then take invocations only with a
	// token the activators signed for their function.
	InvokeKey string
	// Ingress, when set, gives every Function a NetworkPolicy that admits
	// to its pods only the activators.
	Ingress *IngressPolicy
}

// IngressPolicy says where the activators run.
type IngressPolicy struct {
	// ActivatorNamespace is the namespace of the activators' pods.
	ActivatorNamespace string
	// ActivatorLabels select the activators' pods there.
	ActivatorLabels map[string]string
}

// Labels are on every object made for the function, and select its pods.
func Labels(fn *lambdapodv1alpha1.Function) map[string]string {
	return map[string]string{contract.LabelManagedBy: contract.ManagedByValue, contract.LabelFunction: fn.Name}
}

func selector(fn *lambdapodv1alpha1.Function) map[string]string {
	return map[string]string{contract.LabelFunction: fn.Name}
}

// URL is where the activator serves the function.
func URL(cfg Config, fn *lambdapodv1alpha1.Function) string {
	if cfg.Domain != "" {
		scheme := cfg.DomainScheme
		if scheme == "" {
			scheme = "http"
		}
		return fmt.Sprintf("%s://%s.%s.%s/", scheme, fn.Name, fn.Namespace, cfg.Domain)
	}
	return fmt.Sprintf("%s/%s/%s/", strings.TrimSuffix(cfg.ActivatorURL, "/"), fn.Namespace, fn.Name)
}

// Service is headless: the activator reads its EndpointSlices and sends
// each request to a chosen pod, so no cluster IP or kube-proxy rule is
// needed.
func Service(fn *lambdapodv1alpha1.Function) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(fn.Name, fn.Namespace).
		WithLabels(Labels(fn)).
		WithOwnerReferences(ownerReference(fn)).
		WithSpec(corev1ac.ServiceSpec().
			WithClusterIP(corev1.ClusterIPNone).
			WithSelector(selector(fn)).
			WithPorts(corev1ac.ServicePort().
				WithName(contract.InvokePortName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(contract.InvokePort).
				WithTargetPort(intstr.FromString(contract.InvokePortName))))
}

// NetworkPolicy admits to the function's pods only the activators, and only
// on the sidecar's port: the function container listens on nothing, and
// nothing else in the cluster may reach the sidecar past the activators'
// limits and authorisation. The kubelet's probes come from the node, which
// NetworkPolicies do not restrict; Prometheus, to scrape the sidecars'
// /metrics, needs a policy of its own (policies add up).
func NetworkPolicy(cfg Config, fn *lambdapodv1alpha1.Function) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkingv1ac.NetworkPolicy(fn.Name, fn.Namespace).
		WithLabels(Labels(fn)).
		WithOwnerReferences(ownerReference(fn)).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selector(fn))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().
					WithNamespaceSelector(metav1ac.LabelSelector().
						WithMatchLabels(map[string]string{corev1.LabelMetadataName: cfg.Ingress.ActivatorNamespace})).
					WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(cfg.Ingress.ActivatorLabels))).
				WithPorts(networkingv1ac.NetworkPolicyPort().
					WithProtocol(corev1.ProtocolTCP).
					WithPort(intstr.FromInt32(contract.InvokePort)))))
}

// ImageRun is what a function's pod needs to know of its image.
type ImageRun struct {
	// Bootstrap is what the supervisor starts: spec.runtime.command, else
	// the image's ENTRYPOINT and CMD; empty, it looks where Lambda does.
	Bootstrap []string
	// Supervisor is where the image carries the supervisor (its
	// contract.SupervisorLabel); empty, the runtime sidecar installs it in a volume
	// shared with the function container.
	Supervisor string
	// User is the image config's USER ("", "name", "uid", "uid:gid",
	// ...), from which a confined function takes its uid when
	// spec.runtime.runAsUser is not set; empty when unknown.
	User string
}

// Deployment runs image under the supervisor, with the runtime sidecar
// beside it. replicas is set only when the Deployment is created; after
// that the autoscaler owns the field.
func Deployment(cfg Config, fn *lambdapodv1alpha1.Function, image string, run ImageRun, replicas *int32) *appsv1ac.DeploymentApplyConfiguration {
	timeout := fn.Spec.Runtime.TimeoutOrDefault()
	grace := int64(math.Ceil((timeout + drainGrace).Seconds()))

	function := corev1ac.Container().
		WithName(contract.FunctionContainer).
		WithImage(image).
		WithArgs(supervisorArgs(run.Bootstrap)...).
		WithEnv(functionEnv(cfg, fn)...).
		WithResources(functionResources(&fn.Spec.Runtime))
	if !fn.Spec.Runtime.RunAsRoot {
		function.WithSecurityContext(confined(&fn.Spec.Runtime, run.User))
	}
	sidecar := sidecar(cfg, fn)
	// (With* on the pod copies a container: both are finished first.)
	pod := corev1ac.PodSpec().
		WithEnableServiceLinks(false).
		WithAutomountServiceAccountToken(false).
		WithTerminationGracePeriodSeconds(grace).
		// Extensions written for Lambda listen on and send to
		// sandbox.localdomain:PORT (the Telemetry and Logs APIs'
		// destinations, and one extension reaching another), a name that
		// only Lambda's sandbox resolves: here every container of the pod
		// shares its network namespace, so the name is the pod itself.
		WithHostAliases(corev1ac.HostAlias().WithIP("127.0.0.1").WithHostnames(contract.SandboxHost))
	if run.Supervisor != "" {
		// No volume at all: a pod with one waits for the kubelet's next
		// check that it is mounted (every 300 ms) before its sandbox is
		// made.
		function.WithCommand(run.Supervisor)
	} else {
		shared := corev1ac.VolumeMount().WithName(sharedVolume).WithMountPath(contract.SharedDir)
		pod.WithVolumes(corev1ac.Volume().
			WithName(sharedVolume).
			WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resource.MustParse("64Mi"))))
		function.WithCommand(contract.SupervisorPath).WithVolumeMounts(shared)
		// The supervisor binary crosses to the function container here,
		// not in an init container of its own: the kubelet notices that an
		// init container has exited only at its next relist of the
		// containers (every second), which a cold start waited for (0.45 s
		// on average). A postStart hook runs before the kubelet starts the
		// next container, in the same pass.
		sidecar.WithVolumeMounts(shared).
			WithLifecycle(corev1ac.Lifecycle().
				WithPostStart(corev1ac.LifecycleHandler().
					WithExec(corev1ac.ExecAction().WithCommand("/supervisor", "install", contract.SupervisorPath))))
	}
	pod.WithInitContainers(sidecar).WithContainers(function)

	spec := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector(fn))).
		WithRevisionHistoryLimit(3).
		// A new pod is ready before an old one goes, so a spec change never
		// leaves the function with fewer pods than it had.
		WithStrategy(appsv1ac.DeploymentStrategy().
			WithType(appsv1.RollingUpdateDeploymentStrategyType).
			WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
				WithMaxUnavailable(intstr.FromInt32(0)).
				WithMaxSurge(intstr.FromString("25%")))).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(Labels(fn)).
			WithSpec(pod))
	if replicas != nil {
		spec.WithReplicas(*replicas)
	}
	return appsv1ac.Deployment(fn.Name, fn.Namespace).
		WithLabels(Labels(fn)).
		WithOwnerReferences(ownerReference(fn)).
		WithSpec(spec)
}

// sidecar is a native sidecar: an init container that keeps running, so it
// serves the Runtime API before the bootstrap starts and stops after it.
func sidecar(cfg Config, fn *lambdapodv1alpha1.Function) *corev1ac.ContainerApplyConfiguration {
	probe := func(path string, period, failures int32) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString(contract.InvokePortName))).
			WithPeriodSeconds(period).
			WithFailureThreshold(failures)
	}
	return corev1ac.Container().
		WithName(contract.SidecarContainer).
		WithImage(cfg.SidecarImage).
		WithRestartPolicy(corev1.ContainerRestartPolicyAlways).
		WithPorts(corev1ac.ContainerPort().
			WithName(contract.InvokePortName).
			WithContainerPort(contract.InvokePort).
			WithProtocol(corev1.ProtocolTCP)).
		WithEnv(
			env(contract.EnvRuntimeAPI, contract.RuntimeAPIAddr),
			env(contract.EnvInvokeAddr, ":"+strconv.Itoa(contract.InvokePort)),
			env(contract.EnvControlSocket, contract.ControlSocket),
			env(contract.EnvTimeout, fn.Spec.Runtime.TimeoutOrDefault().String()),
			env(contract.EnvConcurrency, strconv.Itoa(int(fn.Spec.Runtime.ConcurrencyOrDefault()))),
			// The pod admits no more than its concurrency, whichever
			// activator sends: the others hold what does not fit.
			env(contract.EnvMaxInFlight, strconv.Itoa(int(fn.Spec.Runtime.ConcurrencyOrDefault()))),
			env(contract.EnvFunctionName, fn.Name),
			env(contract.EnvFunctionVersion, invokeapi.LatestVersion),
			env(contract.EnvMemorySize, strconv.FormatInt(fn.Spec.Runtime.MemoryMiB(), 10)),
			env(contract.EnvRegion, region(cfg, fn)),
			env("GOMAXPROCS", strconv.FormatInt(SidecarProcs(fn.Spec.Runtime.MemoryMiB()), 10)),
		).
		WithEnv(invokeKeyEnv(cfg, fn)...).
		WithEnv(sidecarLoggingEnv(&fn.Spec.Runtime)...).
		// Ready only once every bootstrap has asked for its first event;
		// probed every second because the activator holds requests until
		// then.
		WithReadinessProbe(probe("/readyz", 1, 2)).
		WithLivenessProbe(probe("/healthz", 10, 3)).
		WithResources(sidecarResources(fn.Spec.Runtime.ConcurrencyOrDefault())).
		WithSecurityContext(restricted())
}

// SidecarProcs is the sidecar's GOMAXPROCS for a function of memoryMiB:
// as many as the function's vCPUs, at least one. The sidecar's work is
// short hand-offs between the caller's connection and a bootstrap's;
// run on one thread they cost no wake-up of another, which cut its CPU
// per invocation by about a sixth in make bench-sidecar, while a function
// of several vCPUs, which can run more invocations at once, gets as many
// threads to move them. (Go would otherwise run one per node CPU: the
// sidecar has no CPU limit to read.)
func SidecarProcs(memoryMiB int64) int64 {
	return max(1, (CPUMillis(memoryMiB)+999)/1000)
}

// invokeKeyEnv gives the sidecar the activators' public key: plain values,
// as a public key is no secret, and a secret reference or a volume would
// cost every pod a lookup and every cold start the kubelet's volume wait.
func invokeKeyEnv(cfg Config, fn *lambdapodv1alpha1.Function) []*corev1ac.EnvVarApplyConfiguration {
	if cfg.InvokeKey == "" {
		return nil
	}
	return []*corev1ac.EnvVarApplyConfiguration{
		env(contract.EnvInvokeKey, cfg.InvokeKey),
		env(contract.EnvFunctionNamespace, fn.Namespace),
	}
}

// functionEnv is the Lambda execution environment: what
// aws-lambda-go, Amazon.Lambda.RuntimeSupport, the Rust runtime and a
// bash+curl bootstrap read, then the user's variables, which may replace
// the unreserved ones (AWS_REGION, TZ, LANG...).
func functionEnv(cfg Config, fn *lambdapodv1alpha1.Function) []*corev1ac.EnvVarApplyConfiguration {
	vars := []*corev1ac.EnvVarApplyConfiguration{
		env("AWS_LAMBDA_RUNTIME_API", contract.RuntimeAPIAddr),
		env(contract.EnvFunctionName, fn.Name),
		env(contract.EnvFunctionVersion, invokeapi.LatestVersion),
		env(contract.EnvMemorySize, strconv.FormatInt(fn.Spec.Runtime.MemoryMiB(), 10)),
		env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
		env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/"+fn.Name),
		corev1ac.EnvVar().WithName("AWS_LAMBDA_LOG_STREAM_NAME").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name"))),
		env(contract.EnvRegion, cfg.Region),
		env(contract.EnvDefaultRegion, cfg.Region),
		env("LAMBDA_TASK_ROOT", "/var/task"),
		env("LAMBDA_RUNTIME_DIR", "/var/runtime"),
		env("TZ", ":UTC"),
		env("LANG", "en_US.UTF-8"),
		env(contract.EnvControlSocket, contract.ControlSocket),
		env(contract.EnvConcurrency, strconv.Itoa(int(fn.Spec.Runtime.ConcurrencyOrDefault()))),
	}
	if fn.Spec.Runtime.Handler != "" {
		vars = append(vars, env(contract.EnvHandler, fn.Spec.Runtime.Handler))
	}
	vars = append(vars, loggingEnv(&fn.Spec.Runtime)...)
	index := make(map[string]int, len(vars))
	for i, v := range vars {
		index[*v.Name] = i
	}
	for _, e := range fn.Spec.Runtime.Env {
		v := envVar(e)
		if i, ok := index[e.Name]; ok {
			vars[i] = v
			continue
		}
		index[e.Name] = len(vars)
		vars = append(vars, v)
	}
	return vars
}

// loggingEnv is spec.runtime.logging for the function container. With JSON,
// Lambda gives the runtime AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL,
// which runtime libraries read to write JSON records and drop those below
// the level; the supervisor, which writes the platform's records, reads the
// format and LAMBDAPOD_SYSTEM_LOG_LEVEL (kept from the bootstrap, like every
// LAMBDAPOD_ variable). With Text, Lambda sets none of them, and a Function
// that says nothing of logging keeps the pods it had.
func loggingEnv(rt *lambdapodv1alpha1.RuntimeSpec) []*corev1ac.EnvVarApplyConfiguration {
	if rt.LogFormatOrDefault() != lambdapodv1alpha1.LogFormatJSON {
		return nil
	}
	return []*corev1ac.EnvVarApplyConfiguration{
		env(contract.EnvLogFormat, string(lambdapodv1alpha1.LogFormatJSON)),
		env(contract.EnvLogLevel, string(rt.ApplicationLogLevelOrDefault())),
		env(contract.EnvSystemLogLevel, string(rt.SystemLogLevelOrDefault())),
	}
}

// sidecarLoggingEnv gives the sidecar the function's log format with JSON:
// it serves the function's log lines to Telemetry and Logs API subscribers,
// and in JSON a line that is a JSON object goes to them as that object, as
// on Lambda. The platform's records and their level are the supervisor's.
func sidecarLoggingEnv(rt *lambdapodv1alpha1.RuntimeSpec) []*corev1ac.EnvVarApplyConfiguration {
	if rt.LogFormatOrDefault() != lambdapodv1alpha1.LogFormatJSON {
		return nil
	}
	return []*corev1ac.EnvVarApplyConfiguration{env(contract.EnvLogFormat, string(lambdapodv1alpha1.LogFormatJSON))}
}

// region is the function's AWS_REGION: the user's, if spec.runtime.env sets
// it, so the ARNs the sidecar hands the bootstrap agree with it.
func region(cfg Config, fn *lambdapodv1alpha1.Function) string {
	for _, e := range fn.Spec.Runtime.Env {
		if e.Name == contract.EnvRegion && e.Value != "" {
			return e.Value
		}
	}
	return cfg.Region
}

func supervisorArgs(bootstrap []string) []string {
	if len(bootstrap) == 0 {
		return nil
	}
	return append([]string{"--"}, bootstrap...)
}

func env(name, value string) *corev1ac.EnvVarApplyConfiguration {
	return corev1ac.EnvVar().WithName(name).WithValue(value)
}

// envVar converts a user's EnvVar, with its valueFrom sources, through
// JSON: the apply configuration has the same shape.
func envVar(e corev1.EnvVar) *corev1ac.EnvVarApplyConfiguration {
	out := &corev1ac.EnvVarApplyConfiguration{}
	b, err := json.Marshal(e)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		// Both shapes come from the same API types; this cannot fail.
		panic(fmt.Sprintf("converting env var %q: %v", e.Name, err))
	}
	return out
}

// sidecarResources: the sidecar holds, for each slot it admits, at most a
// request payload and a buffered response (6 MiB each, as on Lambda), so
// its memory limit grows with the concurrency instead of letting a pod of
// many slots be killed for doing its job. The request stays small: most
// invocations are far below the limits.
func sidecarResources(concurrency int32) *corev1ac.ResourceRequirementsApplyConfiguration {
	const base, perSlot = 112 << 20, 16 << 20
	return corev1ac.ResourceRequirements().
		WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		}).
		WithLimits(corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(base+int64(concurrency)*perSlot, resource.BinarySI)})
}

// Lambda gives a function one vCPU at 1,769 MB of memory and CPU in
// proportion below and above that. Lambda's "MB" are the MiB of the memory
// setting (its 128 MB function has AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 and
// 128 MiB), so spec.runtime.memory in MiB is the number Lambda's figure is
// about.
const (
	vcpuMemoryMiB = 1769
	// ephemeralRequest is what the scheduler reserves of the node's disk
	// for the function container: its logs and a little /tmp, not
	// spec.runtime.ephemeralStorage, which bounds what it may write. Most
	// functions write little, and reserving the whole of it (512Mi by
	// default, up to 10Gi) would fill a node's disk with reservations long
	// before its pods fill it with files; under disk pressure the kubelet
	// evicts first the pods that use more than they requested.
	ephemeralRequest = 64 << 20
)

// CPUMillis is the CPU request of a function of memoryMiB: one vCPU at
// 1,769 MiB, as Lambda allocates it, rounded up to the millicore.
func CPUMillis(memoryMiB int64) int64 {
	return (memoryMiB*1000 + vcpuMemoryMiB - 1) / vcpuMemoryMiB
}

// functionResources: memory requested and limited at spec.runtime.memory,
// as on Lambda, where it is the function's whole memory. CPU is requested
// in proportion to the memory (CPUMillis) and not limited: a CFS quota
// throttles a function for the rest of each 100 ms period once it has used
// its share, which adds tail latency to invocations that burst (a cold
// start's init, above all), while a request alone gives it its share of a
// busy node, as Lambda's proportional CPU does, and whatever is idle on a
// quiet one. Ephemeral storage is limited at spec.runtime.ephemeralStorage,
// Lambda's /tmp size; a container that writes more (its writable layer and
// logs) is evicted by the kubelet.
func functionResources(rt *lambdapodv1alpha1.RuntimeSpec) *corev1ac.ResourceRequirementsApplyConfiguration {
	memory := *resource.NewQuantity(rt.MemoryMiB()<<20, resource.BinarySI)
	return corev1ac.ResourceRequirements().
		WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:              *resource.NewMilliQuantity(CPUMillis(rt.MemoryMiB()), resource.DecimalSI),
			corev1.ResourceMemory:           memory,
			corev1.ResourceEphemeralStorage: *resource.NewQuantity(min(ephemeralRequest, rt.EphemeralStorageMiB()<<20), resource.BinarySI),
		}).
		WithLimits(corev1.ResourceList{
			corev1.ResourceMemory:           memory,
			corev1.ResourceEphemeralStorage: *resource.NewQuantity(rt.EphemeralStorageMiB()<<20, resource.BinarySI),
		})
}

// confined is the function container's security context: the restricted
// Pod Security Standard, without readOnlyRootFilesystem (functions write
// to /tmp and elsewhere, as on Lambda), as the uid and gid RunAs says.
func confined(rt *lambdapodv1alpha1.RuntimeSpec, imageUser string) *corev1ac.SecurityContextApplyConfiguration {
	uid, gid := RunAs(rt, imageUser)
	sc := corev1ac.SecurityContext().
		WithRunAsNonRoot(true).
		WithRunAsUser(uid)
	if gid != nil {
		sc.WithRunAsGroup(*gid)
	}
	return sc.
		WithAllowPrivilegeEscalation(false).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
}

// maxID is the largest uid or gid a pod may name.
const maxID = math.MaxInt32

// RunAs is the uid and, if one is set, the gid a confined function runs
// as, given its image's USER:
//
//   - spec.runtime.runAsUser, without a gid: the container runtime takes
//     the uid's group from the image's /etc/passwd, else 0, as for any
//     pod's runAsUser.
//   - else the image's uid, when its USER is a number other than 0
//     ("1000", "1000:1000", "1000:staff"), with the image's gid when that
//     is a number too: what the image runs as. It is set even so: without
//     runAsUser the kubelet's runAsNonRoot check relies on the container
//     runtime reading the image's USER as a uid, for every form of it.
//   - else (root, a user name, no USER, or an image whose config could not
//     be read) uid and gid DefaultRunAsUser, 993, Lambda's sbx_user1051. A
//     user name would need the image's /etc/passwd to become a uid, which
//     the kubelet cannot check as non-root. The gid is set because the
//     runtime would otherwise run a uid that /etc/passwd does not know
//     with gid 0, giving the function whatever the image lets group root
//     write; a group of its own, as useradd makes, gives it nothing more
//     than what every user may.
func RunAs(rt *lambdapodv1alpha1.RuntimeSpec, imageUser string) (uid int64, gid *int64) {
	if rt.RunAsUser != nil {
		return *rt.RunAsUser, nil
	}
	user, group, hasGroup := strings.Cut(strings.TrimSpace(imageUser), ":")
	if u, err := strconv.ParseInt(user, 10, 64); err == nil && u > 0 && u <= maxID {
		if g, err := strconv.ParseInt(group, 10, 64); hasGroup && err == nil && g >= 0 && g <= maxID {
			return u, &g
		}
		return u, nil
	}
	def := int64(lambdapodv1alpha1.DefaultRunAsUser)
	return def, &def
}

// restricted passes the restricted Pod Security Standard, and keeps the
// sidecar's file system read-only; the function's container is confined
// too (confined), unless spec.runtime.runAsRoot opts out.
func restricted() *corev1ac.SecurityContextApplyConfiguration {
	return corev1ac.SecurityContext().
		WithRunAsNonRoot(true).
		WithRunAsUser(65532).
		WithAllowPrivilegeEscalation(false).
		WithReadOnlyRootFilesystem(true).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
}

func ownerReference(fn *lambdapodv1alpha1.Function) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(lambdapodv1alpha1.GroupVersion.String()).
		WithKind("Function").
		WithName(fn.Name).
		WithUID(fn.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

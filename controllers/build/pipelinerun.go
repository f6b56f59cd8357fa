package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"strings"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// Names in the generated pipeline: one task, whose steps share the pod's
// /workspace, so no PersistentVolumeClaim is needed.
const (
	TaskName          = "build"
	ResultImageDigest = "IMAGE_DIGEST"
	ResultImageURL    = "IMAGE_URL"
	ResultCommit      = "COMMIT"

	StepClone   = "clone"
	StepBuild   = "build"
	StepPush    = "push"
	StepCompile = "compile"
	StepImage   = "image"
	// StepSupervisor adds the helper's supervisor to the image a
	// Dockerfile build pushed.
	StepSupervisor = "supervisor"

	ParamURL      = "url"
	ParamRevision = "revision"
	ParamCommit   = "commit"
	ParamImage    = "image"

	sourceDir      = "/workspace/source"
	bootstrapPath  = "/workspace/bootstrap"
	credentialsDir = "/workspace/git-credentials"
	credentialsVol = "git-credentials"
	buildahVol     = "buildah-storage"
	// dockerConfig is where Tekton's credential initialisation writes the
	// docker config.json of the build ServiceAccount's secrets.
	dockerConfig = "/tekton/creds/.docker"
	// helperBinary is the manager binary in the helper image.
	helperBinary = "/manager"
	// helperSupervisor is the supervisor binary in the helper image (the
	// manager's image holds it as the runtime sidecar's does), which the Go
	// strategy's image step, and the Dockerfile strategy's supervisor step,
	// copy into the image at contract.SupervisorPath and label
	// contract.SupervisorLabel, so that the function's pods need no volume
	// to receive it. A custom helperImage must hold it too.
	helperSupervisor = "/supervisor"
	// TaskBootstrap is where the Go strategy puts the bootstrap, as Lambda
	// does for a custom runtime in a container image.
	TaskBootstrap = "/var/task/bootstrap"
)

// SpecHash identifies what a build makes of a commit: the source location
// and spec.build. The revision is not in it: a revision that moves to a new
// commit changes the commit instead.
func SpecHash(fn *lambdapodv1alpha1.Function) string {
	g := fn.Spec.Source.Git
	in := struct {
		URL, ContextDir, Secret string
		Build                   *lambdapodv1alpha1.BuildSpec
	}{Build: fn.Spec.Build}
	if g != nil {
		in.URL, in.ContextDir = g.URL, g.ContextDir
		if g.SecretRef != nil {
			in.Secret = g.SecretRef.Name
		}
	}
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// Tag is the image reference a build pushes: the repository tagged with
// the commit.
func Tag(fn *lambdapodv1alpha1.Function, commit string) string {
	return fn.Spec.Build.Image + ":" + commit
}

// MakePipelineRun builds commit of fn's git source with its build strategy.
// The run has a generated name, is controlled by fn, is labelled back to it
// and carries its whole pipeline inline, so nothing but Tekton Pipelines
// needs to be installed.
func MakePipelineRun(cfg Config, fn *lambdapodv1alpha1.Function, commit, revision string) *tektonv1.PipelineRun {
	git := fn.Spec.Source.Git
	contextDir := path.Join(sourceDir, git.ContextDir)

	var steps []tektonv1.Step
	steps = append(steps, cloneStep(cfg, fn))
	var volumes []corev1.Volume
	if git.SecretRef != nil {
		volumes = append(volumes, corev1.Volume{Name: credentialsVol, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: git.SecretRef.Name},
		}})
	}
	switch fn.Spec.Build.StrategyOrDefault() {
	case lambdapodv1alpha1.BuildStrategyGo:
		steps = append(steps, goSteps(cfg, fn, commit, contextDir)...)
	default:
		if cfg.DockerfileBuilder == BuilderBuildah {
			steps = append(steps, buildahSteps(cfg, fn, commit, contextDir)...)
			volumes = append(volumes, corev1.Volume{Name: buildahVol, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		} else {
			steps = append(steps, kanikoStep(cfg, fn, commit, contextDir))
		}
		steps = append(steps, supervisorStep(cfg, fn))
	}

	params := []string{ParamURL, ParamRevision, ParamCommit, ParamImage}
	descriptions := map[string]string{
		ParamURL:      "the git repository",
		ParamRevision: "the branch, tag or commit the Function names",
		ParamCommit:   "the commit the revision resolved to, which is built",
		ParamImage:    "the image reference pushed: the repository tagged with the commit",
	}
	var specs tektonv1.ParamSpecs
	var taskParams, runParams tektonv1.Params
	for _, p := range params {
		specs = append(specs, tektonv1.ParamSpec{Name: p, Type: tektonv1.ParamTypeString, Description: descriptions[p]})
		taskParams = append(taskParams, tektonv1.Param{Name: p, Value: *tektonv1.NewStructuredValues("$(params." + p + ")")})
	}
	values := map[string]string{ParamURL: git.URL, ParamRevision: revision, ParamCommit: commit, ParamImage: Tag(fn, commit)}
	for _, p := range params {
		runParams = append(runParams, tektonv1.Param{Name: p, Value: *tektonv1.NewStructuredValues(values[p])})
	}

	results := []tektonv1.TaskResult{
		{Name: ResultImageDigest, Type: tektonv1.ResultsTypeString, Description: "the digest of the pushed image, sha256:..."},
		{Name: ResultImageURL, Type: tektonv1.ResultsTypeString, Description: "the image reference pushed, without digest"},
		{Name: ResultCommit, Type: tektonv1.ResultsTypeString, Description: "the commit checked out"},
	}
	var pipelineResults []tektonv1.PipelineResult
	for _, r := range results {
		pipelineResults = append(pipelineResults, tektonv1.PipelineResult{
			Name: r.Name, Type: tektonv1.ResultsTypeString, Description: r.Description,
			Value: *tektonv1.NewStructuredValues("$(tasks." + TaskName + ".results." + r.Name + ")"),
		})
	}

	timeout := metav1.Duration{Duration: fn.Spec.Build.TimeoutOrDefault()}
	pr := &tektonv1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: tektonv1.SchemeGroupVersion.String(), Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: fn.Name + "-build-",
			Namespace:    fn.Namespace,
			Labels: map[string]string{
				contract.LabelManagedBy: contract.ManagedByValue,
				contract.LabelFunction:  fn.Name,
				contract.LabelCommit:    commit,
				contract.LabelBuildSpec: SpecHash(fn),
			},
			Annotations: map[string]string{contract.AnnotationRevision: revision},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: lambdapodv1alpha1.GroupVersion.String(), Kind: "Function",
				Name: fn.Name, UID: fn.UID, Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		Spec: tektonv1.PipelineRunSpec{
			Params:   runParams,
			Timeouts: &tektonv1.TimeoutFields{Pipeline: &timeout},
			PipelineSpec: &tektonv1.PipelineSpec{
				Description: "lambdapod: build " + string(fn.Spec.Build.StrategyOrDefault()) + " function " + fn.Namespace + "/" + fn.Name,
				Params:      specs,
				Results:     pipelineResults,
				Tasks: []tektonv1.PipelineTask{{
					Name:   TaskName,
					Params: taskParams,
					TaskSpec: &tektonv1.EmbeddedTask{TaskSpec: tektonv1.TaskSpec{
						Params:  specs,
						Results: results,
						Steps:   steps,
						Volumes: volumes,
					}},
				}},
			},
		},
	}
	if sa := fn.Spec.Build.ServiceAccountName; sa != "" {
		pr.Spec.TaskRunTemplate.ServiceAccountName = sa
	}
	return pr
}

// cloneStep checks the commit out with the helper, which also reports the
// commit and the image reference as results.
func cloneStep(cfg Config, fn *lambdapodv1alpha1.Function) tektonv1.Step {
	args := []string{
		"build-step", "clone",
		"--url=$(params." + ParamURL + ")",
		"--revision=$(params." + ParamRevision + ")",
		"--commit=$(params." + ParamCommit + ")",
		"--dir=" + sourceDir,
		"--commit-file=$(results." + ResultCommit + ".path)",
		"--image=$(params." + ParamImage + ")",
		"--image-file=$(results." + ResultImageURL + ".path)",
	}
	s := tektonv1.Step{Name: StepClone, Image: cfg.HelperImage, Command: []string{helperBinary}}
	if fn.Spec.Source.Git.SecretRef != nil {
		args = append(args, "--credentials="+credentialsDir)
		s.VolumeMounts = []corev1.VolumeMount{{Name: credentialsVol, MountPath: credentialsDir, ReadOnly: true}}
	}
	s.Args = args
	return s
}

func ociLabels(fn *lambdapodv1alpha1.Function, commit string) []string {
	return []string{
		"org.opencontainers.image.source=" + fn.Spec.Source.Git.URL,
		"org.opencontainers.image.revision=" + commit,
	}
}

// kanikoStep builds and pushes the Dockerfile with kaniko, which writes the
// digest it pushed to the result file itself.
func kanikoStep(cfg Config, fn *lambdapodv1alpha1.Function, commit, contextDir string) tektonv1.Step {
	args := []string{
		"--dockerfile=" + path.Join(contextDir, fn.Spec.Build.DockerfileOrDefault()),
		"--context=dir://" + contextDir,
		"--destination=$(params." + ParamImage + ")",
		"--digest-file=$(results." + ResultImageDigest + ".path)",
		"--ignore-path=/workspace",
	}
	for _, l := range ociLabels(fn, commit) {
		args = append(args, "--label="+l)
	}
	// Every registry the operator named insecure, not just the
	// destination's: the Dockerfile's FROM may pull from any of them.
	for _, r := range cfg.InsecureRegistries {
		args = append(args, "--insecure-registry="+r)
	}
	return tektonv1.Step{
		Name: StepBuild, Image: cfg.KanikoImage,
		Command: []string{"/kaniko/executor"},
		Args:    args,
		Env:     []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: dockerConfig}},
	}
}

// buildahSteps build, then push with the digest written to the result;
// buildah needs a privileged container.
func buildahSteps(cfg Config, fn *lambdapodv1alpha1.Function, commit, contextDir string) []tektonv1.Step {
	storage := []corev1.VolumeMount{{Name: buildahVol, MountPath: "/var/lib/containers"}}
	privileged := &corev1.SecurityContext{Privileged: ptr(true)}
	build := []string{"build", "--storage-driver=vfs", "--format=oci",
		"--file=" + path.Join(contextDir, fn.Spec.Build.DockerfileOrDefault()),
		"--tag=$(params." + ParamImage + ")"}
	for _, l := range ociLabels(fn, commit) {
		build = append(build, "--label="+l)
	}
	build = append(build, contextDir)
	push := []string{"push", "--storage-driver=vfs",
		"--digestfile=$(results." + ResultImageDigest + ".path)"}
	if cfg.insecure(fn.Spec.Build.Image) {
		push = append(push, "--tls-verify=false")
	}
	push = append(push, "$(params."+ParamImage+")", "docker://$(params."+ParamImage+")")
	return []tektonv1.Step{
		{Name: StepBuild, Image: cfg.BuildahImage, Command: []string{"buildah"}, Args: build,
			VolumeMounts: storage, SecurityContext: privileged},
		{Name: StepPush, Image: cfg.BuildahImage, Command: []string{"buildah"}, Args: push,
			VolumeMounts: storage, SecurityContext: privileged},
	}
}

// supervisorStep adds the helper's supervisor to the image the Dockerfile
// build pushed, as one more layer with the label that says so, pushes the
// result to the same tag and replaces the digest result with its digest.
// The image is left as it is (and its pods receive the supervisor through a
// volume) when it carries the label already, is a multi-platform index, or
// is for another architecture than the build node's.
func supervisorStep(cfg Config, fn *lambdapodv1alpha1.Function) tektonv1.Step {
	args := []string{
		"build-step", "add-supervisor",
		"--image=$(params." + ParamImage + ")",
		"--digest-file=$(results." + ResultImageDigest + ".path)",
		"--supervisor=" + helperSupervisor,
	}
	if cfg.insecure(fn.Spec.Build.Image) {
		args = append(args, "--insecure")
	}
	return tektonv1.Step{
		Name: StepSupervisor, Image: cfg.HelperImage, Command: []string{helperBinary}, Args: args,
		Env: []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: dockerConfig}},
	}
}

// goSteps compile a static bootstrap in the Go toolchain image, then add it
// to the base image as /var/task/bootstrap, the image's entrypoint, with
// the helper: no Docker daemon, no Dockerfile. The same layer carries the
// helper's supervisor (see helperSupervisor).
func goSteps(cfg Config, fn *lambdapodv1alpha1.Function, commit, contextDir string) []tektonv1.Step {
	image := []string{
		"build-step", "image",
		"--base=" + cfg.GoBaseImage,
		"--platform=linux/" + cfg.GoArch,
		"--bootstrap=" + bootstrapPath,
		"--entrypoint=" + TaskBootstrap,
		"--supervisor=" + helperSupervisor,
		"--destination=$(params." + ParamImage + ")",
		"--digest-file=$(results." + ResultImageDigest + ".path)",
	}
	for _, l := range ociLabels(fn, commit) {
		image = append(image, "--label="+l)
	}
	if cfg.insecure(fn.Spec.Build.Image) {
		image = append(image, "--insecure")
	}
	return []tektonv1.Step{
		{
			Name: StepCompile, Image: cfg.GoImage, WorkingDir: contextDir,
			Command: []string{"go"},
			// -buildvcs=false: the checkout belongs to the helper's user,
			// which git in the toolchain image would call dubious.
			Args: []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bootstrapPath, "."},
			Env: []corev1.EnvVar{
				{Name: "CGO_ENABLED", Value: "0"},
				{Name: "GOOS", Value: "linux"},
				{Name: "GOARCH", Value: cfg.GoArch},
			},
		},
		{
			Name: StepImage, Image: cfg.HelperImage, Command: []string{helperBinary}, Args: image,
			Env: []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: dockerConfig}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// LogsHint tells a user how to read a run's logs.
func LogsHint(namespace, run, pod, step string) string {
	var b strings.Builder
	if pod != "" && step != "" {
		b.WriteString("kubectl logs -n " + namespace + " " + pod + " -c step-" + step + ", or ")
	}
	b.WriteString("tkn pipelinerun logs -n " + namespace + " " + run)
	return b.String()
}

package build

import (
	"fmt"
	"regexp"
	"strings"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"

	"github.com/lambdapod/lambdapod/internal/contract"
)

// Phase is where a PipelineRun is.
type Phase int

const (
	// Running: Tekton has not finished the run (or not started it).
	Running Phase = iota
	// Succeeded: the image was pushed and its digest came back.
	Succeeded
	// Failed: the run failed, timed out or was cancelled, or succeeded
	// without a usable digest.
	Failed
)

// Outcome is what a PipelineRun says, in terms a Function's status uses.
type Outcome struct {
	Phase Phase
	// Image is repository@sha256:..., when Succeeded.
	Image string
	// Reason is a CamelCase condition reason when Failed.
	Reason string
	// Message says what happened, and for a failure which step failed and
	// where its logs are.
	Message string
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Observe reads a PipelineRun. taskRuns are its child TaskRuns by name, for
// the step that failed; a missing one only makes the message vaguer.
func Observe(pr *tektonv1.PipelineRun, taskRuns map[string]*tektonv1.TaskRun) Outcome {
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	if c == nil || c.IsUnknown() {
		msg := fmt.Sprintf("PipelineRun %s is building commit %s; follow it with %s", pr.Name, short(pr.Labels[contract.LabelCommit]), LogsHint(pr.Namespace, pr.Name, "", ""))
		if c != nil && c.Reason == string(tektonv1.PipelineRunReasonPending) {
			msg = fmt.Sprintf("PipelineRun %s is pending", pr.Name)
		}
		return Outcome{Phase: Running, Message: msg}
	}
	if c.IsTrue() {
		digest := strings.TrimSpace(result(pr, ResultImageDigest))
		if !digestRE.MatchString(digest) {
			return Outcome{Phase: Failed, Reason: "BuildResultMissing", Message: fmt.Sprintf(
				"PipelineRun %s succeeded without a %s result of the form sha256:<64 hex> (got %q); see %s",
				pr.Name, ResultImageDigest, digest, LogsHint(pr.Namespace, pr.Name, "", ""))}
		}
		return Outcome{Phase: Succeeded, Image: Repository(pr) + "@" + digest,
			Message: fmt.Sprintf("PipelineRun %s built commit %s", pr.Name, short(pr.Labels[contract.LabelCommit]))}
	}

	reason := "BuildFailed"
	switch tektonv1.PipelineRunReason(c.Reason) {
	case tektonv1.PipelineRunReasonTimedOut:
		reason = "BuildTimedOut"
	case tektonv1.PipelineRunReasonCancelled:
		reason = "BuildCancelled"
	}
	step, pod, detail := failedStep(pr, taskRuns)
	var b strings.Builder
	fmt.Fprintf(&b, "PipelineRun %s for commit %s ", pr.Name, short(pr.Labels[contract.LabelCommit]))
	if step != "" {
		fmt.Fprintf(&b, "failed at step %q", step)
		if detail != "" {
			fmt.Fprintf(&b, " (%s)", detail)
		}
	} else {
		fmt.Fprintf(&b, "failed (%s)", c.Reason)
	}
	if m := strings.TrimSpace(c.Message); m != "" {
		fmt.Fprintf(&b, ": %s", truncate(m, 512))
	}
	fmt.Fprintf(&b, "; logs: %s", LogsHint(pr.Namespace, pr.Name, pod, step))
	return Outcome{Phase: Failed, Reason: reason, Message: b.String()}
}

// Repository is the repository a run pushed to: its image parameter
// without the commit tag.
func Repository(pr *tektonv1.PipelineRun) string {
	for _, p := range pr.Spec.Params {
		if p.Name == ParamImage {
			return strings.TrimSuffix(p.Value.StringVal, ":"+pr.Labels[contract.LabelCommit])
		}
	}
	return strings.TrimSuffix(result(pr, ResultImageURL), ":"+pr.Labels[contract.LabelCommit])
}

func result(pr *tektonv1.PipelineRun, name string) string {
	for _, r := range pr.Status.Results {
		if r.Name == name {
			return r.Value.StringVal
		}
	}
	return ""
}

// TaskRunNames are the names of a run's child TaskRuns.
func TaskRunNames(pr *tektonv1.PipelineRun) []string {
	var names []string
	for _, c := range pr.Status.ChildReferences {
		if c.Kind == "" || c.Kind == "TaskRun" {
			names = append(names, c.Name)
		}
	}
	return names
}

// failedStep finds the step that failed and says how it ended: the first
// step whose own process exited non-zero; else, when the pod failed as a
// whole (an image that cannot be pulled, a container that cannot start),
// the step Tekton's TaskRun condition names; else the first step that
// ended non-zero or did not run to completion.
//
// When the pod fails as a whole, Tekton marks every step that had not
// finished as exited with code 1 ("Step clone terminated as pod ... is
// terminated"), so the first non-zero step is then often an innocent one
// that was running or waiting: on a real cluster a kaniko image that could
// not be pulled showed as a failed clone.
func failedStep(pr *tektonv1.PipelineRun, taskRuns map[string]*tektonv1.TaskRun) (step, pod, detail string) {
	for _, name := range TaskRunNames(pr) {
		tr := taskRuns[name]
		if tr == nil {
			continue
		}
		for _, s := range tr.Status.Steps {
			if t := s.Terminated; t != nil && t.ExitCode != 0 && !terminatedByTekton(s.Name, t) {
				return s.Name, tr.Status.PodName, exitDetail(t)
			}
		}
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		if c != nil && c.IsFalse() {
			if m := namedStepRE.FindStringSubmatch(c.Message); m != nil && hasStep(tr, m[1]) {
				return m[1], tr.Status.PodName, strings.TrimSpace(c.Reason) + ": " + truncate(strings.TrimSpace(c.Message), 512)
			}
		}
		for _, s := range tr.Status.Steps {
			if t := s.Terminated; t != nil && t.ExitCode != 0 {
				return s.Name, tr.Status.PodName, exitDetail(t)
			}
		}
		if c != nil && c.IsFalse() {
			for _, s := range tr.Status.Steps {
				if s.Terminated == nil || s.Terminated.Reason != "Completed" {
					return s.Name, tr.Status.PodName, strings.TrimSpace(c.Reason)
				}
			}
		}
	}
	return "", "", ""
}

// namedStepRE finds the step in the message of a TaskRun whose pod failed
// as a whole: `the step "build" in TaskRun "..." failed to pull the image
// "..."` or `... failed to start`.
var namedStepRE = regexp.MustCompile(`\bthe step "([^"]+)" in TaskRun\b`)

// terminatedByTekton: Tekton, not the step's process, ended the step,
// because the pod failed, timed out or was cancelled.
func terminatedByTekton(step string, t *corev1.ContainerStateTerminated) bool {
	return strings.HasPrefix(t.Message, "Step "+step+" terminated as pod ")
}

func hasStep(tr *tektonv1.TaskRun, name string) bool {
	for _, s := range tr.Status.Steps {
		if s.Name == name {
			return true
		}
	}
	return false
}

func exitDetail(t *corev1.ContainerStateTerminated) string {
	detail := fmt.Sprintf("exit code %d", t.ExitCode)
	if t.Reason != "" && t.Reason != "Error" {
		detail += ", " + t.Reason
	}
	if msg := stepMessage(t); msg != "" {
		detail += ": " + msg
	}
	return detail
}

// stepMessage is a terminated step's own message, unless it is the JSON
// Tekton's entrypoint writes there for results.
func stepMessage(t *corev1.ContainerStateTerminated) string {
	m := strings.TrimSpace(t.Message)
	if strings.HasPrefix(m, "[") || strings.HasPrefix(m, "{") {
		return ""
	}
	return truncate(m, 256)
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

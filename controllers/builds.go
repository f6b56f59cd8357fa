package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/git"
)

// builds is the reconciler's memory of what each git source resolved to,
// so that a pass caused by a Deployment's status does not ask git again.
type builds struct {
	mu       sync.Mutex
	resolved map[types.NamespacedName]resolution
}

type resolution struct {
	// source is what was resolved: url, revision and secret.
	source string
	git.Resolved
	at time.Time
}

// jitter spreads polls of many Functions over up to a tenth of the interval.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// NextPoll is when a revision resolved at resolvedAt is resolved again,
// counted from now, with jitter.
func NextPoll(interval time.Duration, resolvedAt, now time.Time) time.Duration {
	return jitter(max(interval-now.Sub(resolvedAt), 0))
}

func sourceKey(fn *lambdapodv1alpha1.Function) string {
	g := fn.Spec.Source.Git
	secret := ""
	if g.SecretRef != nil {
		secret = g.SecretRef.Name
	}
	return g.URL + "\x00" + g.Revision + "\x00" + secret
}

// resolve returns the commit fn's revision names, asking git only when the
// last answer is older than the poll interval, the source changed, or a
// push webhook announced a new commit.
func (r *FunctionReconciler) resolve(ctx context.Context, fn *lambdapodv1alpha1.Function) (resolution, error) {
	key := client.ObjectKeyFromObject(fn)
	forced := r.Triggers != nil && r.Triggers.take(key)
	r.builds.mu.Lock()
	last, ok := r.builds.resolved[key]
	r.builds.mu.Unlock()
	now := time.Now()
	if ok && !forced && last.source == sourceKey(fn) && now.Sub(last.at) < fn.Spec.Source.Git.PollIntervalOrDefault()*9/10 {
		return last, nil
	}
	creds, err := r.gitCredentials(ctx, fn)
	if err != nil {
		return resolution{}, err
	}
	got, err := git.Resolve(ctx, fn.Spec.Source.Git.URL, fn.Spec.Source.Git.RevisionOrDefault(), creds)
	if err != nil {
		return resolution{}, err
	}
	res := resolution{source: sourceKey(fn), Resolved: got, at: now}
	r.builds.mu.Lock()
	if r.builds.resolved == nil {
		r.builds.resolved = map[types.NamespacedName]resolution{}
	}
	r.builds.resolved[key] = res
	r.builds.mu.Unlock()
	return res, nil
}

// forget drops what was resolved for a Function that is gone.
func (r *FunctionReconciler) forget(key types.NamespacedName) {
	r.builds.mu.Lock()
	delete(r.builds.resolved, key)
	r.builds.mu.Unlock()
}

// gitCredentials reads the Function's secretRef, if it has one. Secrets
// are read from the API server, not cached: the manager holds no Secrets.
func (r *FunctionReconciler) gitCredentials(ctx context.Context, fn *lambdapodv1alpha1.Function) (git.Credentials, error) {
	ref := fn.Spec.Source.Git.SecretRef
	if ref == nil {
		return git.Credentials{}, nil
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: fn.Namespace, Name: ref.Name}, secret); err != nil {
		return git.Credentials{}, &stepError{Reason: "GitCredentialsUnavailable", Stalled: apierrors.IsNotFound(err),
			Condition: lambdapodv1alpha1.ConditionBuilt, Err: fmt.Errorf("reading Secret %s/%s of spec.source.git.secretRef: %w", fn.Namespace, ref.Name, err)}
	}
	return git.CredentialsFromSecret(secret.Data), nil
}

// gitImage is the image of a git source: the last one a build produced,
// while the build of the current (commit, build spec) is made, watched and
// read. It returns "" when nothing was built yet, and when to look again.
// A problem with the build comes as a stepError about Built, with the last
// image: the Function goes on running it.
func (r *FunctionReconciler) gitImage(ctx context.Context, s *scope) (string, time.Duration, error) {
	fn := s.fn
	running := fn.Status.Image
	poll := jitter(fn.Spec.Source.Git.PollIntervalOrDefault())
	if !r.tektonInstalled {
		return running, poll, stalled(lambdapodv1alpha1.ConditionBuilt, "TektonNotInstalled", errors.New("git sources are built by Tekton Pipelines, whose PipelineRun API (tekton.dev/v1) this cluster does not serve: install Tekton Pipelines and restart the lambdapod manager, or use spec.source.image"))
	}

	res, err := r.resolve(ctx, fn)
	if err != nil {
		var problem *stepError
		var nf *git.NotFoundError
		switch {
		case errors.As(err, &problem):
			return running, poll, problem
		case errors.As(err, &nf):
			return running, poll, stalled(lambdapodv1alpha1.ConditionBuilt, "RevisionNotFound", fmt.Errorf("%w: push it, or change spec.source.git.revision", nf))
		default:
			// The server may be back at the next poll; until then say why.
			return running, poll, retrying(lambdapodv1alpha1.ConditionBuilt, "GitUnreachable", err)
		}
	}

	hash := build.SpecHash(fn)
	if lb := fn.Status.LatestBuild; lb != nil && lb.Commit == res.Commit && lb.SpecHash == hash &&
		running != "" && meta.IsStatusConditionTrue(fn.Status.Conditions, lambdapodv1alpha1.ConditionBuilt) {
		// Built already; the run may have been pruned since.
		s.built = fmt.Sprintf("image %s was built from commit %s by PipelineRun %s", running, res.Commit, lb.PipelineRun)
		return running, NextPoll(fn.Spec.Source.Git.PollIntervalOrDefault(), res.at, time.Now()), nil
	}

	runs, err := r.pipelineRuns(ctx, fn, r.Client)
	if err != nil {
		return "", 0, err
	}
	current := findRun(runs, res.Commit, hash)
	if current == nil {
		// The cache may not show a run created by the last pass yet: ask
		// the API server before making another.
		if fresh, err := r.pipelineRuns(ctx, fn, r.APIReader); err != nil {
			return "", 0, err
		} else if current = findRun(fresh, res.Commit, hash); current == nil {
			cfg, err := r.buildConfig(ctx)
			if err != nil {
				return running, poll, stalled(lambdapodv1alpha1.ConditionBuilt, "BuildConfigInvalid", err)
			}
			current = build.MakePipelineRun(cfg, fn, res.Commit, fn.Spec.Source.Git.Revision)
			if err := r.Create(ctx, current); err != nil {
				if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
					return running, poll, stalled(lambdapodv1alpha1.ConditionBuilt, "BuildNotCreated", fmt.Errorf("creating the PipelineRun: %w", err))
				}
				return "", 0, fmt.Errorf("creating the PipelineRun for commit %s: %w", res.Commit, err)
			}
			r.Recorder.Eventf(fn, current, corev1.EventTypeNormal, "BuildStarted", "Build",
				"PipelineRun %s builds commit %s of %s", current.Name, res.Commit, fn.Spec.Source.Git.URL)
			runs = append(runs, *current)
		}
	}
	r.supersede(ctx, fn, runs, current)
	r.prune(ctx, fn, runs, current)

	outcome := build.Observe(current, nil)
	if outcome.Phase == build.Failed {
		outcome = r.failure(ctx, s, current)
	}
	fn.Status.LatestBuild = &lambdapodv1alpha1.BuildStatus{PipelineRun: current.Name, Commit: res.Commit, SpecHash: hash}
	s.run = current
	next := NextPoll(fn.Spec.Source.Git.PollIntervalOrDefault(), res.at, time.Now())

	switch outcome.Phase {
	case build.Running:
		// The run's completion is watched; polling goes on meanwhile.
		return running, next, &stepError{Reason: "Building", Condition: lambdapodv1alpha1.ConditionBuilt,
			Status: metav1.ConditionUnknown, Err: errors.New(outcome.Message)}
	case build.Succeeded:
		s.built = outcome.Message + " as " + outcome.Image
		fn.Status.Image, fn.Status.Commit = outcome.Image, res.Commit
		return outcome.Image, next, nil
	default:
		failed := stalled(lambdapodv1alpha1.ConditionBuilt, outcome.Reason, errors.New(outcome.Message))
		if running != "" {
			failed.Message = outcome.Message + "; the function keeps running " + running
		}
		return running, next, failed
	}
}

// failure describes a failed run, reading its TaskRuns for the failing step
// once: while the Built condition already describes this run, it is kept.
func (r *FunctionReconciler) failure(ctx context.Context, s *scope, pr *tektonv1.PipelineRun) build.Outcome {
	if c := meta.FindStatusCondition(s.before.Status.Conditions, lambdapodv1alpha1.ConditionBuilt); c != nil &&
		c.Status == metav1.ConditionFalse && s.before.Status.LatestBuild != nil && s.before.Status.LatestBuild.PipelineRun == pr.Name &&
		strings.Contains(c.Message, pr.Name) {
		return build.Outcome{Phase: build.Failed, Reason: c.Reason, Message: c.Message}
	}
	taskRuns := map[string]*tektonv1.TaskRun{}
	for _, name := range build.TaskRunNames(pr) {
		tr := &tektonv1.TaskRun{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: pr.Namespace, Name: name}, tr); err == nil {
			taskRuns[name] = tr
		}
	}
	return build.Observe(pr, taskRuns)
}

func (r *FunctionReconciler) buildConfig(ctx context.Context) (build.Config, error) {
	if r.BuildConfig == nil {
		return build.DefaultConfig(), nil
	}
	return r.BuildConfig(ctx)
}

// pipelineRuns lists the runs fn controls, newest first.
func (r *FunctionReconciler) pipelineRuns(ctx context.Context, fn *lambdapodv1alpha1.Function, reader client.Reader) ([]tektonv1.PipelineRun, error) {
	list := &tektonv1.PipelineRunList{}
	if err := reader.List(ctx, list, client.InNamespace(fn.Namespace), client.MatchingLabels{
		contract.LabelManagedBy: contract.ManagedByValue, contract.LabelFunction: fn.Name,
	}); err != nil {
		return nil, fmt.Errorf("listing PipelineRuns of %s: %w", fn.Name, err)
	}
	var runs []tektonv1.PipelineRun
	for _, pr := range list.Items {
		if metav1.IsControlledBy(&pr, fn) && pr.DeletionTimestamp.IsZero() {
			runs = append(runs, pr)
		}
	}
	sort.SliceStable(runs, func(i, j int) bool {
		a, b := runs[i].CreationTimestamp, runs[j].CreationTimestamp
		if a.Equal(&b) {
			return runs[i].Name > runs[j].Name
		}
		return b.Before(&a)
	})
	return runs, nil
}

func findRun(runs []tektonv1.PipelineRun, commit, hash string) *tektonv1.PipelineRun {
	for i := range runs {
		if runs[i].Labels[contract.LabelCommit] == commit && runs[i].Labels[contract.LabelBuildSpec] == hash {
			return &runs[i]
		}
	}
	return nil
}

func done(pr *tektonv1.PipelineRun) bool {
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	return c != nil && !c.IsUnknown()
}

// supersede deletes runs still building an older commit or build spec.
// Runs are never updated, so they are not cancelled through spec.status:
// deleting one stops its pods (Tekton owns them through its TaskRuns), and
// its result could never be used anyway.
func (r *FunctionReconciler) supersede(ctx context.Context, fn *lambdapodv1alpha1.Function, runs []tektonv1.PipelineRun, current *tektonv1.PipelineRun) {
	for i := range runs {
		pr := &runs[i]
		if pr.Name == current.Name || done(pr) {
			continue
		}
		if err := r.Delete(ctx, pr, client.PropagationPolicy(metav1.DeletePropagationBackground)); err == nil {
			r.Recorder.Eventf(fn, pr, corev1.EventTypeNormal, "BuildSuperseded", "Build",
				"deleted PipelineRun %s of commit %s, superseded by %s of commit %s", pr.Name, pr.Labels[contract.LabelCommit], current.Name, current.Labels[contract.LabelCommit])
		} else if !apierrors.IsNotFound(err) {
			r.Recorder.Eventf(fn, pr, corev1.EventTypeWarning, "BuildNotDeleted", "Build", "deleting superseded PipelineRun %s: %v", pr.Name, err)
		}
	}
}

// prune keeps the newest finished runs up to the history limit (the
// current one always), and deletes older finished ones.
func (r *FunctionReconciler) prune(ctx context.Context, fn *lambdapodv1alpha1.Function, runs []tektonv1.PipelineRun, current *tektonv1.PipelineRun) {
	limit := build.DefaultHistoryLimit
	if r.BuildConfig != nil {
		if cfg, err := r.BuildConfig(ctx); err == nil {
			limit = cfg.HistoryLimit
		}
	}
	kept := 1 // current
	for i := range runs {
		pr := &runs[i]
		if pr.Name == current.Name || !done(pr) {
			continue
		}
		if kept < limit {
			kept++
			continue
		}
		if err := r.Delete(ctx, pr, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
			r.Recorder.Eventf(fn, pr, corev1.EventTypeWarning, "BuildNotDeleted", "Build", "pruning PipelineRun %s: %v", pr.Name, err)
		}
	}
}

// succeededChanged passes PipelineRun events that can change a Function's
// status: creation, deletion, and a change of the Succeeded condition.
func succeededChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			was, ok1 := e.ObjectOld.(*tektonv1.PipelineRun)
			now, ok2 := e.ObjectNew.(*tektonv1.PipelineRun)
			if !ok1 || !ok2 {
				return true
			}
			a, b := was.Status.GetCondition(apis.ConditionSucceeded), now.Status.GetCondition(apis.ConditionSucceeded)
			if (a == nil) != (b == nil) {
				return true
			}
			return a != nil && (a.Status != b.Status || a.Reason != b.Reason)
		},
	}
}

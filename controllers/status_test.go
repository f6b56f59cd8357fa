package controllers

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// What the conditions and events say, and what controller-runtime is told,
// for what the steps of a pass returned.
func TestSummarize(t *testing.T) {
	const (
		url     = "http://activator.test/default/fn/"
		running = "registry.test/fn@sha256:aaaa"
		poll    = time.Minute
	)
	// cond is a condition as the Function had it before the pass, of an
	// earlier generation.
	cond := func(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: 1}
	}
	ready := cond(lambdapodv1alpha1.ConditionReady, metav1.ConditionTrue, "Ready", "serving at "+url)
	built := cond(lambdapodv1alpha1.ConditionBuilt, metav1.ConditionTrue, "Built", "PipelineRun fn-build-a built commit aaaa as "+running)
	rolledOut := cond(lambdapodv1alpha1.ConditionDeployed, metav1.ConditionTrue, "RolledOut", "Deployment fn runs the current template on all 1 pods (1 ready)")

	building := &stepError{Reason: "Building", Condition: lambdapodv1alpha1.ConditionBuilt, Status: metav1.ConditionUnknown,
		Err: errors.New("PipelineRun fn-build-b is building commit bbbb")}
	buildFailed := stalled(lambdapodv1alpha1.ConditionBuilt, "BuildFailed", errors.New("PipelineRun fn-build-b for commit bbbb failed"))
	buildFailed.Message = "PipelineRun fn-build-b for commit bbbb failed; the function keeps running " + running
	unreachable := waiting(lambdapodv1alpha1.ConditionBuilt, "GitUnreachable", errors.New("git ls-remote: connection refused"))
	notFound := stalled(lambdapodv1alpha1.ConditionBuilt, "RevisionNotFound", errors.New(`revision "next" not found: push it`))
	progressing := waiting(lambdapodv1alpha1.ConditionDeployed, "Progressing", errors.New("Deployment fn is rolling out: 1 of 2 pods run the current template"))
	deadline := stalled(lambdapodv1alpha1.ConditionDeployed, "ProgressDeadlineExceeded", errors.New("Deployment fn made no progress"))
	conflict := stalled("", "OwnershipConflict", errors.New("Deployment default/fn exists and is owned by someone else"))
	refused := errors.New("applying Deployment fn: connection refused")

	for _, tc := range []struct {
		name string
		// image is spec.source.image; "" for a git source.
		image  string
		before []metav1.Condition
		// beforeRun is status.latestBuild's run before the pass.
		beforeRun string
		// What the steps left on the scope, and returned in order.
		running         string
		built, deployed string
		run             string
		recheck         time.Duration
		steps           []error
		// ran is how many steps the pass runs.
		ran int
		// want are the conditions after the pass, "Type=Status Reason:
		// Message"; kept those of them left as they were.
		want     []string
		kept     []string
		events   []string
		result   ctrl.Result
		err      error
		terminal bool
	}{{
		name:     "an image Function rolled out turns Ready and says so; Built goes",
		image:    running,
		before:   []metav1.Condition{built, cond(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "Progressing", "rolling out"), cond(lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, "Progressing", "rolling out")},
		running:  running,
		deployed: rolledOut.Message,
		steps:    []error{nil, nil, nil, nil},
		ran:      4,
		want:     []string{"Ready=True Ready: serving at " + url, "Deployed=True RolledOut: " + rolledOut.Message},
		events:   []string{"Normal Ready serving at " + url},
	}, {
		name:     "staying Ready says nothing",
		image:    running,
		before:   []metav1.Condition{ready, rolledOut},
		running:  running,
		deployed: rolledOut.Message,
		steps:    []error{nil, nil, nil, nil},
		ran:      4,
		want:     []string{"Ready=True Ready: serving at " + url, "Deployed=True RolledOut: " + rolledOut.Message},
	}, {
		name:    "a first build running ends the pass before the Deployment, and polling goes on",
		run:     "fn-build-b",
		recheck: poll,
		steps:   []error{building, nil, nil, nil},
		ran:     1,
		want: []string{
			"Built=Unknown Building: " + building.Err.Error(),
			"Ready=False Building: " + building.Err.Error(),
			"Reconciling=True Building: " + building.Err.Error(),
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:      "a failed build stalls, and the last image keeps running and rolling out",
		before:    []metav1.Condition{ready, built, rolledOut},
		beforeRun: "fn-build-a",
		running:   running,
		run:       "fn-build-b",
		recheck:   poll,
		steps:     []error{buildFailed, nil, nil, progressing},
		ran:       4,
		want: []string{
			"Built=False BuildFailed: " + buildFailed.Err.Error(),
			"Deployed=False Progressing: " + progressing.Err.Error(),
			"Ready=False BuildFailed: " + buildFailed.Message,
			"Stalled=True BuildFailed: " + buildFailed.Message,
		},
		events: []string{
			"Warning BuildFailed " + buildFailed.Err.Error(),
			"Warning BuildFailed " + buildFailed.Message,
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name: "a failed build already told is not told again",
		before: []metav1.Condition{
			cond(lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildFailed", buildFailed.Err.Error()),
			cond(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "BuildFailed", buildFailed.Message),
			cond(lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildFailed", buildFailed.Message),
			rolledOut,
		},
		beforeRun: "fn-build-b",
		running:   running,
		run:       "fn-build-b",
		deployed:  rolledOut.Message,
		recheck:   poll,
		steps:     []error{buildFailed, nil, nil, nil},
		ran:       4,
		want: []string{
			"Built=False BuildFailed: " + buildFailed.Err.Error(),
			"Deployed=True RolledOut: " + rolledOut.Message,
			"Ready=False BuildFailed: " + buildFailed.Message,
			"Stalled=True BuildFailed: " + buildFailed.Message,
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:      "a build that succeeds is told, and so is readiness",
		before:    []metav1.Condition{cond(lambdapodv1alpha1.ConditionBuilt, metav1.ConditionUnknown, "Building", building.Err.Error()), cond(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "Building", building.Err.Error()), cond(lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, "Building", building.Err.Error())},
		beforeRun: "fn-build-b",
		running:   running,
		built:     "PipelineRun fn-build-b built commit bbbb as " + running,
		run:       "fn-build-b",
		deployed:  rolledOut.Message,
		recheck:   poll,
		steps:     []error{nil, nil, nil, nil},
		ran:       4,
		want: []string{
			"Built=True Built: PipelineRun fn-build-b built commit bbbb as " + running,
			"Deployed=True RolledOut: " + rolledOut.Message,
			"Ready=True Ready: serving at " + url,
		},
		events: []string{
			"Normal BuildSucceeded PipelineRun fn-build-b built commit bbbb as " + running,
			"Normal Ready serving at " + url,
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:     "a build already made, whose run may be gone, is not told again",
		before:   []metav1.Condition{ready, built, rolledOut},
		running:  running,
		built:    "image " + running + " was built from commit aaaa by PipelineRun fn-build-a",
		deployed: rolledOut.Message,
		recheck:  poll,
		steps:    []error{nil, nil, nil, nil},
		ran:      4,
		want: []string{
			"Built=True Built: image " + running + " was built from commit aaaa by PipelineRun fn-build-a",
			"Deployed=True RolledOut: " + rolledOut.Message,
			"Ready=True Ready: serving at " + url,
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:    "the first of problems that pass by themselves stands",
		before:  []metav1.Condition{ready, built, rolledOut},
		running: running,
		recheck: poll,
		steps:   []error{unreachable, nil, nil, progressing},
		ran:     4,
		want: []string{
			"Built=False GitUnreachable: " + unreachable.Err.Error(),
			"Deployed=False Progressing: " + progressing.Err.Error(),
			"Ready=False GitUnreachable: " + unreachable.Err.Error(),
			"Reconciling=True GitUnreachable: " + unreachable.Err.Error(),
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:    "a stall outranks the problems before it",
		before:  []metav1.Condition{ready, built, rolledOut},
		running: running,
		recheck: poll,
		steps:   []error{unreachable, nil, nil, deadline},
		ran:     4,
		want: []string{
			"Built=False GitUnreachable: " + unreachable.Err.Error(),
			"Deployed=False ProgressDeadlineExceeded: " + deadline.Err.Error(),
			"Ready=False ProgressDeadlineExceeded: " + deadline.Err.Error(),
			"Stalled=True ProgressDeadlineExceeded: " + deadline.Err.Error(),
		},
		events: []string{"Warning ProgressDeadlineExceeded " + deadline.Err.Error()},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:    "a build problem without an image to run ends the pass",
		recheck: poll,
		steps:   []error{notFound, nil, nil, nil},
		ran:     1,
		want: []string{
			"Built=False RevisionNotFound: " + notFound.Err.Error(),
			"Ready=False RevisionNotFound: " + notFound.Err.Error(),
			"Stalled=True RevisionNotFound: " + notFound.Err.Error(),
		},
		events: []string{"Warning RevisionNotFound " + notFound.Err.Error()},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:    "no image and no problem is still waiting for a build",
		recheck: poll,
		steps:   []error{waiting("", "AwaitingBuild", errors.New("no image has been built from the git source yet")), nil, nil, nil},
		ran:     1,
		want: []string{
			"Ready=False AwaitingBuild: no image has been built from the git source yet",
			"Reconciling=True AwaitingBuild: no image has been built from the git source yet",
		},
		result: ctrl.Result{RequeueAfter: poll},
	}, {
		name:     "a stall that nothing will look at again is terminal",
		image:    running,
		before:   []metav1.Condition{ready, rolledOut},
		running:  running,
		steps:    []error{nil, nil, nil, deadline},
		ran:      4,
		want:     []string{"Deployed=False ProgressDeadlineExceeded: " + deadline.Err.Error(), "Ready=False ProgressDeadlineExceeded: " + deadline.Err.Error(), "Stalled=True ProgressDeadlineExceeded: " + deadline.Err.Error()},
		events:   []string{"Warning ProgressDeadlineExceeded " + deadline.Err.Error()},
		err:      deadline,
		terminal: true,
	}, {
		name:    "someone else's object ends the pass, stalls, and is looked at again",
		image:   running,
		before:  []metav1.Condition{ready, rolledOut},
		running: running,
		recheck: conflictRecheck,
		steps:   []error{nil, conflict, nil, nil},
		ran:     2,
		want: []string{
			"Deployed=True RolledOut: " + rolledOut.Message,
			"Ready=False OwnershipConflict: " + conflict.Err.Error(),
			"Stalled=True OwnershipConflict: " + conflict.Err.Error(),
		},
		kept:   []string{lambdapodv1alpha1.ConditionDeployed},
		events: []string{"Warning OwnershipConflict " + conflict.Err.Error()},
		result: ctrl.Result{RequeueAfter: conflictRecheck},
	}, {
		name:    "an unexpected error ends the pass and is retried",
		image:   running,
		before:  []metav1.Condition{ready, rolledOut},
		running: running,
		steps:   []error{nil, refused, nil, nil},
		ran:     2,
		want: []string{
			"Deployed=True RolledOut: " + rolledOut.Message,
			"Ready=False ReconcileFailed: " + refused.Error(),
			"Reconciling=True ReconcileFailed: " + refused.Error(),
		},
		kept: []string{lambdapodv1alpha1.ConditionDeployed},
		err:  refused,
	}, {
		name: "an unexpected error after a stall is retried, not stalled",
		before: []metav1.Condition{
			cond(lambdapodv1alpha1.ConditionBuilt, metav1.ConditionFalse, "BuildFailed", buildFailed.Err.Error()),
			cond(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, "BuildFailed", buildFailed.Message),
			cond(lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, "BuildFailed", buildFailed.Message),
		},
		beforeRun: "fn-build-b",
		running:   running,
		run:       "fn-build-b",
		recheck:   poll,
		steps:     []error{buildFailed, refused, nil, nil},
		ran:       2,
		want: []string{
			"Built=False BuildFailed: " + buildFailed.Err.Error(),
			"Ready=False ReconcileFailed: " + refused.Error(),
			"Reconciling=True ReconcileFailed: " + refused.Error(),
		},
		err: refused,
	}, {
		name:    "Built stays as it was when the source step failed unexpectedly",
		before:  []metav1.Condition{ready, built},
		running: running,
		steps:   []error{refused, nil, nil, nil},
		ran:     1,
		want: []string{
			"Built=True Built: " + built.Message,
			"Ready=False ReconcileFailed: " + refused.Error(),
			"Reconciling=True ReconcileFailed: " + refused.Error(),
		},
		kept: []string{lambdapodv1alpha1.ConditionBuilt},
		err:  refused,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fn := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: "default", Generation: 2}}
			fn.Spec.Source.Image = tc.image
			fn.Status.Conditions = tc.before
			fn.Status.URL = url
			if tc.beforeRun != "" {
				fn.Status.LatestBuild = &lambdapodv1alpha1.BuildStatus{PipelineRun: tc.beforeRun}
			}
			s := newScope(fn)
			if tc.run != "" {
				s.run = &tektonv1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: tc.run, Namespace: "default"}}
				fn.Status.LatestBuild = &lambdapodv1alpha1.BuildStatus{PipelineRun: tc.run}
			}
			s.image, s.built, s.deployed, s.recheck = tc.running, tc.built, tc.deployed, tc.recheck
			ran := 0
			for _, err := range tc.steps {
				ran++
				if !s.record(err) {
					break
				}
			}
			if ran != tc.ran {
				t.Errorf("the pass ran %d steps, want %d", ran, tc.ran)
			}

			rec := events.NewFakeRecorder(10)
			result, err := s.summarize(rec)

			var got []string
			for _, c := range fn.Status.Conditions {
				got = append(got, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
				want := int64(2)
				if slices.Contains(tc.kept, c.Type) {
					want = 1
				}
				if c.ObservedGeneration != want {
					t.Errorf("%s observedGeneration %d, want %d", c.Type, c.ObservedGeneration, want)
				}
			}
			slices.Sort(got)
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("conditions:\n%q\nwant\n%q", got, tc.want)
			}
			close(rec.Events)
			var told []string
			for e := range rec.Events {
				told = append(told, e)
			}
			if !slices.Equal(told, tc.events) {
				t.Errorf("events:\n%q\nwant\n%q", told, tc.events)
			}
			if result != tc.result || !errors.Is(err, tc.err) || errors.Is(err, reconcile.TerminalError(nil)) != tc.terminal {
				t.Errorf("result %+v, err %v; want %+v, err %v, terminal %v", result, err, tc.result, tc.err, tc.terminal)
			}
		})
	}
}

func TestSoonest(t *testing.T) {
	for _, tc := range []struct{ a, b, want time.Duration }{{0, 0, 0}, {0, 5, 5}, {5, 0, 5}, {3, 5, 3}, {5, 3, 3}} {
		if got := soonest(tc.a, tc.b); got != tc.want {
			t.Errorf("soonest(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

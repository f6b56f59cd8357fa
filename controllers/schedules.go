package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/lambdapod/lambdapod/activator/eventqueue"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/schedule"
)

// Publisher stores an Event in the activators' queue (eventqueue.Queue).
type Publisher interface {
	Publish(ctx context.Context, ev *eventqueue.Event) error
}

// ScheduleReconciler queues the Event invocations of Functions'
// spec.schedules, on the leader only: at each time one Event whose request
// id is made from the Function's uid, the schedule's name and the time, so
// that publishing it twice (a status write lost, a new leader that read an
// older status) stores it once within the queue's duplicate window. The
// status keeps the last time queued and the next; a time missed by more
// than MissedAfter (the manager was down) is skipped, as EventBridge does
// not catch up either.
type ScheduleReconciler struct {
	client.Client
	// Queue is nil when the manager has no -event-queue: Functions with
	// schedules then get a Warning event, and nothing runs.
	Queue    Publisher
	Region   string
	Recorder events.EventRecorder
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// MissedAfter is how late a time may still be queued (5 minutes by
	// default).
	MissedAfter time.Duration
}

// scheduleSpace makes the request ids of scheduled Events (uuid.NewSHA1).
var scheduleSpace = uuid.MustParse("5d0e7e63-2b61-4c1f-8d0b-6a4d2b9e1f37")

func (r *ScheduleReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *ScheduleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fn := &lambdapodv1alpha1.Function{}
	if err := r.Get(ctx, req.NamespacedName, fn); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if len(fn.Spec.Schedules) == 0 && len(fn.Status.Schedules) == 0 {
		return ctrl.Result{}, nil
	}
	if r.Queue == nil {
		if len(fn.Spec.Schedules) > 0 {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "EventQueueNotConfigured", "Schedule",
				"spec.schedules do not run: the manager has no event queue (its --event-queue, the chart's eventQueue)")
		}
		return ctrl.Result{}, nil
	}
	missedAfter := r.MissedAfter
	if missedAfter <= 0 {
		missedAfter = 5 * time.Minute
	}
	before := fn.DeepCopy()
	old := map[string]lambdapodv1alpha1.ScheduleStatus{}
	for _, st := range fn.Status.Schedules {
		old[st.Name] = st
	}
	now := r.now().UTC()
	var statuses []lambdapodv1alpha1.ScheduleStatus
	var soonest time.Time
	var failed error
	for i := range fn.Spec.Schedules {
		sch := &fn.Spec.Schedules[i]
		st := old[sch.Name]
		st.Name = sch.Name
		s, err := schedule.Parse(sch.Expression, fn.CreationTimestamp.Time)
		if err != nil {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ScheduleInvalid", "Schedule", "spec.schedules %s: %v", sch.Name, err)
			st.NextScheduleTime = nil
			statuses = append(statuses, st)
			continue
		}
		// The times after the last one queued (or after the next one a
		// former leader promised, or from now for a new schedule).
		from := now
		switch {
		case st.LastScheduleTime != nil:
			from = st.LastScheduleTime.UTC()
		case st.NextScheduleTime != nil:
			from = st.NextScheduleTime.UTC().Add(-time.Nanosecond)
		}
		if from.Before(now.Add(-missedAfter)) {
			from = now.Add(-missedAfter - time.Nanosecond)
			if st.LastScheduleTime != nil && s.Next(st.LastScheduleTime.Time).Before(from) {
				r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ScheduleMissed", "Schedule",
					"spec.schedules %s: times between %s and %s were missed (the manager was not running) and are skipped",
					sch.Name, st.LastScheduleTime.UTC().Format(time.RFC3339), from.Format(time.RFC3339))
			}
		}
		// Every time due since then, in order: a leader change or a
		// short stop loses none.
		var notQueued error
		for t := s.Next(from); !t.IsZero() && !t.After(now); t = s.Next(t) {
			if notQueued = r.queue(ctx, fn, sch, t, now); notQueued != nil {
				r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ScheduleNotQueued", "Schedule",
					"spec.schedules %s: the Event for %s was not queued, retrying: %v", sch.Name, t.Format(time.RFC3339), notQueued)
				failed = notQueued
				break
			}
			log.FromContext(ctx).Info("scheduled Event queued", "schedule", sch.Name, "time", t)
			st.LastScheduleTime = &metav1.Time{Time: t}
		}
		if notQueued != nil {
			// The next time stays the one not queued yet.
			statuses = append(statuses, st)
			continue
		}
		st.NextScheduleTime = nil
		if next := s.Next(now); !next.IsZero() {
			st.NextScheduleTime = &metav1.Time{Time: next}
			if soonest.IsZero() || next.Before(soonest) {
				soonest = next
			}
		}
		statuses = append(statuses, st)
	}
	fn.Status.Schedules = statuses
	if !equality.Semantic.DeepEqual(before.Status.Schedules, fn.Status.Schedules) {
		if err := r.Status().Patch(ctx, fn, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	if failed != nil {
		return ctrl.Result{}, failed
	}
	if soonest.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: soonest.Sub(r.now()) + 10*time.Millisecond}, nil
}

// queue publishes the Event of sch at t: EventBridge's Scheduled Event, or
// the schedule's constant input.
func (r *ScheduleReconciler) queue(ctx context.Context, fn *lambdapodv1alpha1.Function, sch *lambdapodv1alpha1.Schedule, t, now time.Time) error {
	key := fmt.Sprintf("%s/%s/%d", fn.UID, sch.Name, t.Unix())
	id := uuid.NewSHA1(scheduleSpace, []byte(key)).String()
	payload, err := ScheduledEvent(r.Region, fn, sch, t)
	if err != nil {
		return err
	}
	return r.Queue.Publish(ctx, &eventqueue.Event{RequestID: id, Namespace: fn.Namespace, Name: fn.Name,
		Attempt: 1, Accepted: now, Payload: payload})
}

// ScheduledEvent is the payload of sch's invocation at t: the schedule's
// input, or the event EventBridge sends a rule's target (the rule named
// <namespace>.<function>.<schedule>).
func ScheduledEvent(region string, fn *lambdapodv1alpha1.Function, sch *lambdapodv1alpha1.Schedule, t time.Time) ([]byte, error) {
	if sch.Input != nil && len(sch.Input.Raw) > 0 {
		return sch.Input.Raw, nil
	}
	return json.Marshal(lambdaevents.CloudWatchEvent{
		Version:    "0",
		ID:         uuid.NewSHA1(scheduleSpace, fmt.Appendf(nil, "event/%s/%s/%d", fn.UID, sch.Name, t.Unix())).String(),
		DetailType: "Scheduled Event",
		Source:     "aws.events",
		AccountID:  invokeapi.AccountID,
		Time:       t.UTC(),
		Region:     region,
		Resources:  []string{"arn:aws:events:" + region + ":" + invokeapi.AccountID + ":rule/" + fn.Namespace + "." + fn.Name + "." + sch.Name},
		Detail:     json.RawMessage("{}"),
	})
}

// SetupWithManager runs the reconciler on spec changes; times come by
// requeueing.
func (r *ScheduleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&lambdapodv1alpha1.Function{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("schedule").
		Complete(r)
}

// Package controllers reconciles Functions into the objects that run them.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/controllers/imageconfig"
	"github.com/lambdapod/lambdapod/controllers/resources"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// FunctionReconciler turns a Function into a Deployment and a Service.
type FunctionReconciler struct {
	client.Client
	// APIReader reads objects the cache does not hold: it holds only
	// lambdapod's, and a name may be taken by someone else's. It also
	// reads the Deployment just applied, which the cache may not have yet,
	// and the ReplicaSets and pods its status does not tell about.
	APIReader client.Reader
	Config    resources.Config
	Recorder  events.EventRecorder
	// Images reads what an image runs, for Functions without
	// spec.runtime.command, and whether it carries the supervisor; nil
	// leaves the supervisor to look where Lambda does, brought by a volume.
	Images ImageConfigs
	// BuildConfig returns the build configuration (step images and the
	// like) when a build is made; nil means the compiled-in defaults.
	BuildConfig func(context.Context) (build.Config, error)
	// Triggers carries push webhook announcements; SetupWithManager makes
	// one if nil.
	Triggers *Triggers

	builds          builds
	tektonInstalled bool
}

// ImageConfigs returns an image's ENTRYPOINT, CMD, USER and labels.
type ImageConfigs interface {
	Config(ctx context.Context, image string) (imageconfig.Config, error)
}

// +kubebuilder:rbac:groups=lambdapod.io,resources=functions,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambdapod.io,resources=functions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=list
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=tekton.dev,resources=pipelineruns,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=tekton.dev,resources=taskruns,verbs=get

// Secrets: get only, cluster-wide. The manager reads one Secret per
// Function, the one spec.source.git.secretRef names in the Function's
// namespace (git credentials for builds, the webhook secret for push
// hooks), always by name through the APIReader: no cache or informer holds
// Secrets, so it never needs list or watch, which would let it read every
// Secret. Functions can be in any namespace, and no narrower grant covers
// Secrets named by users in namespaces not known at install time.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// The build ConfigMap (--build-configmap, in the manager's own namespace) is
// the only ConfigMap the manager reads: a Role in that namespace, for that
// name only. "system" and "build-config" are config/'s names before
// config/default's namespace and namePrefix, which kustomize rewrites here as
// it does in config/manager; the chart renders the Role in the release's
// namespace for <fullname>-build-config.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get,resourceNames=build-config,namespace=system

// Reconcile is one pass over a Function. Its steps, in order, leave what
// they found on one scope and return what stands in their way; summarize
// then turns all of it into the status at once, so that no step alone
// decides what the conditions say.
func (r *FunctionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fn := &lambdapodv1alpha1.Function{}
	if err := r.Get(ctx, req.NamespacedName, fn); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fn.DeletionTimestamp.IsZero() {
		// Owned objects go with the Function through garbage collection.
		return ctrl.Result{}, nil
	}
	s := newScope(fn)
	for _, step := range []func(context.Context, *scope) error{
		r.reconcileSource,
		r.reconcileNetworkPolicy,
		r.reconcileDeployment,
		r.reconcileService,
		r.reconcileRollout,
	} {
		if !s.record(step(ctx, s)) {
			break
		}
	}
	return r.patchStatus(ctx, s)
}

// reconcileSource picks the image the Deployment runs: the image source as
// it is, or the last image a build produced for a git source.
func (r *FunctionReconciler) reconcileSource(ctx context.Context, s *scope) error {
	fn := s.fn
	if fn.Spec.Source.Image != "" {
		fn.Status.Image = fn.Spec.Source.Image
		fn.Status.Commit = ""
		fn.Status.LatestBuild = nil
		s.image = fn.Spec.Source.Image
		return nil
	}
	image, poll, err := r.gitImage(ctx, s)
	s.image = image
	s.recheckIn(poll)
	if err == nil && image == "" {
		return waiting("", "AwaitingBuild", errors.New("no image has been built from the git source yet"))
	}
	return err
}

// reconcileDeployment applies the Deployment that runs s.image.
func (r *FunctionReconciler) reconcileDeployment(ctx context.Context, s *scope) error {
	fn, image := s.fn, s.image
	current := &appsv1.Deployment{}
	exists, err := r.getOwned(ctx, s, "Deployment", current)
	if err != nil {
		return err
	}
	if !exists {
		current = nil
	}

	// replicas belongs to the autoscaler. Until its field manager holds the
	// field, this apply sets it (to minReplicas on creation), and the claim
	// below hands it over, so dropping it from later applies never resets
	// it to the default of one pod.
	var replicas *int32
	claimed := current != nil && ownsReplicas(current, contract.AutoscalerFieldManager)
	if !claimed {
		n := fn.Spec.Scale.MinReplicas
		if current != nil && current.Spec.Replicas != nil {
			n = *current.Spec.Replicas
		}
		replicas = &n
	}
	desired := resources.Deployment(r.Config, fn, image, r.imageRun(ctx, fn, image), replicas)
	if err := r.Apply(ctx, desired, client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying Deployment %s: %w", fn.Name, err)
	}
	if !claimed {
		claim := appsv1ac.Deployment(fn.Name, fn.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(*replicas))
		if err := r.Apply(ctx, claim, client.FieldOwner(contract.AutoscalerFieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("handing Deployment %s's replicas to the autoscaler: %w", fn.Name, err)
		}
	}
	// From the API server: the cache may not have seen the apply yet, and
	// the Deployment before it would tell the old template's rollout.
	applied := &appsv1.Deployment{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(fn), applied); err != nil {
		return fmt.Errorf("reading Deployment %s: %w", fn.Name, err)
	}
	if current == nil {
		r.Recorder.Eventf(fn, applied, corev1.EventTypeNormal, "DeploymentCreated", "Create",
			"created Deployment %s with %d replicas", fn.Name, *replicas)
	}
	s.deploy = applied
	return nil
}

// imageRun is what the pod needs of the image: the bootstrap the
// supervisor runs (spec.runtime.command, else what the image would run),
// where the image carries the supervisor, if it does (its
// contract.SupervisorLabel, which builds set), and its user, for the uid.
// An image whose config cannot be read still gets a pod: its supervisor
// comes through a volume and looks for /var/runtime/bootstrap,
// /var/task/bootstrap and /opt/bootstrap (a warning says so when
// spec.runtime.command is not set), and it runs as uid 993 unless
// spec.runtime sets runAsUser or runAsRoot.
func (r *FunctionReconciler) imageRun(ctx context.Context, fn *lambdapodv1alpha1.Function, image string) resources.ImageRun {
	run := resources.ImageRun{Bootstrap: fn.Spec.Runtime.Command}
	if r.Images == nil {
		return run
	}
	config, err := r.Images.Config(ctx, image)
	if err != nil {
		if len(run.Bootstrap) == 0 {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ImageConfigUnavailable", "Reconcile",
				"cannot read the entrypoint of %s, so the Lambda locations of the bootstrap are used; set spec.runtime.command to choose: %v", image, err)
		}
		return run
	}
	if len(run.Bootstrap) == 0 {
		run.Bootstrap = config.Command
	}
	run.Supervisor = config.Labels[contract.SupervisorLabel]
	run.User = config.User
	return run
}

// ownsReplicas reports whether manager holds the Deployment's spec.replicas.
func ownsReplicas(d *appsv1.Deployment, manager string) bool {
	for _, mf := range d.ManagedFields {
		if mf.Manager == manager && mf.Operation == metav1.ManagedFieldsOperationApply &&
			mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) {
			return true
		}
	}
	return false
}

// reconcileService applies the Service whose EndpointSlices tell the
// activator where the Function's pods are.
func (r *FunctionReconciler) reconcileService(ctx context.Context, s *scope) error {
	fn := s.fn
	if _, err := r.getOwned(ctx, s, "Service", &corev1.Service{}); err != nil {
		return err
	}
	if err := r.Apply(ctx, resources.Service(fn), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying Service %s: %w", fn.Name, err)
	}
	return nil
}

// reconcileNetworkPolicy applies the NetworkPolicy that admits only the
// activators to the Function's pods, before there are pods; with policies
// turned off, it removes the one it made before.
func (r *FunctionReconciler) reconcileNetworkPolicy(ctx context.Context, s *scope) error {
	fn := s.fn
	np := &networkingv1.NetworkPolicy{}
	exists, err := r.getOwned(ctx, s, "NetworkPolicy", np)
	if err != nil {
		return err
	}
	if r.Config.Ingress == nil {
		if exists {
			if err := r.Delete(ctx, np); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting NetworkPolicy %s: %w", fn.Name, err)
			}
		}
		return nil
	}
	if err := r.Apply(ctx, resources.NetworkPolicy(r.Config, fn), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying NetworkPolicy %s: %w", fn.Name, err)
	}
	return nil
}

// conflictRecheck is how often a Function blocked by an object it does not
// own looks again: that object's deletion sends no event to this
// controller, whose cache holds only lambdapod's own objects.
const conflictRecheck = time.Minute

// getOwned reads the object named like the Function into obj. It returns
// false if there is none, and an OwnershipConflict stall if the Function
// does not control it.
func (r *FunctionReconciler) getOwned(ctx context.Context, s *scope, kind string, obj client.Object) (bool, error) {
	fn := s.fn
	key := client.ObjectKeyFromObject(fn)
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		// Not among lambdapod's: ask the API server whether someone else's
		// object has the name.
		err = r.APIReader.Get(ctx, key, obj)
	}
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %s: %w", kind, fn.Name, err)
	case !metav1.IsControlledBy(obj, fn):
		s.recheckIn(conflictRecheck)
		return false, stalled("", "OwnershipConflict",
			fmt.Errorf("%s %s/%s exists and is owned by someone else: delete or rename it, or rename the Function", kind, fn.Namespace, fn.Name))
	}
	return true, nil
}

// patchStatus writes what this pass found, and returns what
// controller-runtime is told.
func (r *FunctionReconciler) patchStatus(ctx context.Context, s *scope) (ctrl.Result, error) {
	fn := s.fn
	fn.Status.ObservedGeneration = fn.Generation
	fn.Status.URL = resources.URL(r.Config, fn)
	result, err := s.summarize(r.Recorder)
	if perr := r.Status().Patch(ctx, fn, client.MergeFrom(s.before)); perr != nil && !apierrors.IsNotFound(perr) {
		// Without s's stall, which would make the error terminal: an
		// unwritten status must be tried again.
		return ctrl.Result{}, errors.Join(s.err, fmt.Errorf("writing status: %w", perr))
	}
	ready := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	log.FromContext(ctx).V(1).Info("reconciled", "ready", ready.Status, "reason", ready.Reason)
	return result, err
}

// SetupWithManager registers the controller: Functions, the Deployments,
// Services and (when Tekton is installed) PipelineRuns they own, their
// pods' failures to start, and the push webhook's triggers.
func (r *FunctionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Triggers == nil {
		r.Triggers = NewTriggers()
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&lambdapodv1alpha1.Function{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// A pod that cannot start (its image, a crash loop) changes nothing
		// in its Deployment's status: its own updates say so.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podFunction), builder.WithPredicates(podStartChanged())).
		WatchesRawSource(source.Channel(r.Triggers.ch, &handler.EnqueueRequestForObject{})).
		Named("function")
	// Without Tekton's CRDs the manager still runs image Functions; git
	// sources then say that Tekton is missing.
	gvk := tektonv1.SchemeGroupVersion.WithKind("PipelineRun")
	if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
		r.tektonInstalled = true
		b = b.Owns(&tektonv1.PipelineRun{}, builder.WithPredicates(succeededChanged()))
	} else {
		mgr.GetLogger().Info("Tekton Pipelines is not installed: git sources will not be built", "reason", err.Error())
	}
	return b.Complete(r)
}

// CacheOptions cache only lambdapod's own Deployments, Services, pods and
// PipelineRuns (every object read through the cache but Functions carries
// the managed-by label), so the manager's memory follows the number of
// Functions, not of workloads or builds; pods are trimmed to what tells
// whether they can start (trimPod). A default selector rather than one
// per kind, because a per-kind entry for PipelineRuns would stop the manager
// from starting on a cluster without Tekton.
func CacheOptions() cache.Options {
	ours := labels.SelectorFromSet(labels.Set{contract.LabelManagedBy: contract.ManagedByValue})
	return cache.Options{
		DefaultLabelSelector: ours,
		ByObject: map[client.Object]cache.ByObject{
			&lambdapodv1alpha1.Function{}: {Label: labels.Everything()},
			&corev1.Pod{}:                 {Transform: trimPod},
		},
	}
}

// The manager reconciles Functions into Deployments and Services, builds
// git sources with Tekton, receives git push webhooks and runs the
// autoscaler. As `manager build-step clone|image|add-supervisor`, the same
// binary is a step of those builds.
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/go-logr/logr"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/controllers/build"
	"github.com/lambdapod/lambdapod/controllers/imageconfig"
	"github.com/lambdapod/lambdapod/controllers/resources"
	"github.com/lambdapod/lambdapod/internal/autoscaler"
	"github.com/lambdapod/lambdapod/internal/buildstep"
	"github.com/lambdapod/lambdapod/internal/invokekey"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/internal/scheme"
	"github.com/lambdapod/lambdapod/internal/webhook"
)

// Leader election holds one Lease, in the manager's own namespace (the
// in-cluster default of controller-runtime): a Role there, with what
// client-go's lease lock does (get, create, update). A cluster-wide grant
// would let the manager read and take over every other component's leases.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=system

func main() {
	if len(os.Args) > 1 && os.Args[1] == "build-step" {
		os.Exit(buildstep.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	var (
		metricsAddr, probeAddr string
		autoscalerAddr         string
		leaderElect            bool
		cfg                    resources.Config
		bo                     buildOptions
		sec                    security
		eventQueue             string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 turns it off")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.StringVar(&autoscalerAddr, "autoscaler-bind-address", ":8083", "where activators report per-function concurrency (POST /v1/stats)")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that several replicas can run with one active")
	flag.StringVar(&cfg.SidecarImage, "sidecar-image", envOr("LAMBDAPOD_SIDECAR_IMAGE", "lambdapod/runtime-sidecar:latest"), "image of the runtime sidecar and the supervisor")
	flag.StringVar(&cfg.Region, "region", envOr("LAMBDAPOD_REGION", "us-east-1"), "AWS_REGION as functions see it")
	flag.StringVar(&cfg.ActivatorURL, "activator-url", envOr("LAMBDAPOD_ACTIVATOR_URL", "http://lambdapod-activator.lambdapod-system.svc"), "the activator's base URL, for functions' status.url")
	flag.StringVar(&cfg.Domain, "domain", os.Getenv("LAMBDAPOD_DOMAIN"), "serve functions at <name>.<namespace>.<domain> instead of under the activator URL")
	flag.StringVar(&cfg.DomainScheme, "domain-scheme", envOr("LAMBDAPOD_DOMAIN_SCHEME", "http"), "scheme of the host-routed URLs in functions' status.url (https when the Ingress terminates TLS)")
	flag.StringVar(&bo.webhookAddr, "webhook-bind-address", envOr("LAMBDAPOD_WEBHOOK_BIND_ADDRESS", ":8082"), "where git push webhooks are received (POST /hooks/<namespace>/<function>); 0 turns it off")
	flag.StringVar(&bo.configMap, "build-configmap", envOr("LAMBDAPOD_BUILD_CONFIGMAP", "lambdapod-build-config"), "the ConfigMap of build step images and settings, in the manager's namespace (POD_NAMESPACE)")
	bo.namespace = envOr("POD_NAMESPACE", "lambdapod-system")
	flag.BoolVar(&sec.reportAuth, "autoscaler-auth", true, "take autoscaler reports only with the token of an -autoscaler-reporters ServiceAccount, checked with a TokenReview; false takes them from anyone who reaches the port (development only)")
	// The activator's ServiceAccount as config/default and the chart with
	// release name lambdapod name it; the chart passes its own.
	flag.StringVar(&sec.reporters, "autoscaler-reporters", autoscaler.ServiceAccountUser(bo.namespace, "lambdapod-activator"), "comma-separated ServiceAccounts (system:serviceaccount:<namespace>:<name>) whose tokens may report load to the autoscaler: the activators'")
	flag.BoolVar(&sec.networkPolicies, "network-policies", true, "give every Function a NetworkPolicy that admits only the activators (-activator-pod-labels in POD_NAMESPACE) to its pods; needs a network plugin that enforces NetworkPolicies")
	flag.StringVar(&sec.activatorLabels, "activator-pod-labels", "app.kubernetes.io/name=lambdapod,app.kubernetes.io/component=activator", "labels (k=v,...) of the activators' pods, in POD_NAMESPACE, which function pods' NetworkPolicies admit")
	flag.BoolVar(&sec.invokeTokens, "invoke-tokens", true, "function pods take invocations only with a token the activators signed (key in the Secret "+invokekey.Name+" of POD_NAMESPACE); false lets anyone who reaches a pod invoke it (development only)")
	opts := zap.Options{}
	flag.StringVar(&eventQueue, "event-queue", os.Getenv("LAMBDAPOD_EVENT_QUEUE"), "the activators' NATS server(s) with JetStream (their -event-queue), e.g. nats://lambdapod-nats.lambdapod-system.svc:4222: the leader queues the Events of spec.schedules there and counts each Function's pending events (empty: no schedules run)")
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if cfg.DomainScheme != "http" && cfg.DomainScheme != "https" {
		log.Error(nil, "--domain-scheme: want http or https", "value", cfg.DomainScheme)
		os.Exit(2)
	}
	if sec.networkPolicies {
		set, err := labels.ConvertSelectorToLabelsMap(sec.activatorLabels)
		if err != nil || len(set) == 0 {
			log.Error(err, "-activator-pod-labels: want k=v[,k=v...]", "value", sec.activatorLabels)
			os.Exit(2)
		}
		cfg.Ingress = &resources.IngressPolicy{ActivatorNamespace: bo.namespace, ActivatorLabels: set}
	}
	if err := run(cfg, bo, sec, eventQueue, metricsAddr, probeAddr, autoscalerAddr, leaderElect); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// buildOptions configure builds of git sources and their push webhook.
type buildOptions struct {
	webhookAddr, configMap, namespace string
}

// security says who may report load to the autoscaler and who may invoke
// a function pod.
type security struct {
	reportAuth      bool
	reporters       string
	invokeTokens    bool
	networkPolicies bool
	activatorLabels string
}

func run(cfg resources.Config, bo buildOptions, sec security, eventQueue, metricsAddr, probeAddr, autoscalerAddr string, leaderElect bool) error {
	ctx := ctrl.SetupSignalHandler()
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme.New(),
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "lambdapod-manager.lambdapod.io",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if sec.invokeTokens {
		if cfg.InvokeKey, err = invokeKey(ctx, mgr.GetConfig(), bo.namespace); err != nil {
			return err
		}
	} else {
		ctrl.Log.WithName("setup").Info("-invoke-tokens=false: anyone who reaches a function pod can invoke it, past the activators")
	}
	r := &controllers.FunctionReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Config:    cfg,
		Recorder:  mgr.GetEventRecorder("lambdapod"),
		Images:    imageconfig.New(),
		BuildConfig: build.ConfigMapSource{
			Reader: mgr.GetAPIReader(), Namespace: bo.namespace, Name: bo.configMap,
		}.Load,
		Triggers: controllers.NewTriggers(),
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Function controller: %w", err)
	}
	if bo.webhookAddr != "0" {
		// Every replica serves the hook; those that do not lead answer 503,
		// as only the leader's reconciler would act on a push.
		hooks := &webhook.Handler{Functions: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Trigger: r.Triggers,
			Leader: webhook.Elected(mgr.Elected())}
		if err := mgr.Add(&webhook.Server{Addr: bo.webhookAddr, Handler: hooks}); err != nil {
			return fmt.Errorf("adding the push webhook receiver: %w", err)
		}
	}
	if err := setupSchedules(mgr, eventQueue, cfg.Region); err != nil {
		return err
	}
	// The autoscaler decides on the leader only; every replica receives
	// reports, and non-leaders answer 503 so activators try again. Only the
	// activators may report: anyone else could scale any function to its
	// maxReplicas, or keep it from scaling to zero.
	var asOpts autoscaler.Options
	if sec.reportAuth {
		reviews, err := authenticationv1client.NewForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("the TokenReview client: %w", err)
		}
		if asOpts.Auth, err = autoscaler.NewReporterAuth(reviews.TokenReviews(), strings.Split(sec.reporters, ",")); err != nil {
			return fmt.Errorf("-autoscaler-reporters: %w", err)
		}
		ctrl.Log.WithName("setup").Info("autoscaler reports need an activator's token", "reporters", asOpts.Auth.Reporters())
	} else {
		ctrl.Log.WithName("setup").Info("-autoscaler-auth=false: anyone who reaches the autoscaler's port can report load for any function")
	}
	as := autoscaler.New(mgr.GetClient(), asOpts)
	if err := mgr.Add(as); err != nil {
		return fmt.Errorf("adding the autoscaler: %w", err)
	}
	if err := mgr.Add(as.StatsServer(autoscalerAddr)); err != nil {
		return fmt.Errorf("adding the autoscaler's stats receiver: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// setupSchedules runs spec.schedules and counts pending events in the
// activators' event queue, when the manager has one.
func setupSchedules(mgr ctrl.Manager, url, region string) error {
	sr := &controllers.ScheduleReconciler{Client: mgr.GetClient(), Region: region, Recorder: mgr.GetEventRecorder("lambdapod")}
	if url != "" {
		q, err := eventqueue.Dial(eventqueue.Config{URL: url, Log: slog.New(logr.ToSlogHandler(ctrl.Log.WithName("eventqueue")))})
		if err != nil {
			return fmt.Errorf("--event-queue: %w", err)
		}
		sr.Queue = q
		if err := mgr.Add(&controllers.PendingEvents{Client: mgr.GetClient(), Queue: q}); err != nil {
			return fmt.Errorf("adding the pending events counter: %w", err)
		}
	} else {
		ctrl.Log.WithName("setup").Info("no --event-queue: spec.schedules do not run, and status.pendingEvents is not kept")
	}
	if err := sr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the schedule controller: %w", err)
	}
	return nil
}

// invokeKey is the activators' public key, for function pods, from the
// Secret in the manager's namespace, made first if no activator has made
// it yet.
func invokeKey(ctx context.Context, rc *rest.Config, namespace string) (string, error) {
	cs, err := corev1client.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	key, err := invokekey.Wait(ctx, cs.Secrets(namespace), 2*time.Minute, func(err error) {
		ctrl.Log.WithName("setup").Info("waiting for the invoke key Secret", "err", err.Error())
	})
	if err != nil {
		return "", fmt.Errorf("the invoke key Secret %s/%s: %w", namespace, invokekey.Name, err)
	}
	return invoketoken.EncodePublicKey(key.Public().(ed25519.PublicKey)), nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

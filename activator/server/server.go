// Package server assembles the activator: informers for Functions and
// EndpointSlices, the per-function pools, the request chain, the autoscaler
// reporter, and the main and admin HTTP servers with a graceful stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lambdapod/lambdapod/activator/auth"
	"github.com/lambdapod/lambdapod/activator/endpoints"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/functions"
	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokekey"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
	"github.com/lambdapod/lambdapod/internal/stats"
)

// Config is the activator's configuration (see activator/cmd for the flags).
type Config struct {
	Listen, AdminListen string
	Handler             handler.Options
	MaxQueue            int
	// MaxConnections caps the open client connections (each costs memory
	// whether or not it sends anything); more wait in the listen backlog.
	MaxConnections int
	AutoscalerURL  string
	ReportInterval time.Duration

	// AutoscalerTokenFile is the projected ServiceAccount token the
	// autoscaler checks on every report ("": none).
	AutoscalerTokenFile string
	// DrainDelay is how long readiness fails before the listener closes.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests at a stop.
	ShutdownTimeout time.Duration
	// EndpointSliceSelector selects the slices of functions' Services.
	EndpointSliceSelector string
	// Namespace restricts the informers to one namespace ("" for all).
	Namespace   string
	PodPort     int32
	ActivatorID string
	// NoProbeNotReady turns off the direct /readyz probing of not-ready
	// endpoints (on by default): pods then join the rotation only when
	// their EndpointSlice says ready.
	NoProbeNotReady bool
	Logger          *slog.Logger

	// InvokeAuth checks the callers of functions that are not public
	// (package auth); AuthCacheTTL is how long identities and decisions
	// are cached; SystemNamespace holds the access key Secrets ("": none).
	InvokeAuth      bool
	AuthCacheTTL    time.Duration
	SystemNamespace string
	// InvokeTokens signs every invocation with the key in the Secret
	// invokekey.Name of SystemNamespace (made if missing), for pods that
	// take invocations only from the activators (package invoketoken).
	InvokeTokens bool
	// Events, with a URL, keeps Event invocations in NATS JetStream
	// (package eventqueue) instead of the activator's memory.
	Events eventqueue.Config
}

// Activator is a configured activator.
type Activator struct {
	cfg      Config
	log      *slog.Logger
	cache    cache.Cache
	pools    *queue.Registry
	fns      *functions.Store
	tracker  *endpoints.Tracker
	reporter *stats.Reporter
	chain    *handler.Chain
	authz    *auth.Authorizer
	keys     *auth.KeyStore
	secrets  corev1client.SecretInterface // the invoke key's, with InvokeTokens
	srv      *http.Server
	parker   *park.Parker
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	ready    atomic.Bool
	draining atomic.Bool
	// Addr and AdminAddr are the bound addresses once Run has started.
	addr, adminAddr atomic.Value
	listening       chan struct{}
}

// New builds an activator that watches the API server at rc.
func New(cfg Config, rc *rest.Config) (*Activator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PodPort == 0 {
		cfg.PodPort = contract.InvokePort
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Minute
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1000
	}
	sel, err := labels.Parse(cfg.EndpointSliceSelector)
	if err != nil {
		return nil, fmt.Errorf("endpointslice selector: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := lambdapodv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	opts := cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&discoveryv1.EndpointSlice{}: {Label: sel},
		},
	}
	if cfg.Namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{cfg.Namespace: {}}
	}
	if cfg.InvokeAuth && cfg.SystemNamespace != "" {
		// Only the access key Secrets of the system namespace.
		opts.ByObject[&corev1.Secret{}] = cache.ByObject{
			Label:      labels.SelectorFromSet(labels.Set{auth.KeyLabel: "true"}),
			Namespaces: map[string]cache.Config{cfg.SystemNamespace: {}},
		}
	}
	c, err := cache.New(rc, opts)
	if err != nil {
		return nil, err
	}
	a := &Activator{cfg: cfg, log: cfg.Logger, cache: c, listening: make(chan struct{})}
	a.pools = queue.NewRegistry(cfg.MaxQueue)
	a.fns = functions.NewStore()
	a.pools.Capacity = a.fns.Concurrency
	a.fns.OnChange = func(k queue.Key, f handler.Function) { a.pools.SetCapacity(k, f.Concurrency) }
	a.tracker = endpoints.NewTracker(a.pools, cfg.PodPort)
	if cfg.AutoscalerURL != "" {
		a.reporter = stats.NewReporter(cfg.AutoscalerURL, cfg.ActivatorID, a.collect)
		a.reporter.Interval = cfg.ReportInterval
		a.reporter.TokenFile = cfg.AutoscalerTokenFile
	}
	a.pools.OnCold = func(k queue.Key) {
		if a.reporter != nil {
			a.reporter.Poke()
		}
	}
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = metrics.New(a.reg, a.pools)
	if !cfg.NoProbeNotReady {
		a.tracker.Probe = &endpoints.Probe{OnReady: func(k queue.Key, addr string) {
			a.metrics.ProbeReady.WithLabelValues(k.Namespace, k.Name).Inc()
			a.log.Debug("pod ready by probe, before its EndpointSlice", "namespace", k.Namespace, "function", k.Name, "addr", addr)
		}}
	}
	if a.reporter != nil {
		a.reporter.OnResult = func(err error) {
			if err != nil {
				a.metrics.Reports.WithLabelValues("error").Inc()
				a.log.Debug("autoscaler report failed", "err", err)
				return
			}
			a.metrics.Reports.WithLabelValues("ok").Inc()
		}
	}
	var cs kubernetes.Interface
	if cfg.InvokeAuth || cfg.InvokeTokens {
		if cs, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, err
		}
	}
	if cfg.InvokeTokens {
		if cfg.SystemNamespace == "" {
			return nil, errors.New("invoke tokens need SystemNamespace (-system-namespace, or POD_NAMESPACE), which holds their key")
		}
		a.secrets = cs.CoreV1().Secrets(cfg.SystemNamespace)
	}
	if cfg.InvokeAuth {
		var keys auth.Keys
		if cfg.SystemNamespace != "" {
			a.keys = auth.NewKeyStore()
			keys = a.keys
		}
		a.authz = auth.New(cs.AuthenticationV1().TokenReviews(), cs.AuthorizationV1().SubjectAccessReviews(), keys,
			auth.Options{TTL: cfg.AuthCacheTTL, Region: cfg.Handler.Region})
	}
	inv := proxy.New()
	// Keep-alive connections to a pod that left would stay open for ever:
	// no request goes there again to find them closed.
	a.pools.OnGone = inv.CloseIdle
	a.chain = handler.New(cfg.Handler, a.fns, a.pools, inv, a.metrics)
	if cfg.Events.URL != "" {
		a.chain.UseDurableEvents()
	}
	if a.authz != nil {
		a.chain.SetAuthorizer(a.authz)
	}
	// No ReadTimeout or WriteTimeout: an invocation may take 15 minutes.
	// The header has ReadHeaderTimeout, the body the chain's own read
	// deadline, an idle connection IdleTimeout.
	a.srv = &http.Server{Handler: a.chain, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	// Requests held while their function has no free pod park without a
	// goroutine or buffers each (package park).
	a.parker = park.New(a.srv)
	a.chain.SetParker(a.parker)
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lambdapod_activator_parked_requests",
		Help: "Requests held without a goroutine of their own while their function has no free pod (a subset of the queued requests).",
	}, func() float64 { return float64(a.parker.Parked()) }))
	return a, nil
}

// collect snapshots every pool for the autoscaler.
func (a *Activator) collect() []stats.Stat {
	var out []stats.Stat
	a.pools.Each(func(k queue.Key, p *queue.Pool) {
		s := p.Snapshot()
		if s.Concurrency == 0 && s.InFlight == 0 && s.Queued == 0 && s.Requests == 0 {
			return
		}
		out = append(out, stats.Stat{Namespace: k.Namespace, Name: k.Name, Concurrency: s.Concurrency,
			InFlight: s.InFlight, Queued: s.Queued, Requests: s.Requests})
	})
	return out
}

// Handler is the request chain (for tests that serve it themselves).
func (a *Activator) Handler() http.Handler { return a.chain }

// Pools gives the per-function pools (for tests and benchmarks).
func (a *Activator) Pools() *queue.Registry { return a.pools }

// Addr is the main listener's address once Listening is closed.
func (a *Activator) Addr() string { v, _ := a.addr.Load().(string); return v }

// AdminAddr is the admin listener's address once Listening is closed.
func (a *Activator) AdminAddr() string { v, _ := a.adminAddr.Load().(string); return v }

// Listening is closed once both listeners are bound and the caches synced.
func (a *Activator) Listening() <-chan struct{} { return a.listening }

func (a *Activator) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case a.draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !a.ready.Load():
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}

// Run serves until ctx ends, then drains: readiness fails, DrainDelay
// passes, the listener closes and in-flight requests finish.
func (a *Activator) Run(ctx context.Context) error {
	fi, err := a.cache.GetInformer(ctx, &lambdapodv1alpha1.Function{})
	if err != nil {
		return err
	}
	if _, err := fi.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.upsertFunction(o) },
		UpdateFunc: func(_, o any) { a.upsertFunction(o) },
		DeleteFunc: func(o any) { a.deleteFunction(o) },
	}); err != nil {
		return err
	}
	ei, err := a.cache.GetInformer(ctx, &discoveryv1.EndpointSlice{})
	if err != nil {
		return err
	}
	if _, err := ei.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.upsertSlice(o) },
		UpdateFunc: func(_, o any) { a.upsertSlice(o) },
		DeleteFunc: func(o any) { a.deleteSlice(o) },
	}); err != nil {
		return err
	}
	if a.keys != nil {
		si, err := a.cache.GetInformer(ctx, &corev1.Secret{})
		if err != nil {
			return err
		}
		if _, err := si.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { a.upsertKey(o) },
			UpdateFunc: func(_, o any) { a.upsertKey(o) },
			DeleteFunc: func(o any) { a.deleteKey(o) },
		}); err != nil {
			return err
		}
	}
	cctx, cancelCache := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCache()
	defer a.tracker.Stop() // stops the probes; slices seen later start none
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- a.cache.Start(cctx) }()

	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", a.cfg.AdminListen)
	if err != nil {
		ln.Close()
		return err
	}
	a.addr.Store(ln.Addr().String())
	a.adminAddr.Store(aln.Addr().String())
	srv, parker := a.srv, a.parker
	if a.cfg.MaxConnections > 0 {
		ln = newLimitListener(ln, a.cfg.MaxConnections)
	}
	go func() { _ = parker.Serve() }()
	adm := &http.Server{Handler: a.admin(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = adm.Serve(aln) }()
	defer adm.Close()

	if !a.cache.WaitForCacheSync(ctx) {
		ln.Close()
		return errors.New("informer caches did not sync")
	}
	if a.secrets != nil {
		key, err := invokekey.Wait(ctx, a.secrets, 2*time.Minute, func(err error) {
			a.log.Info("waiting for the invoke key Secret", "err", err.Error())
		})
		if err != nil {
			ln.Close()
			return fmt.Errorf("the invoke key Secret %s/%s: %w", a.cfg.SystemNamespace, invokekey.Name, err)
		}
		a.chain.SetSigner(invoketoken.NewSigner(key))
	}
	a.ready.Store(true)
	rctx, cancelReporter := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReporter()
	if a.reporter != nil {
		go a.reporter.Run(rctx)
	}
	ectx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents()
	eventsDone := make(chan struct{})
	if a.cfg.Events.URL != "" {
		go func() { defer close(eventsDone); a.runEvents(ectx) }()
	} else {
		close(eventsDone)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	close(a.listening)
	a.log.Info("activator serving", "addr", ln.Addr().String(), "admin", aln.Addr().String())

	select {
	case err := <-serveErr:
		return err
	case err := <-cacheErr:
		return fmt.Errorf("informers stopped: %w", err)
	case <-ctx.Done():
	}
	a.draining.Store(true)
	a.log.Info("draining: readiness fails now", "delay", a.cfg.DrainDelay)
	time.Sleep(a.cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	// Then the parked requests: each is resumed (a slot, or the end of
	// its wait) and answered on the parker's server.
	if perr := parker.Shutdown(sctx); err == nil {
		err = perr
	}
	done := make(chan struct{})
	go func() { a.chain.WaitAsync(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
	}
	// No new events from the durable queue; those running end (or go to
	// another activator after the queue's ack wait).
	stopEvents()
	select {
	case <-eventsDone:
	case <-sctx.Done():
	}
	a.log.Info("activator stopped")
	return err
}

// runEvents connects to the durable event queue (again and again until it
// answers: synchronous invocations are served meanwhile, Events refused)
// and runs its events until ctx ends.
func (a *Activator) runEvents(ctx context.Context) {
	cfg := a.cfg.Events
	cfg.Log = a.log.With("component", "eventqueue")
	cfg.Registerer = a.reg
	cfg.Region = a.cfg.Handler.Region
	for attempt := 0; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		q, err := eventqueue.Open(octx, cfg)
		cancel()
		if err == nil {
			defer q.Close()
			a.chain.SetEventQueue(q)
			a.log.Info("event queue connected: Event invocations are stored there before their 202", "url", cfg.URL)
			q.Run(ctx, a.chain.EventPolicy, a.chain.RunEvent)
			return
		}
		a.log.Warn("event queue unreachable: Event invocations are refused (503) until it answers", "url", cfg.URL, "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (a *Activator) upsertFunction(o any) {
	if f, ok := o.(*lambdapodv1alpha1.Function); ok {
		a.fns.Upsert(f)
		// Requests that find no ready pod are answered at once while its
		// pods cannot run, and those held are answered now.
		a.pools.Fail(queue.Key{Namespace: f.Namespace, Name: f.Name}, functions.CannotRun(f))
	}
}

func (a *Activator) deleteFunction(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if f, ok := o.(*lambdapodv1alpha1.Function); ok {
		a.fns.Delete(f.Namespace, f.Name)
		a.pools.Delete(queue.Key{Namespace: f.Namespace, Name: f.Name})
	}
}

func (a *Activator) upsertKey(o any) {
	if s, ok := o.(*corev1.Secret); ok {
		a.keys.Upsert(s)
	}
}

func (a *Activator) deleteKey(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if s, ok := o.(*corev1.Secret); ok {
		a.keys.Delete(s.Namespace, s.Name)
	}
}

func (a *Activator) upsertSlice(o any) {
	if s, ok := o.(*discoveryv1.EndpointSlice); ok {
		a.tracker.Upsert(s)
	}
}

func (a *Activator) deleteSlice(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if s, ok := o.(*discoveryv1.EndpointSlice); ok {
		a.tracker.Delete(s)
	}
}

// DefaultEndpointSliceSelector selects the slices of lambdapod's Services.
const DefaultEndpointSliceSelector = contract.ManagedBySelector

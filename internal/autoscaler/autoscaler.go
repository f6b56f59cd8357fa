// Package autoscaler sets the replicas of every Function's Deployment from
// the concurrency that activators report, down to zero. It runs in the
// manager, on the leader only, and is the only writer of spec.replicas
// (server-side apply, field manager lambdapod-autoscaler).
//
// The decision (Decide) is pure; this file keeps the per-function history
// and writes the Deployments, report.go takes the reports.
//
// Reports are authenticated (auth.go): an activator sends its projected
// ServiceAccount token for the audience stats.TokenAudience, the autoscaler
// checks it with a TokenReview and takes reports only from the allowed
// ServiceAccounts (the manager's -autoscaler-reporters), answering 401 or
// 403 before it reads a byte of the body. Decisions are cached for a
// minute, so an activator costs a TokenReview a minute, not a report. What
// an accepted report can cost and do is still bounded, against an activator
// gone wrong: its size and number of stats (package stats), the activators
// kept (64), only stats of Functions that exist count, and their figures
// are clamped to what the function's maxReplicas can take.
package autoscaler

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/stats"
)

// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=lambdapod.io,resources=functions,verbs=get;list;watch

// Options configure the autoscaler.
type Options struct {
	Params
	// Interval between decisions; 1s by default.
	Interval time.Duration
	// ReportTTL drops an activator's report after this long without a new
	// one (the activator is gone); 5s by default. For as long after it
	// starts, the autoscaler scales up but not down.
	ReportTTL time.Duration
	// Logger, slog.Default() if nil.
	Logger *slog.Logger
	// Auth admits reports from the activators' ServiceAccounts only. Nil
	// takes reports from anyone who reaches the port: for development
	// only (the manager's -autoscaler-auth=false).
	Auth *ReporterAuth
}

// Autoscaler implements manager.Runnable and LeaderElectionRunnable.
type Autoscaler struct {
	c    client.Client
	opts Options
	log  *slog.Logger

	started atomic.Bool
	// warm is when the first reports of every activator are in.
	warm time.Time
	poke chan types.NamespacedName

	mu      sync.Mutex
	reports map[string]activatorReport
	fns     map[types.NamespacedName]*fnState
	now     func() time.Time

	// known is the Functions of the last listing, and those looked up
	// since: reports count only for them.
	knownMu sync.RWMutex
	known   map[types.NamespacedName]fnInfo

	// authErrLogged is when a failed token check was last logged (Unix
	// nanoseconds): a failing API server must not become a log line a
	// report.
	authErrLogged atomic.Int64
}

type activatorReport struct {
	at    time.Time
	loads []load
}

type fnState struct {
	history     *History
	lastTraffic time.Time
	panicUntil  time.Time
	queued      int
}

// New returns an autoscaler that reads Functions and Deployments and patches
// Deployments through c (the manager's cached client).
func New(c client.Client, opts Options) *Autoscaler {
	if opts.StableWindow <= 0 {
		opts.StableWindow = DefaultParams.StableWindow
	}
	if opts.PanicWindow <= 0 {
		opts.PanicWindow = DefaultParams.PanicWindow
	}
	if opts.PanicThreshold <= 0 {
		opts.PanicThreshold = DefaultParams.PanicThreshold
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.ReportTTL <= 0 {
		opts.ReportTTL = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Autoscaler{c: c, opts: opts, log: opts.Logger.With("component", "autoscaler"),
		poke: make(chan types.NamespacedName, 256), reports: map[string]activatorReport{},
		fns: map[types.NamespacedName]*fnState{}, known: map[types.NamespacedName]fnInfo{}, now: time.Now}
}

// NeedLeaderElection makes the manager run the autoscaler on the leader only.
func (a *Autoscaler) NeedLeaderElection() bool { return true }

// Start runs the autoscaler until ctx ends.
func (a *Autoscaler) Start(ctx context.Context) error {
	// Know the Functions before taking reports; else a report's stats
	// would wait for lookups, a few a report, until the first decision.
	var l lambdapodv1alpha1.FunctionList
	if err := a.c.List(ctx, &l); err != nil {
		a.log.Error("listing functions", "err", err)
	} else {
		a.setKnown(l.Items)
	}
	a.mu.Lock()
	a.warm = a.now().Add(a.opts.ReportTTL)
	a.mu.Unlock()
	a.started.Store(true)
	defer a.started.Store(false)
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case k := <-a.poke:
			a.evaluate(ctx, &k)
		case <-t.C:
			a.evaluate(ctx, nil)
		}
	}
}

// Handler takes activators' reports (POST stats.Path, a JSON stats.Report).
// With Options.Auth, a report without a valid token for stats.TokenAudience
// is answered 401, one with the token of another identity than the allowed
// reporters 403, before its body is read; 503 if the token could not be
// checked. A manager that is not the leader answers 503; a report over the
// limits of package stats 413 or 400. Stats of functions that do not exist
// are ignored: an activator may know a function before the autoscaler
// does, so the report is still accepted.
func (a *Autoscaler) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a report", http.StatusMethodNotAllowed)
			return
		}
		// Every replica checks the token, leader or not: who may not
		// report learns nothing, not even which replica leads.
		if a.opts.Auth != nil {
			code, msg, err := a.opts.Auth.check(r)
			if err != nil {
				a.logAuthError(err)
			}
			if code != 0 {
				if code == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="lambdapod-autoscaler"`)
				}
				a.refuse(w, code, msg)
				return
			}
		}
		if !a.started.Load() {
			http.Error(w, "not the leader: the autoscaler runs on the leading manager", http.StatusServiceUnavailable)
			return
		}
		a.serveReport(w, r)
	})
}

// logAuthError logs a failed token check at most every 10 s.
func (a *Autoscaler) logAuthError(err error) {
	now := time.Now().UnixNano()
	last := a.authErrLogged.Load()
	if now-last < int64(10*time.Second) || !a.authErrLogged.CompareAndSwap(last, now) {
		return
	}
	a.log.Error("checking a reporter's token", "err", err)
}

func (a *Autoscaler) stateLocked(k types.NamespacedName) *fnState {
	st := a.fns[k]
	if st == nil {
		span := a.opts.StableWindow
		if a.opts.PanicWindow > span {
			span = a.opts.PanicWindow
		}
		st = &fnState{history: NewHistory(span), lastTraffic: a.now()}
		a.fns[k] = st
	}
	return st
}

// sample folds the fresh reports into each function's history.
func (a *Autoscaler) sampleLocked(now time.Time) {
	sum := map[types.NamespacedName]float64{}
	queued := map[types.NamespacedName]int{}
	for id, r := range a.reports {
		if now.Sub(r.at) > a.opts.ReportTTL {
			delete(a.reports, id)
			continue
		}
		for _, l := range r.loads {
			sum[l.key] += l.concurrency
			queued[l.key] += l.queued
		}
	}
	for k, st := range a.fns {
		st.history.Record(now, sum[k])
		st.queued = queued[k]
	}
}

func (a *Autoscaler) evaluate(ctx context.Context, only *types.NamespacedName) {
	var fns []lambdapodv1alpha1.Function
	if only != nil {
		var f lambdapodv1alpha1.Function
		if err := a.c.Get(ctx, *only, &f); err != nil {
			return
		}
		fns = []lambdapodv1alpha1.Function{f}
	} else {
		var l lambdapodv1alpha1.FunctionList
		if err := a.c.List(ctx, &l); err != nil {
			a.log.Error("listing functions", "err", err)
			return
		}
		fns = l.Items
		a.setKnown(fns)
	}
	now := a.now()
	a.mu.Lock()
	a.sampleLocked(now)
	if only == nil {
		// Forget functions that no longer exist.
		seen := make(map[types.NamespacedName]bool, len(fns))
		for i := range fns {
			seen[types.NamespacedName{Namespace: fns[i].Namespace, Name: fns[i].Name}] = true
		}
		for k := range a.fns {
			if !seen[k] {
				delete(a.fns, k)
			}
		}
	}
	a.mu.Unlock()
	for i := range fns {
		a.scale(ctx, &fns[i], now)
	}
}

// SpecOf reads a Function's scale spec, with the API's defaults.
func SpecOf(f *lambdapodv1alpha1.Function) Spec {
	return Spec{
		Min:              f.Spec.Scale.MinReplicas,
		Max:              f.Spec.Scale.MaxReplicasOrDefault(),
		Target:           float64(f.Spec.TargetConcurrency()),
		ScaleToZeroAfter: f.Spec.Scale.ScaleToZeroAfterOrDefault(),
	}
}

func (a *Autoscaler) scale(ctx context.Context, f *lambdapodv1alpha1.Function, now time.Time) {
	k := types.NamespacedName{Namespace: f.Namespace, Name: f.Name}
	var dep appsv1.Deployment
	if err := a.c.Get(ctx, k, &dep); err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Error("reading deployment", "function", k.String(), "err", err)
		}
		return
	}
	if !metav1.IsControlledBy(&dep, f) && dep.Labels[contract.LabelFunction] != f.Name {
		return // not the function's Deployment; the controller reports that
	}
	current := int32(1)
	if dep.Spec.Replicas != nil {
		current = *dep.Spec.Replicas
	}
	spec := SpecOf(f)
	a.mu.Lock()
	st := a.stateLocked(k)
	in := Input{
		Now:               now,
		Current:           current,
		StableConcurrency: st.history.Avg(now, a.opts.StableWindow),
		PanicConcurrency:  st.history.Avg(now, a.opts.PanicWindow),
		Queued:            st.queued,
		LastTraffic:       st.lastTraffic,
		PanicUntil:        st.panicUntil,
		NoScaleDownBefore: a.warm,
	}
	d := Decide(spec, a.opts.Params, in)
	st.panicUntil = d.PanicUntil
	a.mu.Unlock()
	if d.Replicas == current && ownsReplicas(&dep) {
		return
	}
	ac := appsv1ac.Deployment(dep.Name, dep.Namespace).
		WithSpec(appsv1ac.DeploymentSpec().WithReplicas(d.Replicas))
	if err := a.c.Apply(ctx, ac, client.FieldOwner(contract.AutoscalerFieldManager), client.ForceOwnership); err != nil {
		a.log.Error("scaling", "function", k.String(), "from", current, "to", d.Replicas, "err", err)
		return
	}
	if d.Replicas != current {
		a.log.Info("scaled", "function", k.String(), "from", current, "to", d.Replicas, "reason", d.Reason,
			"stableConcurrency", in.StableConcurrency, "panicConcurrency", in.PanicConcurrency, "queued", in.Queued)
	}
}

// ownsReplicas reports whether the autoscaler's field manager owns
// spec.replicas already.
func ownsReplicas(d *appsv1.Deployment) bool {
	for _, mf := range d.ManagedFields {
		if mf.Manager == contract.AutoscalerFieldManager && mf.Operation == metav1.ManagedFieldsOperationApply &&
			mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) {
			return true
		}
	}
	return false
}

// StatsServer returns a manager.Runnable that serves Handler at stats.Path
// on addr (e.g. ":8083") on every manager replica, leader or not: a
// non-leader answers 503 and the activator retries.
func (a *Autoscaler) StatsServer(addr string) *StatsServer {
	return &StatsServer{Addr: addr, Handler: a.Handler()}
}

// MaxStatsConnections caps the stats receiver's open connections.
const MaxStatsConnections = 256

// StatsServer serves the autoscaler's stats receiver.
type StatsServer struct {
	Addr    string
	Handler http.Handler
	// ReadTimeout bounds the reading of a whole report (10 s if zero).
	ReadTimeout time.Duration
	// listening, if set, is sent the bound address (for tests).
	listening chan<- string
}

// NeedLeaderElection is false: every replica takes reports.
func (s *StatsServer) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *StatsServer) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle(stats.Path, s.Handler)
	// A report's headers are a bearer token (stats.MaxTokenBytes) and a
	// few short ones: 64 KiB is ample, and less to hold than Go's 1 MiB.
	// A report is a few KiB sent at once: 10 s for all of it, and an idle
	// activator connection is closed after a minute. The cap bounds what
	// connections that never send anything cost; activators are a few.
	read := s.ReadTimeout
	if read <= 0 {
		read = 10 * time.Second
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: read, ReadTimeout: read,
		IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	if s.listening != nil {
		s.listening <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(ln, MaxStatsConnections)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// Package metrics defines the runtime sidecar's Prometheus metrics
// (prefix lambdapod_sidecar_).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
)

// Metrics are the sidecar's metrics, registered in their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	invocations map[invocation.Outcome]prometheus.Counter
	durations   map[invocation.Outcome]prometheus.Observer
	InFlight    prometheus.Gauge
	Rejected    *prometheus.CounterVec
	Restarts    *prometheus.CounterVec
	InitSeconds prometheus.Histogram
	// ExtensionEvents counts the events sent to extensions, by type
	// (INVOKE, SHUTDOWN); ExtensionFailures their failures, by Lambda's
	// error type (Extension.Crash, Extension.InitError ...).
	ExtensionEvents   *prometheus.CounterVec
	ExtensionFailures *prometheus.CounterVec
}

// New creates and registers the metrics; queueDepth and ready are sampled
// at scrape time.
func New(queueDepth func() float64, ready func() float64) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	inv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdapod_sidecar_invocations_total",
		Help: "Invocations that ended, by outcome (success, function_error, timeout, runtime_exit, init_error, response_too_large, invalid_response, canceled, shutdown).",
	}, []string{"outcome"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lambdapod_sidecar_invocation_duration_seconds",
		Help:    "Time from handing an invocation to the bootstrap (/next) to its end, by outcome.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	}, []string{"outcome"})
	m := &Metrics{
		Registry:    reg,
		invocations: map[invocation.Outcome]prometheus.Counter{},
		durations:   map[invocation.Outcome]prometheus.Observer{},
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdapod_sidecar_invocations_in_flight",
			Help: "Invocations accepted and not yet ended (queued or running).",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_sidecar_invocations_rejected_total",
			Help: "Invoke requests refused before they were queued, by reason (busy: every slot taken; not_started: no bootstrap took it in the caller's time; queue_full, shutting_down, too_large, not_found, bad_request; refused: no valid invoke token from an activator).",
		}, []string{"reason"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_sidecar_bootstrap_restarts_total",
			Help: "Bootstrap restarts, by reason (timeout, exit, init_error, extension: an extension failed).",
		}, []string{"reason"}),
		InitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdapod_sidecar_init_duration_seconds",
			Help:    "Time from starting a bootstrap to its first /next (the Init phase).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, o := range invocation.Outcomes {
		m.invocations[o] = inv.WithLabelValues(string(o))
		m.durations[o] = dur.WithLabelValues(string(o))
	}
	for _, r := range []string{"busy", "not_started", "queue_full", "shutting_down", "too_large", "not_found", "bad_request", "refused"} {
		m.Rejected.WithLabelValues(r)
	}
	m.ExtensionEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdapod_sidecar_extension_events_total",
		Help: "Events sent to extensions through the Extensions API, by type (INVOKE, SHUTDOWN).",
	}, []string{"type"})
	m.ExtensionFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdapod_sidecar_extension_failures_total",
		Help: "Extension failures that reset the execution environment, by error type (Extension.Crash, Extension.InitError, Extension.ExitError, Extension.LaunchError).",
	}, []string{"type"})
	for _, r := range []string{"timeout", "exit", "init_error", "extension"} {
		m.Restarts.WithLabelValues(r)
	}
	reg.MustRegister(inv, dur, m.InFlight, m.Rejected, m.Restarts, m.InitSeconds, m.ExtensionEvents, m.ExtensionFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdapod_sidecar_queue_depth",
			Help: "Invocations waiting for a free bootstrap.",
		}, queueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdapod_sidecar_ready",
			Help: "1 when every bootstrap has called /next and the sidecar is not draining.",
		}, ready),
	)
	return m
}

// Ended records an invocation's end; seconds < 0 means it never ran.
func (m *Metrics) Ended(o invocation.Outcome, seconds float64) {
	if c, ok := m.invocations[o]; ok {
		c.Inc()
	}
	if seconds >= 0 {
		if h, ok := m.durations[o]; ok {
			h.Observe(seconds)
		}
	}
}

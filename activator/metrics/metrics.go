// Package metrics holds the activator's Prometheus metrics, all prefixed
// lambdapod_activator_.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdapod/lambdapod/activator/queue"
)

// Metrics are the activator's instruments.
type Metrics struct {
	Requests   *prometheus.CounterVec
	Latency    *prometheus.HistogramVec
	ColdStarts *prometheus.CounterVec
	Hold       *prometheus.HistogramVec
	Reports    *prometheus.CounterVec
	ProbeReady *prometheus.CounterVec
	Panics     prometheus.Counter

	// fns caches each function's series of Observe: WithLabelValues
	// hashes the labels and takes the vector's lock on every call.
	mu  sync.RWMutex
	fns map[fnKey]*fnSeries
}

type fnKey struct {
	ns, fn string
	code   int
}

type fnSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// New registers the metrics with reg; pools feeds the in-flight, queued and
// ready-pod gauges, read at scrape time.
func New(reg prometheus.Registerer, pools *queue.Registry) *Metrics {
	m := &Metrics{
		fns: map[fnKey]*fnSeries{},
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_requests_total",
			Help: "Requests by function and HTTP status code answered (499: the client went away).",
		}, []string{"namespace", "function", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lambdapod_activator_request_duration_seconds",
			Help:    "Time from a request's arrival to its response's headers, by function, including any hold at zero.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}, []string{"namespace", "function"}),
		ColdStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_cold_starts_total",
			Help: "Requests that found the function with no ready pod and were held until one turned ready.",
		}, []string{"namespace", "function"}),
		Hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lambdapod_activator_hold_seconds",
			Help:    "Time requests waited in the activator's queue for a pod slot (cold start or all pods busy).",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"namespace", "function"}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_autoscaler_reports_total",
			Help: "Concurrency reports sent to the autoscaler, by result (ok, error).",
		}, []string{"result"}),
		ProbeReady: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_probe_ready_pods_total",
			Help: "Pods put into rotation because the activator's own /readyz probe answered 200 before their EndpointSlice said ready.",
		}, []string{"namespace", "function"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdapod_activator_panics_total",
			Help: "Requests whose handling panicked; each got a 502 if nothing was written yet, and the activator went on.",
		}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.ColdStarts, m.Hold, m.Reports, m.ProbeReady, m.Panics, &poolCollector{pools: pools})
	return m
}

// Observe records a finished request.
func (m *Metrics) Observe(ns, fn string, code int, d time.Duration) {
	if m == nil {
		return
	}
	k := fnKey{ns, fn, code}
	m.mu.RLock()
	s := m.fns[k]
	m.mu.RUnlock()
	if s == nil {
		s = &fnSeries{requests: m.Requests.WithLabelValues(ns, fn, strconv.Itoa(code)), latency: m.Latency.WithLabelValues(ns, fn)}
		m.mu.Lock()
		m.fns[k] = s
		m.mu.Unlock()
	}
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}

// Panicked records a request whose handling panicked.
func (m *Metrics) Panicked() {
	if m == nil {
		return
	}
	m.Panics.Inc()
}

// Held records a request that got a slot after waiting.
func (m *Metrics) Held(ns, fn string, d time.Duration, cold bool) {
	if m == nil {
		return
	}
	m.Hold.WithLabelValues(ns, fn).Observe(d.Seconds())
	if cold {
		m.ColdStarts.WithLabelValues(ns, fn).Inc()
	}
}

var (
	inflightDesc = prometheus.NewDesc("lambdapod_activator_inflight_requests",
		"Requests being served by a pod now, by function.", []string{"namespace", "function"}, nil)
	queuedDesc = prometheus.NewDesc("lambdapod_activator_queued_requests",
		"Requests held waiting for a pod slot now, by function.", []string{"namespace", "function"}, nil)
	podsDesc = prometheus.NewDesc("lambdapod_activator_ready_pods",
		"Ready pods the activator sends requests to, by function.", []string{"namespace", "function"}, nil)
)

type poolCollector struct{ pools *queue.Registry }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- inflightDesc
	ch <- queuedDesc
	ch <- podsDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	if c.pools == nil {
		return
	}
	c.pools.Each(func(k queue.Key, p *queue.Pool) {
		inflight, queued, pods := p.Counts()
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(inflight), k.Namespace, k.Name)
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(queued), k.Namespace, k.Name)
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(pods), k.Namespace, k.Name)
	})
}

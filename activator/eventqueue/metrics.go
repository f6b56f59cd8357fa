package eventqueue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published *prometheus.CounterVec
	ended     *prometheus.CounterVec
	retried   prometheus.Counter
	notRun    prometheus.Counter
	// destinations counts invocation records sent, by destination kind
	// and result.
	destinations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, q *Queue) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_events_accepted_total",
			Help: "Event invocations offered to the durable queue, by result: ok (stored, answered 202), full, error (refused to the caller).",
		}, []string{"result"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_events_ended_total",
			Help: "Events taken off the durable queue, by outcome: succeeded, retries_exhausted, expired (older than the function's maximum event age), gone (no such function), malformed.",
		}, []string{"outcome"}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdapod_activator_events_retried_total",
			Help: "Failed event invocations queued again for a retry.",
		}),
		notRun: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdapod_activator_events_not_run_total",
			Help: "Event invocations that could not start (no capacity) and were put back for later; not attempts.",
		}),
		destinations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdapod_activator_event_destination_deliveries_total",
			Help: "Invocation records sent to on-success and on-failure destinations, by destination (function, url) and result (delivered, failed: not retried further).",
		}, []string{"destination", "result"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.published, m.ended, m.retried, m.notRun, m.destinations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdapod_activator_events_running",
			Help: "Events this activator runs now.",
		}, func() float64 { return float64(q.Running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdapod_activator_event_queue_depth",
			Help: "Events in the durable queue (all activators): waiting, due later (retries) or running; -1 when the queue cannot be read.",
		}, func() float64 {
			st, err := q.streamState()
			if err != nil {
				return -1
			}
			return float64(st.Msgs)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdapod_activator_event_queue_oldest_seconds",
			Help: "Age of the oldest message in the durable queue (0 when empty, -1 when it cannot be read).",
		}, func() float64 {
			st, err := q.streamState()
			if err != nil {
				return -1
			}
			if st.Msgs == 0 || st.FirstTime.IsZero() {
				return 0
			}
			return time.Since(st.FirstTime).Seconds()
		}),
	)
	return m
}

// streamState asks the server for the stream's state (at scrape time).
func (q *Queue) streamState() (jetstream.StreamState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := q.js.Stream(ctx, q.cfg.Stream)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

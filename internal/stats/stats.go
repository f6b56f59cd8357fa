// Package stats is the load report that activators send to the autoscaler
// about once a second: the format, its limits and its sender. It is its own
// small package so that the activator links it without the autoscaler.
//
// The autoscaler does not yet authenticate the sender: anyone who reaches
// its port can report. A later change has the activator send its
// ServiceAccount token and the autoscaler check it (TokenReview). Until then
// the limits below, and the autoscaler ignoring stats of functions that do
// not exist and clamping the figures, bound what a report can cost and do.
package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Path is where the autoscaler takes reports.
const Path = "/v1/stats"

// Limits of a report. The autoscaler refuses a report over them, 413 for
// its size or its number of stats, 400 for the activator's name, and keeps
// nothing of it; Send refuses to send one.
const (
	// MaxReportBytes is the largest report body the autoscaler reads.
	MaxReportBytes = 1 << 20
	// MaxStats is the most stats one report may list: one per function
	// with load at one activator. A stat takes at most about 250 bytes
	// (two 63-character names and large figures), so any report within
	// MaxStats also fits MaxReportBytes: the byte cap only refuses reports
	// no activator sends.
	MaxStats = 4096
	// MaxActivatorLen is the longest activator name: a pod's name.
	MaxActivatorLen = 253
)

// Stat is one function's load as one activator saw it.
type Stat struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Concurrency is the time-weighted mean of in-flight plus queued
	// requests since the previous report.
	Concurrency float64 `json:"concurrency"`
	// InFlight and Queued are the counts at the time of the report.
	InFlight int `json:"inFlight"`
	Queued   int `json:"queued"`
	// Requests is how many requests arrived since the previous report.
	Requests int64 `json:"requests"`
}

// Report is what an activator sends about once a second, and at once when a
// request finds a function with no ready pod.
type Report struct {
	// Activator identifies the sender (its pod name); reports replace the
	// sender's previous one.
	Activator string `json:"activator"`
	Stats     []Stat `json:"stats"`
}

func (rep *Report) check() error {
	if len(rep.Stats) > MaxStats {
		return fmt.Errorf("report of %d stats: the autoscaler takes at most %d", len(rep.Stats), MaxStats)
	}
	if len(rep.Activator) > MaxActivatorLen {
		return fmt.Errorf("activator name of %d bytes: the autoscaler takes at most %d", len(rep.Activator), MaxActivatorLen)
	}
	return nil
}

// Reporter sends an activator's reports to the autoscaler.
type Reporter struct {
	// URL is the autoscaler's stats endpoint, e.g.
	// http://lambdapod-autoscaler.lambdapod-system.svc:8083/v1/stats.
	URL       string
	Activator string
	// Collect returns the stats since the previous call.
	Collect func() []Stat
	// Interval between reports; 1s by default.
	Interval time.Duration
	Client   *http.Client
	// OnResult, if set, learns whether each report was taken.
	OnResult func(err error)

	poke chan struct{}
}

// NewReporter returns a reporter; call Run.
func NewReporter(url, activator string, collect func() []Stat) *Reporter {
	return &Reporter{URL: url, Activator: activator, Collect: collect, Interval: time.Second,
		Client: &http.Client{Timeout: 2 * time.Second}, poke: make(chan struct{}, 1)}
}

// Poke asks for a report now (a request found zero ready pods). It never
// blocks.
func (r *Reporter) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Run reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.poke:
		}
		err := r.Send(ctx, Report{Activator: r.Activator, Stats: r.Collect()})
		if r.OnResult != nil {
			r.OnResult(err)
		}
	}
}

// Send posts one report. A manager that is not the leader answers 503; the
// report is then retried (a Service spreading requests over several manager
// pods reaches the leader on a later connection). A report over the limits
// is not sent: the autoscaler would refuse it.
func (r *Reporter) Send(ctx context.Context, rep Report) error {
	if err := rep.check(); err != nil {
		return err
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if len(b) > MaxReportBytes {
		return fmt.Errorf("report of %d bytes: the autoscaler takes at most %d", len(b), MaxReportBytes)
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if attempt > 0 {
			req.Close = true // a new connection may reach another manager pod
		}
		resp, err := r.Client.Do(req)
		if err != nil {
			last = err
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		last = fmt.Errorf("autoscaler answered %s", resp.Status)
	}
	return last
}

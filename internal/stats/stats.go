// Package stats is the load report that activators send to the autoscaler
// about once a second: the format, its limits and its sender. It is its own
// small package so that the activator links it without the autoscaler.
//
// A report carries the activator's projected ServiceAccount token for the
// audience TokenAudience (Reporter.TokenFile) as a bearer token; the
// autoscaler checks it with a TokenReview and takes reports only from the
// activators' ServiceAccounts, so a caller that merely reaches its port
// cannot scale a function up or keep it from scaling to zero. The limits
// below, and the autoscaler ignoring stats of functions that do not exist
// and clamping the figures, still bound what an accepted report can cost
// and do.
package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
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
	// MaxTokenBytes is the longest bearer token the autoscaler takes: a
	// projected ServiceAccount token has about 1 KiB; a longer one is
	// refused (401) without a TokenReview.
	MaxTokenBytes = 8 << 10
)

// TokenAudience is the audience of the token an activator sends with its
// reports. The autoscaler's TokenReview asks for it, so a token the API
// server takes (audience the API server) is refused, and the activator's
// report token cannot be replayed to the API server.
const TokenAudience = "lambdapod-autoscaler"

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
	// TokenFile, if set, holds the bearer token sent with every report:
	// the activator's projected ServiceAccount token for TokenAudience.
	// The kubelet replaces the file before the token expires, so it is
	// read again once TokenRefresh has passed, and after a 401.
	TokenFile string
	// TokenRefresh is how long a token read from TokenFile is sent before
	// the file is read again; 1 minute by default. The kubelet replaces a
	// token at 80% of its life (48 minutes of an hour), well before the
	// old one stops being valid.
	TokenRefresh time.Duration

	poke chan struct{}

	tokenMu   sync.Mutex
	token     string
	tokenRead time.Time
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
// pods reaches the leader on a later connection). A 401 is retried with the
// token read again from TokenFile (the kubelet may just have replaced it);
// a 403 (the token is valid but not an activator's) is not retried. A
// report over the limits is not sent: the autoscaler would refuse it.
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
	rereadToken := false
	for attempt := 0; attempt < 3; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if r.TokenFile != "" {
			token, err := r.bearer(rereadToken)
			if err != nil {
				return fmt.Errorf("the token for the autoscaler: %w", err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
		}
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
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			// The token may have been rotated since it was read.
			rereadToken = true
		case resp.StatusCode/100 == 4:
			// The same report would get the same answer.
			return last
		}
	}
	return last
}

// bearer is the token to send: the one read last, unless it is older than
// TokenRefresh or reread is set.
func (r *Reporter) bearer(reread bool) (string, error) {
	refresh := r.TokenRefresh
	if refresh <= 0 {
		refresh = time.Minute
	}
	r.tokenMu.Lock()
	defer r.tokenMu.Unlock()
	if !reread && r.token != "" && time.Since(r.tokenRead) < refresh {
		return r.token, nil
	}
	token, err := readToken(r.TokenFile)
	if err != nil {
		return "", err
	}
	r.token, r.tokenRead = token, time.Now()
	return token, nil
}

// readToken reads a token file of at most MaxTokenBytes, without the
// surrounding white space.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenBytes+1))
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		return "", fmt.Errorf("%s is empty", path)
	case len(token) > MaxTokenBytes:
		return "", fmt.Errorf("%s holds over %d bytes: not a ServiceAccount token", path, MaxTokenBytes)
	}
	return token, nil
}

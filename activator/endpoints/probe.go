package endpoints

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/lambdapod/lambdapod/activator/queue"
)

// Probe configures the direct probing of not-ready endpoints.
//
// The kubelet probes a pod's sidecar every second and the endpointslice
// controller then updates the slice, so a pod whose sidecar is ready would
// sit out of rotation for up to a second or more. The tracker instead probes
// every not-ready, non-terminating endpoint itself on GET <Path> every
// Interval (each probe bounded by Timeout), for at most MaxDuration per
// endpoint, and puts the endpoint in rotation at its first 200, exactly as
// if the slice had said ready. Probing of an endpoint stops at that first
// 200, when it leaves the slice, turns terminating or turns ready in the
// slice, after MaxDuration, or at Stop. An endpoint put in rotation by a
// probe leaves it as any other: when it is gone or terminating.
type Probe struct {
	Path        string        // default /readyz
	Interval    time.Duration // default 25ms
	Timeout     time.Duration // per probe, default 200ms
	MaxDuration time.Duration // per endpoint, default 2m
	// Client does the probes (default: no proxy, no keep-alive).
	Client *http.Client
	// OnReady, if set, is called (with the tracker's lock held: keep it
	// short) when a probe puts an endpoint in rotation.
	OnReady func(k queue.Key, addr string)
}

type probing struct {
	addr   string
	cancel context.CancelFunc
	ready  bool
}

var defaultProbeClient = &http.Client{
	Transport: &http.Transport{
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: time.Second}).DialContext,
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (pr *Probe) defaults() (path string, interval, timeout, max time.Duration, c *http.Client) {
	path, interval, timeout, max, c = pr.Path, pr.Interval, pr.Timeout, pr.MaxDuration, pr.Client
	if path == "" {
		path = "/readyz"
	}
	if interval <= 0 {
		interval = 25 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	if max <= 0 {
		max = 2 * time.Minute
	}
	if c == nil {
		c = defaultProbeClient
	}
	return
}

// runProbe probes p until its first 200, ctx's end or the bound.
func (t *Tracker) runProbe(ctx context.Context, k queue.Key, id string, p *probing) {
	defer t.wg.Done()
	path, interval, timeout, max, c := t.Probe.defaults()
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	url := "http://" + p.addr + path
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if probeOnce(ctx, c, url, timeout) {
			t.mu.Lock()
			if t.probes[k][id] == p && !t.stopped && !p.ready {
				p.ready = true
				t.pushLocked(k)
				if t.Probe.OnReady != nil {
					t.Probe.OnReady(k, p.addr)
				}
			}
			t.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func probeOnce(ctx context.Context, c *http.Client, url string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "lambdapod-activator-probe")
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

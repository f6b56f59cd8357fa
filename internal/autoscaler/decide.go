package autoscaler

import (
	"math"
	"time"
)

// Spec is what a Function says about its scale.
type Spec struct {
	Min, Max int32
	// Target is the in-flight invocations per pod to aim for.
	Target float64
	// ScaleToZeroAfter is the idle time after which a function with Min 0
	// goes to zero pods.
	ScaleToZeroAfter time.Duration
}

// Params tune the decision; the same for every function.
type Params struct {
	// StableWindow is the averaging window for normal scaling, and how
	// long panic mode lasts.
	StableWindow time.Duration
	// PanicWindow is the short window that catches bursts.
	PanicWindow time.Duration
	// PanicThreshold: when the panic window's concurrency reaches this many
	// times the current pods' target, the autoscaler panics: it scales up
	// to the panic window's need and does not scale down for a stable
	// window.
	PanicThreshold float64
}

// DefaultParams are Knative's defaults: 60 s stable, 6 s panic, 200%.
var DefaultParams = Params{StableWindow: 60 * time.Second, PanicWindow: 6 * time.Second, PanicThreshold: 2}

// Input is what one decision looks at.
type Input struct {
	Now     time.Time
	Current int32 // the Deployment's spec.replicas
	// StableConcurrency and PanicConcurrency are the mean concurrency (in
	// flight plus queued, summed over activators) in the two windows.
	StableConcurrency float64
	PanicConcurrency  float64
	// Queued is the requests waiting now, summed over activators.
	Queued int
	// LastTraffic is the last time any request was in flight, queued or
	// arriving.
	LastTraffic time.Time
	// PanicUntil is the end of the current panic mode (zero: none).
	PanicUntil time.Time
	// NoScaleDownBefore holds the current replicas as a floor until then:
	// a new leader waits for every activator's report before it trusts a
	// lull.
	NoScaleDownBefore time.Time
}

// Decision is the replicas wanted and the panic mode's new end.
type Decision struct {
	Replicas   int32
	PanicUntil time.Time
	Reason     string
}

// Decide computes the replicas a function should have. It is pure.
func Decide(s Spec, p Params, in Input) Decision {
	target := s.Target
	if target <= 0 {
		target = 1
	}
	max := s.Max
	if max < 1 {
		max = 1
	}
	min := s.Min
	if min > max {
		min = max
	}
	d := Decision{PanicUntil: in.PanicUntil}
	stable := ceil(in.StableConcurrency / target)
	panicWant := ceil(in.PanicConcurrency / target)
	if q := ceil(float64(in.Queued) / target); q > panicWant {
		panicWant = q
	}
	d.Replicas, d.Reason = stable, "stable window"
	if in.Current > 0 && in.PanicConcurrency/(float64(in.Current)*target) >= p.PanicThreshold {
		d.PanicUntil = in.Now.Add(p.StableWindow)
	}
	if in.Current == 0 && panicWant > 0 {
		// Activation: requests wait at zero; start what they need now.
		d.Replicas, d.Reason = max32(stable, panicWant), "activation"
	} else if in.Now.Before(d.PanicUntil) {
		// Panic: scale up to the burst, never down.
		d.Replicas, d.Reason = max32(stable, max32(panicWant, in.Current)), "panic window"
	}
	idleFor := in.Now.Sub(in.LastTraffic)
	if idleFor < s.ScaleToZeroAfter || in.Queued > 0 {
		// Traffic within scaleToZeroAfter: keep at least the last pod.
		if d.Replicas == 0 && in.Current > 0 {
			d.Replicas, d.Reason = 1, "keeping the last pod until scaleToZeroAfter"
		}
	} else if min == 0 {
		d.Replicas, d.Reason = 0, "idle for scaleToZeroAfter"
	}
	if d.Replicas < in.Current && in.Now.Before(in.NoScaleDownBefore) {
		d.Replicas, d.Reason = in.Current, "waiting for the activators' first reports"
	}
	if d.Replicas < min {
		d.Replicas, d.Reason = min, "minReplicas"
	}
	if d.Replicas > max {
		d.Replicas, d.Reason = max, "maxReplicas"
	}
	return d
}

func ceil(f float64) int32 {
	if f <= 0 || math.IsNaN(f) {
		return 0
	}
	c := math.Ceil(f - 1e-9)
	if c > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(c)
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// History is a function's concurrency per second, for the windows.
type History struct {
	first   time.Time
	buckets []bucket // ring, one per second
}

type bucket struct {
	sec int64
	v   float64
}

// NewHistory keeps span of history.
func NewHistory(span time.Duration) *History {
	n := int(span/time.Second) + 1
	if n < 2 {
		n = 2
	}
	return &History{buckets: make([]bucket, n)}
}

// Record sets the concurrency at now (the highest of several in a second).
func (h *History) Record(now time.Time, v float64) {
	if h.first.IsZero() {
		h.first = now
	}
	s := now.Unix()
	b := &h.buckets[int(s%int64(len(h.buckets)))]
	if b.sec != s {
		*b = bucket{sec: s, v: v}
		return
	}
	if v > b.v {
		b.v = v
	}
}

// Avg is the mean concurrency over the window ending at now; seconds
// without a record count as zero, but the window never reaches back before
// the first record (so that a new leader does not see a false lull).
func (h *History) Avg(now time.Time, window time.Duration) float64 {
	if h.first.IsZero() {
		return 0
	}
	n := int64(window / time.Second)
	if n < 1 {
		n = 1
	}
	if int(n) > len(h.buckets) {
		n = int64(len(h.buckets))
	}
	end := now.Unix()
	start := end - n + 1
	if f := h.first.Unix(); f > start {
		start = f
	}
	if start > end {
		return 0
	}
	var sum float64
	for s := start; s <= end; s++ {
		b := h.buckets[int(s%int64(len(h.buckets)))]
		if b.sec == s {
			sum += b.v
		}
	}
	return sum / float64(end-start+1)
}

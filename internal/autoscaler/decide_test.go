package autoscaler

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	spec := Spec{Min: 0, Max: 10, Target: 1, ScaleToZeroAfter: 5 * time.Minute}
	p := DefaultParams
	tests := []struct {
		name       string
		spec       Spec
		in         Input
		want       int32
		wantPanics bool
	}{
		{"idle at zero stays at zero", spec, Input{Now: t0, Current: 0, LastTraffic: t0.Add(-time.Hour)}, 0, false},
		{"cold request activates at once", spec, Input{Now: t0, Current: 0, Queued: 1, PanicConcurrency: 1, LastTraffic: t0}, 1, false},
		{"burst at zero starts what the queue needs", spec, Input{Now: t0, Current: 0, Queued: 7, PanicConcurrency: 3, LastTraffic: t0}, 7, false},
		{"burst at zero respects maxReplicas", spec, Input{Now: t0, Current: 0, Queued: 70, LastTraffic: t0}, 10, false},
		{"target concurrency divides", Spec{Max: 10, Target: 4, ScaleToZeroAfter: time.Minute}, Input{Now: t0, Current: 0, Queued: 9, LastTraffic: t0}, 3, false},
		{"steady load follows the stable window", spec, Input{Now: t0, Current: 3, StableConcurrency: 2.2, PanicConcurrency: 2.5, LastTraffic: t0}, 3, false},
		{"load falls: scale down on the stable window", spec, Input{Now: t0, Current: 5, StableConcurrency: 1.5, PanicConcurrency: 1, LastTraffic: t0}, 2, false},
		{"burst panics and scales to the panic window", spec, Input{Now: t0, Current: 2, StableConcurrency: 2, PanicConcurrency: 6, LastTraffic: t0}, 6, true},
		{"in panic never scale down", spec, Input{Now: t0, Current: 6, StableConcurrency: 1, PanicConcurrency: 1, LastTraffic: t0, PanicUntil: t0.Add(10 * time.Second)}, 6, false},
		{"panic over: scale down", spec, Input{Now: t0, Current: 6, StableConcurrency: 1, PanicConcurrency: 1, LastTraffic: t0, PanicUntil: t0.Add(-time.Second)}, 1, false},
		{"no load but recent traffic keeps the last pod", spec, Input{Now: t0, Current: 3, LastTraffic: t0.Add(-4 * time.Minute)}, 1, false},
		{"idle for scaleToZeroAfter goes to zero", spec, Input{Now: t0, Current: 1, LastTraffic: t0.Add(-5 * time.Minute)}, 0, false},
		{"idle just under scaleToZeroAfter keeps one", spec, Input{Now: t0, Current: 1, LastTraffic: t0.Add(-5*time.Minute + time.Second)}, 1, false},
		{"idle but a stale average: still zero", spec, Input{Now: t0, Current: 1, StableConcurrency: 0.1, LastTraffic: t0.Add(-6 * time.Minute)}, 0, false},
		{"minReplicas floors idle", Spec{Min: 2, Max: 10, Target: 1, ScaleToZeroAfter: time.Minute}, Input{Now: t0, Current: 2, LastTraffic: t0.Add(-time.Hour)}, 2, false},
		{"minReplicas floors at creation", Spec{Min: 1, Max: 10, Target: 1, ScaleToZeroAfter: time.Minute}, Input{Now: t0, Current: 0, LastTraffic: t0.Add(-time.Hour)}, 1, false},
		{"maxReplicas caps", Spec{Max: 4, Target: 1, ScaleToZeroAfter: time.Minute}, Input{Now: t0, Current: 4, StableConcurrency: 40, PanicConcurrency: 40, LastTraffic: t0}, 4, true},
		{"a new leader does not scale down before the reports are in", spec, Input{Now: t0, Current: 4, LastTraffic: t0.Add(-time.Hour), NoScaleDownBefore: t0.Add(time.Second)}, 4, false},
		{"a new leader scales up at once", spec, Input{Now: t0, Current: 1, StableConcurrency: 3, PanicConcurrency: 3, LastTraffic: t0, NoScaleDownBefore: t0.Add(time.Second)}, 3, true},
		{"fractional load rounds up", spec, Input{Now: t0, Current: 1, StableConcurrency: 0.02, PanicConcurrency: 0.01, LastTraffic: t0}, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.spec, p, tc.in)
			if d.Replicas != tc.want {
				t.Fatalf("replicas %d (%s), want %d", d.Replicas, d.Reason, tc.want)
			}
			if panics := d.PanicUntil.After(tc.in.Now) && !tc.in.PanicUntil.After(tc.in.Now); panics != tc.wantPanics {
				t.Fatalf("entered panic %v, want %v", panics, tc.wantPanics)
			}
		})
	}
}

func TestHistoryWindows(t *testing.T) {
	t0 := time.Unix(2_000_000, 0)
	h := NewHistory(60 * time.Second)
	if h.Avg(t0, time.Minute) != 0 {
		t.Fatal("empty history has load")
	}
	// A new leader's first records: the window starts at the first record.
	h.Record(t0, 4)
	if got := h.Avg(t0, time.Minute); got != 4 {
		t.Fatalf("avg after one record %v, want 4", got)
	}
	// Several records in one second: the highest counts.
	h.Record(t0.Add(100*time.Millisecond), 2)
	if got := h.Avg(t0, time.Minute); got != 4 {
		t.Fatalf("avg %v, want 4", got)
	}
	for i := 1; i < 10; i++ {
		h.Record(t0.Add(time.Duration(i)*time.Second), 0)
	}
	now := t0.Add(9 * time.Second)
	if got := h.Avg(now, time.Minute); got != 0.4 {
		t.Fatalf("stable avg %v, want 0.4", got)
	}
	if got := h.Avg(now, 6*time.Second); got != 0 {
		t.Fatalf("panic avg %v, want 0", got)
	}
	// Seconds without records count as zero; old buckets are not reused.
	later := t0.Add(200 * time.Second)
	h.Record(later, 6)
	if got := h.Avg(later, 6*time.Second); got != 1 {
		t.Fatalf("avg after a gap %v, want 1", got)
	}
}

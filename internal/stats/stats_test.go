package stats

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The byte cap must never refuse a report the stats cap allows: MaxStats
// stats of the longest names a Function can have, with figures far above
// any real load, fit in MaxReportBytes.
func TestMaxStatsFitMaxReportBytes(t *testing.T) {
	long := strings.Repeat("a", 63)
	rep := Report{Activator: strings.Repeat("a", MaxActivatorLen), Stats: make([]Stat, MaxStats)}
	for i := range rep.Stats {
		rep.Stats[i] = Stat{Namespace: long, Name: long, Concurrency: 123456.78901234567,
			InFlight: 1_000_000, Queued: 1_000_000, Requests: math.MaxInt32}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d stats of 63-character names: %d bytes (%d a stat), cap %d", MaxStats, len(b), len(b)/MaxStats, MaxReportBytes)
	if len(b) > MaxReportBytes {
		t.Fatalf("%d bytes, over MaxReportBytes %d", len(b), MaxReportBytes)
	}
}

func TestSendRefusesAReportOverTheLimits(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	r := NewReporter(srv.URL+Path, "act", nil)
	for _, tc := range []struct {
		name string
		rep  Report
		want string
	}{
		{"too many stats", Report{Activator: "act", Stats: make([]Stat, MaxStats+1)}, "at most 4096"},
		{"too long a name", Report{Activator: strings.Repeat("a", MaxActivatorLen+1)}, "at most 253"},
	} {
		if err := r.Send(context.Background(), tc.rep); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
	if err := r.Send(context.Background(), Report{Activator: "act", Stats: make([]Stat, MaxStats)}); err != nil {
		t.Errorf("a report at the limits: %v", err)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("%d reports posted, want only the one within the limits", n)
	}
}

package stats

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// The reporter sends the token of its file, keeps it for TokenRefresh, and
// reads the file again when the autoscaler answers 401 (the kubelet
// replaced the token) or once TokenRefresh has passed.
func TestReporterSendsTheToken(t *testing.T) {
	var mu sync.Mutex
	valid := "token-1"
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h := r.Header.Get("Authorization")
		seen = append(seen, h)
		switch h {
		case "Bearer " + valid:
			w.WriteHeader(http.StatusAccepted)
		case "Bearer other":
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	r := NewReporter(srv.URL+Path, "act", nil)
	r.TokenFile = file
	ctx := context.Background()

	write("token-1\n")
	if err := r.Send(ctx, Report{Activator: "act"}); err != nil {
		t.Fatal(err)
	}
	// The kubelet writes a new token: the old one is still valid and sent
	// until TokenRefresh.
	write("token-2\n")
	if err := r.Send(ctx, Report{Activator: "act"}); err != nil {
		t.Fatal(err)
	}
	if got := sent(); !slices.Equal(got, []string{"Bearer token-1", "Bearer token-1"}) {
		t.Errorf("sent %q, want token-1 twice", got)
	}
	// The old one expires: a 401, then the new token at once.
	mu.Lock()
	valid = "token-2"
	mu.Unlock()
	if err := r.Send(ctx, Report{Activator: "act"}); err != nil {
		t.Fatal(err)
	}
	if got := sent(); !slices.Equal(got, []string{"Bearer token-1", "Bearer token-2"}) {
		t.Errorf("sent %q, want token-1 refused then token-2", got)
	}
	// Past TokenRefresh the file is read again without a 401.
	write("token-3")
	mu.Lock()
	valid = "token-3"
	mu.Unlock()
	r.TokenRefresh = time.Nanosecond
	if err := r.Send(ctx, Report{Activator: "act"}); err != nil {
		t.Fatal(err)
	}
	if got := sent(); !slices.Equal(got, []string{"Bearer token-3"}) {
		t.Errorf("sent %q, want token-3", got)
	}
	// A 403 is not retried: another token would not come.
	write("other")
	if err := r.Send(ctx, Report{Activator: "act"}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("error %v, want the 403", err)
	}
	if got := sent(); len(got) != 1 {
		t.Errorf("a 403 was sent %d times, want once", len(got))
	}
	// No token to read: nothing is sent.
	for _, bad := range []string{"", strings.Repeat("a", MaxTokenBytes+1)} {
		write(bad)
		if err := r.Send(ctx, Report{Activator: "act"}); err == nil {
			t.Errorf("a token file of %d bytes: no error", len(bad))
		}
	}
	r.TokenFile = filepath.Join(t.TempDir(), "missing")
	if err := r.Send(ctx, Report{Activator: "act"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("a missing token file: error %v", err)
	}
	if got := sent(); len(got) != 0 {
		t.Errorf("sent %q without a token", got)
	}
	// Without a token file, no Authorization at all.
	r.TokenFile = ""
	_ = r.Send(ctx, Report{Activator: "act"})
	if got := sent(); !slices.Equal(got, []string{"", "", ""}) {
		t.Errorf("sent %q, want three attempts without Authorization", got)
	}
}

// A refusal for the report itself is not sent again (the same report gets
// the same answer); the leader's absence (503) and a lost connection are.
func TestSendRetriesOnlyWhatMayPassNextTime(t *testing.T) {
	for _, tc := range []struct {
		status int
		tries  int32
	}{
		{http.StatusBadRequest, 1},
		{http.StatusRequestEntityTooLarge, 1},
		{http.StatusForbidden, 1},
		{http.StatusServiceUnavailable, 3},
		{http.StatusInternalServerError, 3},
	} {
		var tries atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tries.Add(1)
			w.WriteHeader(tc.status)
		}))
		err := NewReporter(srv.URL+Path, "act", nil).Send(context.Background(), Report{Activator: "act"})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), http.StatusText(tc.status)) {
			t.Errorf("%d: error %v", tc.status, err)
		}
		if got := tries.Load(); got != tc.tries {
			t.Errorf("%d: sent %d times, want %d", tc.status, got, tc.tries)
		}
	}
}

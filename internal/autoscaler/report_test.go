package autoscaler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/stats"
)

// noFunctions is a client that knows no Function and counts the lookups.
type noFunctions struct {
	client.Client
	gets int
}

func (c *noFunctions) Get(_ context.Context, k client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	c.gets++
	return apierrors.NewNotFound(schema.GroupResource{Group: "lambdapod.io", Resource: "functions"}, k.Name)
}

// testAutoscaler takes reports without a running loop; it knows one
// Function, ns/fn, of maxReplicas 3 and target 1.
func testAutoscaler(t *testing.T, log *bytes.Buffer) (*Autoscaler, *noFunctions) {
	t.Helper()
	c := &noFunctions{}
	opts := Options{}
	if log != nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a := New(c, opts)
	a.setKnown([]lambdapodv1alpha1.Function{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn"},
		Spec: lambdapodv1alpha1.FunctionSpec{Scale: lambdapodv1alpha1.ScaleSpec{MaxReplicas: 3}}}})
	a.started.Store(true)
	return a, c
}

var fnKey = types.NamespacedName{Namespace: "ns", Name: "fn"}

func keptLoad(t *testing.T, a *Autoscaler, activator string) load {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.reports[activator]
	if !ok || len(r.loads) != 1 {
		t.Fatalf("report of %s: %+v, want one load", activator, r)
	}
	return r.loads[0]
}

func TestAdmissionClampsAndMerges(t *testing.T) {
	a, _ := testAutoscaler(t, nil)
	// maxReplicas 3 × target 1 × twice the panic threshold of 2.
	const limit = 12
	for _, tc := range []struct {
		name  string
		stats []stats.Stat
		want  load
	}{
		{"real figures count as they are",
			[]stats.Stat{{Namespace: "ns", Name: "fn", Concurrency: 1.5, InFlight: 1, Queued: 2, Requests: 3}},
			load{key: fnKey, concurrency: 3, queued: 2, traffic: true}},
		{"negative figures count as none",
			[]stats.Stat{{Namespace: "ns", Name: "fn", Concurrency: -1e9, InFlight: -5, Queued: -1 << 62, Requests: -1}},
			load{key: fnKey}},
		{"NaN counts as none",
			[]stats.Stat{{Namespace: "ns", Name: "fn", Concurrency: math.NaN()}},
			load{key: fnKey}},
		{"huge figures count up to the limit",
			[]stats.Stat{{Namespace: "ns", Name: "fn", Concurrency: math.Inf(1), InFlight: math.MaxInt, Queued: math.MaxInt, Requests: math.MaxInt64}},
			load{key: fnKey, concurrency: limit, queued: limit, traffic: true}},
		{"one function listed many times counts once, up to the limit",
			[]stats.Stat{{Namespace: "ns", Name: "fn", Queued: 5}, {Namespace: "ns", Name: "fn", Queued: 5}, {Namespace: "ns", Name: "fn", Queued: 5}},
			load{key: fnKey, concurrency: limit, queued: limit, traffic: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.Ingest(context.Background(), stats.Report{Activator: "act", Stats: tc.stats})
			if got := keptLoad(t, a, "act"); got != tc.want {
				t.Fatalf("kept %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUnknownFunctionsAreIgnoredWithOneLogLine(t *testing.T) {
	var log bytes.Buffer
	a, c := testAutoscaler(t, &log)
	rep := stats.Report{Activator: "act", Stats: []stats.Stat{{Namespace: "ns", Name: "fn", InFlight: -1, Requests: 1}}}
	for i := 0; i < 1000; i++ {
		rep.Stats = append(rep.Stats, stats.Stat{Namespace: "ns", Name: fmt.Sprintf("ghost-%d", i), Queued: 1})
	}
	// Not even a lookup: no Function can be named so.
	rep.Stats = append(rep.Stats, stats.Stat{Namespace: "ns", Name: "Not_A_Name", Queued: 1})
	a.Ingest(context.Background(), rep)
	if c.gets != maxLookupsPerReport {
		t.Errorf("%d lookups for a report of 1001 unknown functions, want %d", c.gets, maxLookupsPerReport)
	}
	if len(a.fns) != 1 || keptLoad(t, a, "act").key != fnKey {
		t.Errorf("state for %d functions, want only ns/fn", len(a.fns))
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=DEBUG") || !strings.Contains(lines[0], "kept=1") ||
		!strings.Contains(lines[0], "ignoredUnknownFunctions=1001") || !strings.Contains(lines[0], "clampedOutOfRange=1") {
		t.Errorf("log:\n%s\nwant one debug line counting 1001 ignored stats and 1 clamped", log.String())
	}
	// A report naming only unknown functions replaces the activator's
	// previous one, and a new activator takes no slot.
	a.Ingest(context.Background(), stats.Report{Activator: "act", Stats: rep.Stats[1:]})
	a.Ingest(context.Background(), stats.Report{Activator: "other", Stats: rep.Stats[1:]})
	if len(a.reports) != 0 {
		t.Errorf("%d reports kept, want none", len(a.reports))
	}
}

func TestDecodeReport(t *testing.T) {
	for _, tc := range []struct {
		name, body    string
		wantActivator string
		wantStats     int
		wantErr       string
	}{
		{"stats before the activator", `{"stats":[{"namespace":"ns","name":"fn","queued":1}],"activator":"act"}`, "act", 1, ""},
		{"fields a newer activator may add are skipped", `{"activator":"act","v":{"a":[1,{"b":[]}],"c":"}"},"stats":[{"namespace":"ns","name":"fn","x":[1]}],"w":2}`, "act", 1, ""},
		{"no stats", `{"activator":"act","stats":null}`, "act", 0, ""},
		{"stats not an array", `{"activator":"act","stats":{}}`, "", 0, "not an array"},
		{"a stat of the wrong type", `{"activator":"act","stats":[{"queued":"many"}]}`, "", 0, "stat 1"},
		{"not an object", `[]`, "", 0, "expected '{'"},
		{"cut short", `{"activator":"act","stats":[{"name":"fn"}`, "", 0, "EOF"},
		{"twice the stats key counts all its stats", `{"stats":[` + strings.Repeat(`{},`, stats.MaxStats-1) + `{}],"stats":[{}]}`, "", 0, "at most 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			activator, err := decodeReport(strings.NewReader(tc.body), func(stats.Stat) { n++ })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || activator != tc.wantActivator || n != tc.wantStats {
				t.Fatalf("activator %q, %d stats, error %v; want %q, %d stats", activator, n, err, tc.wantActivator, tc.wantStats)
			}
		})
	}
}

func TestHandlerRefusesAStreamedReportOverTheCap(t *testing.T) {
	a, _ := testAutoscaler(t, nil)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	// No Content-Length: the body is sent chunked and must be cut off while
	// it is read. It is valid JSON to the end, so only its size is wrong.
	body := io.MultiReader(strings.NewReader(`{"activator":"act","stats":[],"pad":"`),
		strings.NewReader(strings.Repeat("x", stats.MaxReportBytes)), strings.NewReader(`"}`))
	req, err := http.NewRequest(http.MethodPost, srv.URL+stats.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "at most 1048576 bytes") {
		t.Fatalf("a streamed report over the cap (length %d) answered %d %q, want 413", req.ContentLength, resp.StatusCode, msg)
	}
}

// Attack: a report whose body never ends, or comes a byte at a time, held
// a connection and its goroutine on the manager for ever. The whole report
// has a deadline: the connection is closed.
func TestStatsServerCutsASlowReport(t *testing.T) {
	a, _ := testAutoscaler(t, nil)
	addr := make(chan string, 1)
	s := &StatsServer{Addr: "127.0.0.1:0", Handler: a.Handler(), ReadTimeout: 300 * time.Millisecond, listening: addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", <-addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: manager\r\nContent-Length: 1000\r\n\r\n{\"activator\":", stats.Path)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // whatever is answered, until the server closes
	if err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("a stalled report's connection: %v after %v, want closed within the read timeout", err, time.Since(start))
	}
}

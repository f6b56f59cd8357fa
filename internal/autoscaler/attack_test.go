package autoscaler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestReportEndpoint runs the attacks of whoever may report against the
// real handler and autoscaler, with a real API server and a cached client as
// the manager gives it, and checks what a user sees: the answers, the
// Deployments' replicas and the manager's heap. It runs without
// authentication (-autoscaler-auth=false): the limits hold for an activator
// gone wrong as for anyone; TestReportAuthentication (auth_test.go) keeps
// everyone else out. A real activator's report must still work as before.
func TestReportEndpoint(t *testing.T) {
	e := testenv.Start(t)
	c := cachedClient(t, e)

	t.Run("a function created since the last listing scales from zero at once", func(t *testing.T) {
		ns := makeNamespace(t, c, "fresh")
		// No listing after the start: the function is looked up.
		_, url := startAutoscaler(t, c, Options{Interval: time.Hour})
		makeFunction(t, e.Client, ns, "fn", 10)
		r := stats.NewReporter(url, "act-1", nil)
		start := time.Now()
		if err := r.Send(context.Background(), stats.Report{Activator: "act-1", Stats: []stats.Stat{
			{Namespace: ns, Name: "fn", Concurrency: 1, Queued: 1, Requests: 1}}}); err != nil {
			t.Fatal(err)
		}
		for replicas(t, e.Client, ns, "fn") != 1 {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("replicas %d 2 s after a cold request's report, want 1", replicas(t, e.Client, ns, "fn"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("0 -> 1 replicas %v after the report", time.Since(start).Round(time.Millisecond))
	})

	t.Run("reports for functions that do not exist keep no memory", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			perStat  int // bytes of JSON per stat
			n        int // stats per report
			wantCode int
		}{
			// The reported attack: 20 reports of about 850 KB, 10,000
			// stats each, every stat a different function.
			{"10000 stats of 85 bytes", 85, 10000, http.StatusRequestEntityTooLarge},
			// Within the caps: the stats cap, names as long as a
			// Function's may be.
			{"4096 stats of 206 bytes", 206, 4096, http.StatusAccepted},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// Decisions and the reports' expiry would hide what the
				// reports leave behind; an attacker repeats them anyway.
				a, url := startAutoscaler(t, c, Options{Interval: time.Hour, ReportTTL: time.Hour})
				before := heap()
				allocated := totalAlloc()
				var size int
				codes := map[int]int{}
				for i := 0; i < 20; i++ {
					body := forgedReport(fmt.Sprintf("attacker-%d", i), i, tc.n, tc.perStat)
					size = len(body)
					code, _ := post(t, url, body)
					codes[code]++
				}
				perReport := float64(totalAlloc()-allocated) / 20 / (1 << 20)
				after := heap()
				fns, kept, activators := entries(a)
				growth := float64(int64(after)-int64(before)) / (1 << 20)
				t.Logf("20 reports of %d bytes, %d stats each: answers %v; heap %+.1f MiB; functions tracked %d, stats kept %d, activators kept %d; %.1f MiB allocated a report (test's side included)",
					size, tc.n, codes, growth, fns, kept, activators, perReport)
				if codes[tc.wantCode] != 20 {
					t.Errorf("answers %v, want 20 × %d", codes, tc.wantCode)
				}
				if fns != 0 || kept != 0 || activators != 0 {
					t.Errorf("the autoscaler keeps %d functions, %d stats, %d activators for functions that do not exist; want none", fns, kept, activators)
				}
				if growth > 8 {
					t.Errorf("heap grew %.1f MiB, want under 8 MiB", growth)
				}
			})
		}
	})

	t.Run("a report for a function that does not exist creates nothing", func(t *testing.T) {
		ns := makeNamespace(t, c, "ghosts")
		a, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond})
		b := mustJSON(t, stats.Report{Activator: "act-1", Stats: []stats.Stat{
			{Namespace: ns, Name: "ghost", Concurrency: 5, InFlight: 2, Queued: 3, Requests: 5},
		}})
		if code, msg := post(t, url, b); code != http.StatusAccepted {
			t.Fatalf("answered %d %q, want 202: an activator may know a function before the autoscaler does", code, msg)
		}
		time.Sleep(300 * time.Millisecond) // a few decisions
		// Functions of the other subtests exist and have state; the ghost
		// must have none.
		a.mu.Lock()
		st, reports := a.fns[types.NamespacedName{Namespace: ns, Name: "ghost"}], len(a.reports)
		a.mu.Unlock()
		if st != nil || reports != 0 {
			t.Errorf("the autoscaler keeps state %+v for the ghost and %d reports; want none", st, reports)
		}
		var deps appsv1.DeploymentList
		if err := e.Client.List(context.Background(), &deps, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(deps.Items) != 0 {
			t.Errorf("%d Deployments in %s, want none", len(deps.Items), ns)
		}
	})

	t.Run("a forged huge report never scales past maxReplicas", func(t *testing.T) {
		ns := makeNamespace(t, c, "victim")
		makeFunction(t, e.Client, ns, "fn", 3)
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond})
		huge := mustJSON(t, stats.Report{Activator: "forger", Stats: []stats.Stat{{Namespace: ns, Name: "fn",
			Concurrency: 1e300, InFlight: math.MaxInt64 / 4, Queued: math.MaxInt64 / 4, Requests: math.MaxInt64}}})
		var peak int32
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if code, msg := post(t, url, huge); code != http.StatusAccepted {
				t.Fatalf("answered %d %q", code, msg)
			}
			if r := replicas(t, e.Client, ns, "fn"); r > peak {
				peak = r
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("forged concurrency 1e300 and queued %d for 3 s: peak replicas %d (maxReplicas 3)", math.MaxInt64/4, peak)
		if peak != 3 {
			t.Errorf("peak replicas %d, want maxReplicas 3", peak)
		}
	})

	t.Run("forged negative figures do not cancel a real load", func(t *testing.T) {
		ns := makeNamespace(t, c, "cancel")
		makeFunction(t, e.Client, ns, "fn", 10)
		_, url := startAutoscaler(t, c, Options{Interval: 100 * time.Millisecond})
		real := mustJSON(t, stats.Report{Activator: "act-1", Stats: []stats.Stat{
			{Namespace: ns, Name: "fn", Concurrency: 2, Queued: 2, Requests: 2}}})
		negative := mustJSON(t, stats.Report{Activator: "forger", Stats: []stats.Stat{
			{Namespace: ns, Name: "fn", Concurrency: -1e9, InFlight: -1 << 40, Queued: -1 << 40}}})
		deadline := time.Now().Add(3 * time.Second)
		var got int32
		for time.Now().Before(deadline) && got < 2 {
			for _, b := range [][]byte{negative, real} {
				if code, msg := post(t, url, b); code != http.StatusAccepted {
					t.Fatalf("answered %d %q", code, msg)
				}
			}
			time.Sleep(100 * time.Millisecond)
			got = replicas(t, e.Client, ns, "fn")
		}
		t.Logf("a real queue of 2 beside a forged report of negative figures: replicas %d", got)
		if got != 2 {
			t.Errorf("replicas %d, want 2 for the real queue of 2", got)
		}
	})

	t.Run("caps", func(t *testing.T) {
		ns := makeNamespace(t, c, "caps")
		makeFunction(t, e.Client, ns, "fn", 10)
		a, url := startAutoscaler(t, c, Options{Interval: time.Hour, ReportTTL: time.Hour})
		one := stats.Stat{Namespace: ns, Name: "fn", Concurrency: 1, InFlight: 1, Requests: 1}

		// Over 1 MiB: refused before it is read.
		big := forgedReport("big", 0, 6000, 200)
		code, msg := post(t, url, big)
		t.Logf("a report of %d bytes: %d %q", len(big), code, strings.TrimSpace(msg))
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("a report of %d bytes answered %d, want 413", len(big), code)
		}

		// More stats than the cap, though small.
		many := make([]stats.Stat, stats.MaxStats+1)
		for i := range many {
			many[i] = one
		}
		code, msg = post(t, url, mustJSON(t, stats.Report{Activator: "many", Stats: many}))
		t.Logf("a report of %d stats: %d %q", len(many), code, strings.TrimSpace(msg))
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, fmt.Sprint(stats.MaxStats)) {
			t.Errorf("a report of %d stats answered %d %q, want 413 naming the cap", len(many), code, msg)
		}

		// An activator's name is a pod's name.
		code, msg = post(t, url, mustJSON(t, stats.Report{Activator: strings.Repeat("a", stats.MaxActivatorLen+1), Stats: []stats.Stat{one}}))
		t.Logf("an activator name of %d bytes: %d %q", stats.MaxActivatorLen+1, code, strings.TrimSpace(msg))
		if code != http.StatusBadRequest {
			t.Errorf("an activator name of %d bytes answered %d, want 400", stats.MaxActivatorLen+1, code)
		}
		if fns, kept, activators := entries(a); fns != 0 || kept != 0 || activators != 0 {
			t.Errorf("refused reports left %d functions, %d stats, %d activators; want none", fns, kept, activators)
		}

		// At most maxActivators' reports are kept; the oldest go first.
		for i := 0; i < 100; i++ {
			if code, msg := post(t, url, mustJSON(t, stats.Report{Activator: fmt.Sprintf("act-%03d", i), Stats: []stats.Stat{one}})); code != http.StatusAccepted {
				t.Fatalf("answered %d %q", code, msg)
			}
		}
		a.mu.Lock()
		n := len(a.reports)
		_, oldest := a.reports["act-000"]
		_, newest := a.reports["act-099"]
		a.mu.Unlock()
		t.Logf("100 activators reported: %d reports kept", n)
		if n != maxActivators || oldest || !newest {
			t.Errorf("%d reports kept (the first kept: %v, the last: %v), want the last %d", n, oldest, newest, maxActivators)
		}
	})
}

// cachedClient is a client that reads from informers, as the manager's does.
func cachedClient(t *testing.T, e *testenv.Env) client.Client {
	t.Helper()
	cl, err := cluster.New(e.Config, func(o *cluster.Options) { o.Scheme = e.Scheme })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = cl.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !cl.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache not synced")
	}
	return cl.GetClient()
}

// startAutoscaler runs an autoscaler and serves its handler until the test
// ends; it returns once the autoscaler takes reports.
func startAutoscaler(t *testing.T, c client.Client, opts Options) (*Autoscaler, string) {
	t.Helper()
	a := New(c, opts)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !a.started.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the autoscaler did not start")
		}
	}
	return a, srv.URL + stats.Path
}

// entries counts what the autoscaler keeps from reports.
func entries(a *Autoscaler) (fns, kept, activators int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.reports {
		kept += len(r.loads)
	}
	return len(a.fns), kept, len(a.reports)
}

// heap is the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// totalAlloc is the bytes allocated so far.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// forgedReport is n stats of about perStat bytes of JSON each, every one a
// different function that does not exist, with traffic. The stats carry
// every field when the names leave room for it, else only concurrency and
// arrivals (the figures that keep a function up).
func forgedReport(activator string, seed, n, perStat int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"activator":%q,"stats":[`, activator)
	format := `{"namespace":"%s","name":"%s","concurrency":1,"inFlight":1,"queued":1,"requests":1}`
	if perStat-len(fmt.Sprintf(format, "", "")) < 2*20 {
		format = `{"namespace":"%s","name":"%s","concurrency":1,"requests":1}`
	}
	pad := perStat - len(fmt.Sprintf(format, "", "")) - 1 // the comma
	nsLen, nameLen := pad/2, pad-pad/2
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		id := fmt.Sprintf("-%d-%d", seed, i)
		fmt.Fprintf(&b, format, fill("ns"+id, nsLen), fill("ghost"+id, nameLen))
	}
	b.WriteString("]}")
	return b.Bytes()
}

func fill(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat("x", n-len(s))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

func makeNamespace(t *testing.T, c client.Client, name string) string {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// makeFunction creates a Function of concurrency 1 and, as the Function
// controller would, its Deployment at zero replicas.
func makeFunction(t *testing.T, c client.Client, ns, name string, maxReplicas int32) {
	t.Helper()
	ctx := context.Background()
	f := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Image: "example.com/fn:1"},
			Scale:  lambdapodv1alpha1.ScaleSpec{MaxReplicas: maxReplicas},
		},
	}
	if err := c.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{contract.LabelFunction: name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "example.com/fn:1"}}},
			},
		},
	}
	if err := c.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func replicas(t *testing.T, c client.Client, ns, name string) int32 {
	t.Helper()
	var d appsv1.Deployment
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(d.Spec.Replicas, 1)
}

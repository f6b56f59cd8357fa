//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// The Event (asynchronous) invocation cases: make dev runs the activators
// with NATS JetStream (the chart's eventQueue), retries 2 s apart
// (-event-retry-delay=2s) and a silent activator's events taken over after
// 10 s (-event-ack-wait=10s). The functions run the bash+curl image's
// record.sh or fail.sh (hack/dev/bashimage), which post the request id the
// Runtime API gave them and their event to a recorder in this process,
// reached from the pods at the bridge's address.
//
// The cases that only wait (every event runs, retries and on-failure,
// schedules, pendingEvents) run in parallel at the end of the suite; the
// ones that break something shared (an activator killed, NATS restarted)
// run alone.

// recorded is one invocation as the function reported it.
type recorded struct {
	id   string
	body []byte
	at   time.Time
}

// eventRecorder is an HTTP server the function pods post to:
// POST /record/<function> with X-Request-Id and the event as the body.
type eventRecorder struct {
	base string // http://<bridge address>:<port>

	mu  sync.Mutex
	got map[string][]recorded // function -> invocations in arrival order
}

var (
	recorderOnce sync.Once
	recorder     *eventRecorder
	recorderErr  error
)

// theRecorder starts the suite's recorder once.
func theRecorder(t *testing.T) *eventRecorder {
	t.Helper()
	recorderOnce.Do(func() {
		host, err := bridgeAddress()
		if err != nil {
			recorderErr = err
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			recorderErr = fmt.Errorf("recorder: %w", err)
			return
		}
		r := &eventRecorder{base: "http://" + l.Addr().String(), got: map[string][]recorded{}}
		go func() { _ = http.Serve(l, r) }()
		recorder = r
	})
	if recorderErr != nil {
		t.Fatal(recorderErr)
	}
	return recorder
}

// bridgeAddress is the node's address on the pods' bridge (the cluster's
// POD_GATEWAY, the bridge cni0's IPv4 address), which function pods reach:
// their NetworkPolicy limits who connects to them, not where they connect.
func bridgeAddress() (string, error) {
	if a := os.Getenv("POD_GATEWAY"); a != "" {
		return a, nil
	}
	ifc, err := net.InterfaceByName("cni0")
	if err != nil {
		return "", fmt.Errorf("the pods' bridge cni0: %w (is make dev up on this machine?)", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("cni0 has no IPv4 address")
}

func (r *eventRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fn, ok := strings.CutPrefix(req.URL.Path, "/record/")
	if req.Method != http.MethodPost || !ok || fn == "" {
		http.Error(w, "POST /record/<function>", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got[fn] = append(r.got[fn], recorded{id: req.Header.Get("X-Request-Id"), body: body, at: time.Now()})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// url is where function fn's handler records.
func (r *eventRecorder) url(fn string) string { return r.base + "/record/" + fn }

// of returns a copy of what function fn recorded so far.
func (r *eventRecorder) of(fn string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[fn])
}

// byID counts fn's invocations per request id.
func (r *eventRecorder) byID(fn string) map[string]int {
	out := map[string]int{}
	for _, x := range r.of(fn) {
		out[x.id]++
	}
	return out
}

// waitAll waits until fn recorded every id of want (at least once), and
// returns how long that took; it fails the test with the missing ids after
// timeout.
func (r *eventRecorder) waitAll(t *testing.T, fn string, want []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := r.byID(fn)
		var missing []string
		for _, id := range want {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			dup := 0
			for _, id := range want {
				dup += got[id] - 1
			}
			t.Logf("%s: all %d events ran, %s after waiting began (%d ran more than once)", fn, len(want), time.Since(start).Round(100*time.Millisecond), dup)
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			dump(t, fn)
			t.Fatalf("%s: %d of %d events accepted with 202 never ran (%s after waiting began), e.g. %q",
				fn, len(missing), len(want), timeout, missing[:min(5, len(missing))])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// recordFunction creates a public Function on the bash+curl image whose
// handler (record.handler unless change says otherwise) records at the
// suite's recorder, and waits until it is Ready.
func recordFunction(t *testing.T, name string, change func(*lambdapodv1alpha1.Function)) *lambdapodv1alpha1.Function {
	t.Helper()
	rec := theRecorder(t)
	img := bashImage(t)
	return newFunction(t, name, func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = img
		fn.Spec.Runtime.Handler = "record.handler"
		fn.Spec.Runtime.Env = append(fn.Spec.Runtime.Env, corev1.EnvVar{Name: "RECORD_URL", Value: rec.url(name)})
		if change != nil {
			change(fn)
		}
	})
}

// invokeEvent sends an Event invocation of fn with payload through the
// activator's Invoke API.
func invokeEvent(fn, payload string) (answer, error) {
	u := fmt.Sprintf("%s/2015-03-31/functions/%s.%s/invocations", activator, ns, fn)
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(payload))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), elapsed: time.Since(start)}, err
}

// sendEvents sends n Event invocations of fn, payload(i) each, from
// workers goroutines, and returns the request ids of those answered 202 by
// index, failing the test for any other answer. The first may wait for the
// activators to learn of a new function (404).
func sendEvents(t *testing.T, fn string, n, workers int, payload func(i int) string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := invokeEvent(fn, payload(0))
		if err == nil && a.status == 404 && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		ids := make([]string, n)
		if err != nil || a.status != 202 {
			t.Fatalf("the first Event of %s: %d %q %v, want 202", fn, a.status, a.body, err)
		}
		ids[0] = a.header.Get("X-Amzn-Requestid")
		var next atomic.Int64
		next.Store(1)
		var failed atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					a, err := invokeEvent(fn, payload(i))
					switch {
					case err != nil:
						if failed.Add(1) <= 5 {
							t.Errorf("Event %d of %s: %v", i, fn, err)
						}
					case a.status != 202 || a.header.Get("X-Amzn-Requestid") == "":
						if failed.Add(1) <= 5 {
							t.Errorf("Event %d of %s: %d %q (request id %q), want 202 with a request id", i, fn, a.status, a.body, a.header.Get("X-Amzn-Requestid"))
						}
					default:
						ids[i] = a.header.Get("X-Amzn-Requestid")
					}
				}
			}()
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			t.Fatalf("%d of %d Events of %s were not answered 202", f, n, fn)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("request id %q answered twice", id)
			}
			seen[id] = true
		}
		return ids
	}
}

// sentWith maps request ids (ids[i]) to the payload sent, payload(i).
func sentWith(ids []string, payload func(i int) string) map[string]string {
	want := map[string]string{}
	for i, id := range ids {
		want[id] = payload(i)
	}
	return want
}

// checkPayloads fails the test when a recorded event of fn is not the
// payload its request id was sent with (want: request id -> payload).
func checkPayloads(t *testing.T, rec *eventRecorder, fn string, want map[string]string) {
	t.Helper()
	bad := 0
	for _, x := range rec.of(fn) {
		if w, ok := want[x.id]; ok && string(x.body) != w {
			if bad++; bad <= 5 {
				t.Errorf("%s: request %s ran with %q, sent %q", fn, x.id, x.body, w)
			}
		}
	}
}

// TestEventsAllRun (issue #15): 1,000 Event invocations of a function at
// zero replicas through the activator's Invoke API: each is answered 202
// with a request id, and every one of them runs (at least once), with its
// payload and the request id its caller got.
func TestEventsAllRun(t *testing.T) {
	t.Parallel()
	const n = 1000
	rec := theRecorder(t)
	fn := recordFunction(t, "events-all", nil)
	if all, _ := pods(t, ns, fn.Name); all != 0 {
		t.Fatalf("%s has %d pods, want none before the events", fn.Name, all)
	}
	payload := func(i int) string { return fmt.Sprintf(`{"case":"all-run","n":%d}`, i) }
	start := time.Now()
	ids := sendEvents(t, fn.Name, n, 32, payload)
	t.Logf("%d Events answered 202 in %s", n, time.Since(start).Round(100*time.Millisecond))
	rec.waitAll(t, fn.Name, ids, 4*time.Minute)
	t.Logf("all ran %s after the first was sent", time.Since(start).Round(100*time.Millisecond))
	checkPayloads(t, rec, fn.Name, sentWith(ids, payload))
}

// activatorProcesses are the PIDs of the activators of the cluster's
// lambdapod, found in /proc on this node (the suite runs as root on it).
func activatorProcesses(t *testing.T) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte("/activator\x00")) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "POD_NAMESPACE="+systemNS) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// readyActivators counts the activator pods that are ready, and sums their
// containers' restarts.
func readyActivators(t *testing.T) (ready int, restarts int32) {
	t.Helper()
	var list corev1.PodList
	if err := k.List(context.Background(), &list, client.InNamespace(systemNS),
		client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
			if cs.Ready && p.DeletionTimestamp == nil {
				ready++
			}
		}
	}
	return ready, restarts
}

// TestEventsActivatorKilled (issue #15): 500 Events wait for a function
// at zero (two pods at most, one invocation at a time each, 20 ms and
// more) when every
// activator process is killed with SIGKILL: no drain, no acknowledgement.
// Once the activators are back, every one of the 500 runs.
func TestEventsActivatorKilled(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root on the node, to kill the activators' processes (run the suite as make e2e does)")
	}
	const n = 500
	rec := theRecorder(t)
	fn := recordFunction(t, "events-killed", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Concurrency = 1
		fn.Spec.Scale.MaxReplicas = 2
		fn.Spec.Runtime.Env = append(fn.Spec.Runtime.Env, corev1.EnvVar{Name: "RECORD_DELAY", Value: "0.02"})
	})
	payload := func(i int) string { return fmt.Sprintf(`{"case":"activator-killed","n":%d}`, i) }
	ids := sendEvents(t, fn.Name, n, 16, payload)

	pids := activatorProcesses(t)
	if len(pids) < 2 {
		t.Fatalf("%d activator processes found on the node, want the chart's 2", len(pids))
	}
	_, restartsBefore := readyActivators(t)
	ran := len(rec.byID(fn.Name))
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	killed := time.Now()
	t.Logf("killed the activators (pids %v) with %d of the %d events still to run", pids, n-ran, n)
	if n-ran < n/2 {
		t.Fatalf("only %d of %d events were still queued when the activators died: the case needs them waiting", n-ran, n)
	}

	// Back: both containers restarted and ready.
	for {
		ready, restarts := readyActivators(t)
		if ready >= 2 && restarts >= restartsBefore+int32(len(pids)) {
			t.Logf("activators ready again %s after the kill", time.Since(killed).Round(100*time.Millisecond))
			break
		}
		if time.Since(killed) > 2*time.Minute {
			t.Fatalf("activators not back 2m after the kill: %d ready, %d restarts (%d before)", ready, restarts, restartsBefore)
		}
		time.Sleep(500 * time.Millisecond)
	}
	rec.waitAll(t, fn.Name, ids, 3*time.Minute)
	t.Logf("all ran %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	checkPayloads(t, rec, fn.Name, sentWith(ids, payload))
}

// natsPod is the chart's NATS server's pod (make dev runs one), nil while
// there is none.
func natsPod(t *testing.T) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: systemNS, Name: "lambdapod-nats-0"}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatalf("the NATS server's pod: %v", err)
	}
	return &p
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}

// TestEventsNATSRestarted (issue #15): Events keep coming while the NATS
// server's pod is deleted and comes back (the StatefulSet recreates it on
// the same volume). Every Event answered 202 runs; while no server is
// reachable callers are refused with 503 (or 429), never 202 and never
// another error; and 202s come back with the server.
func TestEventsNATSRestarted(t *testing.T) {
	rec := theRecorder(t)
	fn := recordFunction(t, "events-nats", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Scale.MinReplicas = 1 // no cold start in the way
	})
	old := natsPod(t)
	if old == nil || !podReady(old) {
		t.Fatalf("NATS pod lambdapod-nats-0 is not there, or not ready: %v", old)
	}

	type result struct {
		i      int
		status int
		id     string
		err    error
		sent   time.Time
	}
	var (
		mu      sync.Mutex
		results []result
		stop    atomic.Bool
		seq     atomic.Int64
		wg      sync.WaitGroup
	)
	payload := func(i int) string { return fmt.Sprintf(`{"case":"nats-restarted","n":%d}`, i) }
	// The callers stop when the test ends, whatever way it ends.
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(seq.Add(1))
				sent := time.Now()
				a, err := invokeEvent(fn.Name, payload(i))
				mu.Lock()
				results = append(results, result{i: i, status: a.status, id: a.header.Get("X-Amzn-Requestid"), err: err, sent: sent})
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	count := func(since time.Time, status int) int {
		mu.Lock()
		defer mu.Unlock()
		c := 0
		for _, r := range results {
			if r.sent.After(since) && r.err == nil && r.status == status {
				c++
			}
		}
		return c
	}
	t0 := time.Now()
	for count(t0, 202) < 20 {
		if time.Since(t0) > time.Minute {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("fewer than 20 Events answered 202 in a minute before the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}

	deleted := time.Now()
	if err := k.Delete(context.Background(), old); err != nil {
		t.Fatalf("delete pod %s: %v", old.Name, err)
	}
	t.Logf("deleted pod %s", old.Name)
	var back time.Time
	for back.IsZero() {
		if p := natsPod(t); p != nil && p.UID != old.UID && podReady(p) {
			back = time.Now()
			t.Logf("NATS pod %s ready again %s after its deletion", p.Name, back.Sub(deleted).Round(100*time.Millisecond))
		}
		if time.Since(deleted) > 3*time.Minute {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("NATS not back 3m after its pod was deleted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Until Events are accepted again for 5 s.
	var again time.Time
	for {
		if again.IsZero() && count(back, 202) > 0 {
			again = time.Now()
		}
		if !again.IsZero() && time.Since(again) > 5*time.Second {
			break
		}
		if time.Since(back) > 2*time.Minute {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("no Event answered 202 within 2m of NATS being back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	var accepted []string
	sent := map[string]string{}
	codes := map[int]int{}
	var lastRefused time.Time
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("Event %d: %v, want an answer", r.i, r.err)
		case r.status == 202:
			accepted = append(accepted, r.id)
			sent[r.id] = payload(r.i)
		case r.status == 503 || r.status == 429:
			if r.sent.After(lastRefused) {
				lastRefused = r.sent
			}
		default:
			t.Errorf("Event %d: %d, want 202, or 503 or 429 while NATS is away", r.i, r.status)
		}
		codes[r.status]++
	}
	t.Logf("answers: %v (%d Events sent; NATS away %s, Events refused until %s after the deletion, accepted again %s after it)",
		codes, len(results), back.Sub(deleted).Round(100*time.Millisecond),
		lastRefused.Sub(deleted).Round(100*time.Millisecond), again.Sub(deleted).Round(100*time.Millisecond))
	if codes[503]+codes[429] == 0 {
		t.Errorf("no caller was refused while NATS was away: answers %v", codes)
	}
	rec.waitAll(t, fn.Name, accepted, 3*time.Minute)
	checkPayloads(t, rec, fn.Name, sent)
}

// invocationRecord is Lambda's record of an asynchronous invocation, as a
// destination receives it.
type invocationRecord struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

// TestEventsRetriedThenOnFailure (issue #15): a function that always fails
// (fail.sh) runs exactly 3 times per Event (the first attempt and
// maximumRetryAttempts 2, with make dev's retry delay of 2 s, then 4 s),
// and then its onFailure Function receives Lambda's invocation record:
// condition RetriesExhausted, approximateInvokeCount 3, the original
// payload.
func TestEventsRetriedThenOnFailure(t *testing.T) {
	t.Parallel()
	rec := theRecorder(t)
	dlq := recordFunction(t, "events-onfailure", nil)
	failing := recordFunction(t, "events-failing", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Handler = "fail.handler"
		retries := int32(2)
		fn.Spec.Async = &lambdapodv1alpha1.AsyncSpec{
			MaximumRetryAttempts: &retries,
			Destinations: &lambdapodv1alpha1.Destinations{
				OnFailure: &lambdapodv1alpha1.Destination{Function: dlq.Name},
			},
		}
	})
	const n = 3
	payload := func(i int) string { return fmt.Sprintf(`{"case":"on-failure","n":%d,"text":"keep me whole"}`, i) }
	ids := sendEvents(t, failing.Name, n, n, payload)

	// Each event's three attempts, then its record at the destination.
	records := map[string]invocationRecord{}
	deadline := time.Now().Add(3 * time.Minute)
	for len(records) < n {
		for _, x := range rec.of(dlq.Name) {
			var r invocationRecord
			if err := json.Unmarshal(x.body, &r); err != nil {
				t.Fatalf("%s got %q, not an invocation record: %v", dlq.Name, x.body, err)
			}
			records[r.RequestContext.RequestID] = r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d invocation records reached %s within 3m; attempts seen: %v", len(records), n, dlq.Name, rec.byID(failing.Name))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A fourth attempt would come 8 s after the third: wait longer.
	time.Sleep(15 * time.Second)

	attempts := rec.byID(failing.Name)
	for i, id := range ids {
		if attempts[id] != 3 {
			t.Errorf("event %d (%s) ran %d times, want 3 (1 + maximumRetryAttempts 2)", i, id, attempts[id])
		}
		var at []time.Time
		for _, x := range rec.of(failing.Name) {
			if x.id == id {
				at = append(at, x.at)
				if string(x.body) != payload(i) {
					t.Errorf("event %d attempt ran with %q, sent %q", i, x.body, payload(i))
				}
			}
		}
		if len(at) == 3 {
			t.Logf("event %d: attempts %s and %s apart", i, at[1].Sub(at[0]).Round(100*time.Millisecond), at[2].Sub(at[1]).Round(100*time.Millisecond))
			if gap := at[1].Sub(at[0]); gap < 1500*time.Millisecond {
				t.Errorf("event %d: second attempt %s after the first, want the 2 s retry delay", i, gap)
			}
		}
		r, ok := records[id]
		if !ok {
			t.Errorf("event %d (%s): no invocation record at %s; records for %v", i, id, dlq.Name, keysOf(records))
			continue
		}
		if r.Version != "1.0" || r.Timestamp == "" {
			t.Errorf("event %d: record version %q timestamp %q", i, r.Version, r.Timestamp)
		}
		if r.RequestContext.Condition != "RetriesExhausted" || r.RequestContext.ApproximateInvokeCount != 3 {
			t.Errorf("event %d: requestContext condition %q approximateInvokeCount %d, want RetriesExhausted 3",
				i, r.RequestContext.Condition, r.RequestContext.ApproximateInvokeCount)
		}
		if !strings.Contains(r.RequestContext.FunctionArn, failing.Name) {
			t.Errorf("event %d: functionArn %q does not name %s", i, r.RequestContext.FunctionArn, failing.Name)
		}
		if !jsonEqual(r.RequestPayload, []byte(payload(i))) {
			t.Errorf("event %d: requestPayload %s, want the original %s", i, r.RequestPayload, payload(i))
		}
		if r.ResponseContext.ExecutedVersion != "$LATEST" || r.ResponseContext.FunctionError == "" {
			t.Errorf("event %d: responseContext %+v, want executedVersion $LATEST and a functionError", i, r.ResponseContext)
		}
		var errPayload struct{ ErrorMessage, ErrorType string }
		if err := json.Unmarshal(r.ResponsePayload, &errPayload); err != nil || errPayload.ErrorType != "AlwaysFails" {
			t.Errorf("event %d: responsePayload %s, want fail.sh's error", i, r.ResponsePayload)
		}
	}
	if got := len(rec.of(dlq.Name)); got != n {
		t.Errorf("%s received %d records, want %d", dlq.Name, got, n)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestEventsSchedule (issue #15): spec.schedules with rate(1 minute) runs
// the function with an EventBridge Scheduled Event within about two
// minutes, and status.schedules says when it last did.
func TestEventsSchedule(t *testing.T) {
	t.Parallel()
	rec := theRecorder(t)
	fn := recordFunction(t, "events-schedule", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Schedules = []lambdapodv1alpha1.Schedule{{Name: "every-minute", Expression: "rate(1 minute)"}}
	})
	start := time.Now()
	for len(rec.of(fn.Name)) == 0 {
		if time.Since(start) > 150*time.Second {
			dump(t, fn.Name)
			t.Fatalf("%s was not run by its schedule within 150s", fn.Name)
		}
		time.Sleep(time.Second)
	}
	got := rec.of(fn.Name)[0]
	t.Logf("scheduled run %s after the Function was Ready: %s", got.at.Sub(start).Round(time.Second), got.body)
	var ev events.CloudWatchEvent
	if err := json.Unmarshal(got.body, &ev); err != nil {
		t.Fatalf("the scheduled event %q is not a CloudWatch (EventBridge) event: %v", got.body, err)
	}
	if ev.DetailType != "Scheduled Event" || ev.Source != "aws.events" || ev.ID == "" || ev.Time.IsZero() {
		t.Errorf("scheduled event detail-type %q source %q id %q time %v, want Scheduled Event from aws.events", ev.DetailType, ev.Source, ev.ID, ev.Time)
	}
	if len(ev.Resources) != 1 || !strings.HasPrefix(ev.Resources[0], "arn:aws:events:") || !strings.Contains(ev.Resources[0], "rule/") {
		t.Errorf("scheduled event resources %q, want the rule's ARN", ev.Resources)
	}
	if !jsonEqual(ev.Detail, []byte("{}")) {
		t.Errorf("scheduled event detail %s, want {}", ev.Detail)
	}

	var last *lambdapodv1alpha1.ScheduleStatus
	for {
		var f lambdapodv1alpha1.Function
		if err := k.Get(context.Background(), client.ObjectKeyFromObject(fn), &f); err != nil {
			t.Fatal(err)
		}
		for i := range f.Status.Schedules {
			if s := &f.Status.Schedules[i]; s.Name == "every-minute" && s.LastScheduleTime != nil {
				last = s
			}
		}
		if last != nil {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("status.schedules has no lastScheduleTime for every-minute: %+v", f.Status.Schedules)
		}
		time.Sleep(time.Second)
	}
	t.Logf("status.schedules: every-minute last %s, next %v", last.LastScheduleTime.UTC().Format(time.RFC3339), last.NextScheduleTime)
	if d := got.at.Sub(last.LastScheduleTime.Time); d < -5*time.Second || d > 90*time.Second {
		t.Errorf("lastScheduleTime %s, but the scheduled run came at %s", last.LastScheduleTime.UTC(), got.at.UTC())
	}
}

// TestEventsPendingInStatus: while Events wait for a slow function,
// status.pendingEvents counts them; once they ran it is 0.
func TestEventsPendingInStatus(t *testing.T) {
	t.Parallel()
	const n = 30
	rec := theRecorder(t)
	fn := recordFunction(t, "events-pending", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Concurrency = 1
		fn.Spec.Scale.MaxReplicas = 1
		fn.Spec.Runtime.Env = append(fn.Spec.Runtime.Env, corev1.EnvVar{Name: "RECORD_DELAY", Value: "1"})
	})
	ids := sendEvents(t, fn.Name, n, 4, func(i int) string { return fmt.Sprintf(`{"case":"pending","n":%d}`, i) })
	pending := func() *int64 {
		var f lambdapodv1alpha1.Function
		if err := k.Get(context.Background(), client.ObjectKeyFromObject(fn), &f); err != nil {
			t.Fatal(err)
		}
		return f.Status.PendingEvents
	}
	start := time.Now()
	var seen int64
	for {
		if p := pending(); p != nil && *p > 0 {
			seen = *p
			break
		}
		if len(rec.byID(fn.Name)) >= n {
			t.Fatalf("all %d events ran, and status.pendingEvents never counted them (%v)", n, pending())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("status.pendingEvents %d, %s after the events were sent, %d of %d ran by then", seen, time.Since(start).Round(100*time.Millisecond), len(rec.byID(fn.Name)), n)
	if seen > n {
		t.Errorf("status.pendingEvents %d, more than the %d events sent", seen, n)
	}
	rec.waitAll(t, fn.Name, ids, 3*time.Minute)
	for {
		p := pending()
		if p != nil && *p == 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("status.pendingEvents %v after every event ran, want 0", p)
		}
		time.Sleep(time.Second)
	}
}

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/testproc"

	"github.com/lambdapod/lambdapod/internal/testenv"
)

// activatorProc is an activator binary running as its own process, as each
// replica of the chart's Deployment does.
type activatorProc struct {
	url, admin string
	cmd        *exec.Cmd
	logs       *testproc.Buffer
	exited     chan struct{}
}

func startActivatorProc(t *testing.T, e *testenv.Env, id string, args ...string) *activatorProc {
	t.Helper()
	listen, admin := testproc.FreeAddr(t), testproc.FreeAddr(t)
	a := &activatorProc{url: "http://" + listen, admin: "http://" + admin, logs: &testproc.Buffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(bin.activator, append([]string{
		"-kubeconfig", e.Kubeconfig(t), "-listen", listen, "-admin-listen", admin, "-id", id,
		"-default-namespace", "default", "-drain-delay", "10ms", "-probe-not-ready=false",
	}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(20 * time.Second):
			_ = a.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("activator %s:\n%s", id, a.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := get(a.admin + "/readyz"); got.code == 200 {
			return a
		}
		select {
		case <-a.exited:
			t.Fatalf("activator %s exited:\n%s", id, a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("activator %s not ready after 30s:\n%s", id, a.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// invocation is one answer of the integration bootstrap through the
// Invoke API, with when it arrived.
type invocation struct {
	answer
	at       time.Duration
	inflight int
	errType  string
}

func (inv invocation) String() string {
	return fmt.Sprintf("%d at %v inflight %d %s %s", inv.code, inv.at.Round(10*time.Millisecond), inv.inflight, inv.errType, strings.TrimSpace(inv.body))
}

// invokeAll sends n Invoke API calls at once, alternating between the
// activators, and returns the answers in the order they arrived.
func invokeAll(t *testing.T, acts []*activatorProc, fn, payload string, n int) []invocation {
	t.Helper()
	start := time.Now()
	out := make([]invocation, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a := post(acts[i%len(acts)].url+"/2015-03-31/functions/"+fn+"/invocations", payload)
			inv := invocation{answer: a, at: time.Since(start), errType: a.header.Get("X-Amz-Function-Error")}
			var doc struct {
				Inflight int `json:"inflight"`
			}
			if json.Unmarshal([]byte(a.body), &doc) == nil {
				inv.inflight = doc.Inflight
			}
			out[i] = inv
		}(i)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

// Two activators (the chart's default) in front of one pod of concurrency
// 1: however the requests are spread over the activators, the pod runs one
// invocation at a time, each caller gets its function's answer in turn,
// none is told it timed out while it waited, and a function that does run
// past its timeout is still told so on time.
func TestTwoActivatorsShareAPod(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ns := namespace(t, e.Client, "twoact")
	system := namespace(t, e.Client, "lambdapod-system")
	makeFunction(t, e.Client, ns, "one", fnOpts{conc: 1, timeout: 2 * time.Second, replicas: 1, public: true})
	// As installed: both activators start at once, agree on one invoke key
	// (whichever makes its Secret first), and the pod takes only their
	// tokens.
	acts := make([]*activatorProc, 2)
	var wg sync.WaitGroup
	for i, id := range []string{"act-a", "act-b"} {
		wg.Go(func() {
			acts[i] = startActivatorProc(t, e, id, "-activation-timeout", "60s", "-system-namespace", system)
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	p := startPod(t, "one", 1, 2*time.Second, "p1", invokeKeyEnv(t, e, system, ns)...)
	publish(t, e.Client, ns, "one", ready(p.IP))
	fn := ns + ".one"
	for _, a := range acts {
		eventually(t, 10*time.Second, "the activator routes to the pod", func() bool {
			return post(a.url+"/2015-03-31/functions/"+fn+"/invocations", `{}`).code == 200
		})
	}

	t.Run("SixCallsOfOneAndAHalfSecondsEachAnswerInTurn", func(t *testing.T) {
		got := invokeAll(t, acts, fn, `{"sleepMs":1500}`, 6)
		for i, inv := range got {
			t.Logf("answer %d: %v", i, inv)
		}
		for i, inv := range got {
			if inv.err != nil || inv.code != 200 || inv.errType != "" || inv.inflight != 1 {
				t.Errorf("answer %d: %v, want 200 with the function's result, run alone", i, inv)
			}
			// In turn: the i-th answer comes after i+1 runs of 1.5 s.
			if min := time.Duration(i+1) * 1500 * time.Millisecond; inv.at < min-100*time.Millisecond {
				t.Errorf("answer %d came at %v, before %d runs of 1.5s could end: two ran at once", i, inv.at, i+1)
			}
		}
		if last := got[len(got)-1].at; last > 15*time.Second {
			t.Errorf("the last answer came at %v: the pod sat idle between invocations", last)
		}
		// The pod refused what did not fit (one activator's request while
		// the other's ran) instead of queueing it out of the activators'
		// sight.
		if busy := p.metric(t, `lambdapod_sidecar_invocations_rejected_total{reason="busy"}`); busy == "0" || busy == "" {
			t.Errorf("the sidecar never refused a busy invocation (%q): the activators did not contend", busy)
		}
	})

	t.Run("ABurstRunsOneAtATime", func(t *testing.T) {
		got := invokeAll(t, acts, fn, `{"sleepMs":20}`, 40)
		for i, inv := range got {
			if inv.err != nil || inv.code != 200 || inv.inflight != 1 {
				t.Errorf("answer %d: %v", i, inv)
			}
		}
	})

	t.Run("ATimeoutIsStillAnsweredOnTime", func(t *testing.T) {
		start := time.Now()
		got := post(acts[0].url+"/2015-03-31/functions/"+fn+"/invocations", `{"sleepMs":5000}`)
		d := time.Since(start)
		if got.code != 200 || got.header.Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(got.body, "Task timed out after 2.00 seconds") {
			t.Fatalf("past its timeout: %+v", got)
		}
		if d < 2*time.Second || d > 3500*time.Millisecond {
			t.Errorf("the timeout answer came after %v, want 2s (the function's timeout) and a little", d)
		}
		// The pod is reset and serves again, through either activator.
		for _, a := range acts {
			eventually(t, 10*time.Second, "the pod serves again", func() bool {
				return post(a.url+"/2015-03-31/functions/"+fn+"/invocations", `{}`).code == 200
			})
		}
	})
}

// metric reads one series from the sidecar's /metrics.
func (p *pod) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.IP + ":8080/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

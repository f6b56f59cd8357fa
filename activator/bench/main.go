// Command bench measures the activator (make bench-activator):
//
//  1. added latency (p50/p95/p99) of the activator in front of a real
//     runtime sidecar running a real aws-lambda-go bootstrap, at a fixed
//     open-loop rate (1,000 requests per second by default), next to calling
//     the sidecar directly, in alternating phases of one run;
//  2. the throughput limit (closed loop) through the activator and direct;
//  3. the time from an endpoint turning ready to the first held request
//     being forwarded to it;
//  4. the memory per request held at zero, with 10,000 requests held.
//
// The activator runs as a separate process (this binary with -role
// activator) serving the real request chain (activator/handler) over its
// real pools (activator/queue). Its endpoints come from a control port
// instead of the EndpointSlice informer, which isolates the activator's
// own cost from the API server's watch latency.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/internal/natstest"
	"github.com/lambdapod/lambdapod/internal/procstat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lambdapod/lambdapod/activator/auth"
	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
)

var onlyPart string

// out is where the report goes: stdout, and the doc section with -doc.
var (
	report bytes.Buffer
	out    io.Writer = io.MultiWriter(os.Stdout, &report)
	result           = map[string]float64{}
)

func want(part string) bool { return onlyPart == "" || onlyPart == part }

func main() {
	role := flag.String("role", "driver", "driver, activator or bound (both started by the driver)")
	sidecar := flag.String("sidecar", "bin/bench/runtime-sidecar", "runtime-sidecar binary")
	bootstrap := flag.String("bootstrap", "bin/bench/bootstrap", "bootstrap binary (an aws-lambda-go echo function)")
	rate := flag.Int("rate", 1000, "open-loop requests per second of the latency phases")
	phase := flag.Duration("phase", 250*time.Millisecond, "length of one latency phase")
	phases := flag.Int("phases", 40, "latency phases per path (alternating direct / through the activator, so that both see the same background load)")
	held := flag.Int("held", 10000, "requests held at zero for the memory measurement")
	conc := flag.Int("concurrency", 4, "sidecar bootstraps (and the function's concurrency)")
	eventQueue := flag.String("event-queue", "", "activator role: NATS URL of the durable event queue (the driver runs a NATS server and passes it)")
	listen := flag.String("listen", "127.0.0.1:0", "activator role: request listener")
	control := flag.String("control", "127.0.0.1:0", "activator role: control listener")
	backend := flag.String("backend", "", "bound role: the address bytes are copied to")
	only := flag.String("only", "", "run only this part: latency, throughput, events, ready or memory")
	doc := flag.String("doc", "", "rewrite the '## Activator' section of this Markdown file with the results")
	flag.Parse()
	onlyPart = *only
	var err error
	switch *role {
	case "activator":
		err = serveActivator(*listen, *control, *conc, *eventQueue)
	case "bound":
		err = serveBound(*listen, *backend)
	default:
		err = drive(*sidecar, *bootstrap, *rate, *phase, *phases, *held, *conc)
		if err == nil && *doc != "" {
			err = writeDoc(*doc, *rate, *held)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// ---- the activator process --------------------------------------------------

type staticFunctions struct{ conc int }

// Functions of the namespace bench are public; those of benchauth need a
// caller RBAC lets invoke them (authType RBAC).
func (s staticFunctions) Lookup(ns, name string) (handler.Function, bool) {
	return handler.Function{Timeout: 30 * time.Second, Concurrency: s.conc, EventFormat: event.HTTPAPIv2, Public: ns == "bench",
			Async: eventqueue.DefaultPolicy},
		ns == "bench" || ns == authNS
}

// The authenticated path: the caller sends benchToken, which the
// activator's Authorizer takes to the API server once, then from its cache
// (the cached decision is what every request of a steady caller costs).
const (
	authNS     = "benchauth"
	benchToken = "bench-token"
)

// benchReviews answer as an API server would for the bench's one caller:
// its token is user bench, who may invoke everything.
type benchReviews struct{}

func (benchReviews) Create(_ context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	tr.Status = authenticationv1.TokenReviewStatus{Authenticated: tr.Spec.Token == benchToken, User: authenticationv1.UserInfo{Username: "bench"}}
	return tr, nil
}

type benchAccess struct{}

func (benchAccess) Create(_ context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	sar.Status.Allowed = sar.Spec.User == "bench"
	return sar, nil
}

// firstInvoke records when the first invocation after a reset leaves.
type firstInvoke struct {
	inner handler.Invoker
	mu    sync.Mutex
	armed bool
	at    time.Time
	done  chan struct{}
}

func (f *firstInvoke) Invoke(ctx context.Context, addr string, r *proxy.Request) (*http.Response, error) {
	f.mu.Lock()
	if f.armed {
		f.armed = false
		f.at = time.Now()
		close(f.done)
	}
	f.mu.Unlock()
	return f.inner.Invoke(ctx, addr, r)
}

func serveActivator(listen, control string, conc int, eventQueue string) error {
	fns := staticFunctions{conc: conc}
	pools := queue.NewRegistry(20000)
	pools.Capacity = func(queue.Key) int { return conc }
	fi := &firstInvoke{inner: proxy.New()}
	m := metrics.New(prometheus.NewRegistry(), pools) // the same per-request metrics as in production
	chain := handler.New(handler.Options{ActivationTimeout: 10 * time.Minute, TimeoutGrace: time.Second}, fns, pools, fi, m)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", control)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	// /endpoints?fn=x&addrs=a,b sets a function's endpoints. With wait=1
	// it answers once the first held request was forwarded, with the
	// nanoseconds from the update to that moment.
	mux.HandleFunc("/endpoints", func(w http.ResponseWriter, r *http.Request) {
		k := queue.Key{Namespace: "bench", Name: r.URL.Query().Get("fn")}
		if ns := r.URL.Query().Get("ns"); ns != "" {
			k.Namespace = ns
		}
		var addrs []string
		if a := r.URL.Query().Get("addrs"); a != "" {
			addrs = strings.Split(a, ",")
		}
		wait := r.URL.Query().Get("wait") == "1"
		if wait {
			fi.mu.Lock()
			fi.armed, fi.done = true, make(chan struct{})
			fi.mu.Unlock()
		}
		start := time.Now()
		pools.SetEndpoints(k, addrs)
		if wait {
			<-fi.done
			fmt.Fprint(w, fi.at.Sub(start).Nanoseconds())
		}
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		k := queue.Key{Namespace: "bench", Name: r.URL.Query().Get("fn")}
		in, q, pods := pools.Get(k).Counts()
		var ms runtime.MemStats
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"inflight": in, "queued": q, "pods": pods,
			"heapInuse": ms.HeapInuse, "stackInuse": ms.StackInuse, "sys": ms.Sys, "mallocs": ms.Mallocs,
			"numGC": ms.NumGC, "gcPauseNs": ms.PauseTotalNs, "goroutines": runtime.NumGoroutine(), "rss": procstat.StatusKiB(0, "VmRSS") * 1024,
		})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(cln, mux) }()
	fmt.Fprintf(os.Stdout, "listening %s control %s\n", ln.Addr(), cln.Addr())
	chain.SetAuthorizer(auth.New(benchReviews{}, benchAccess{}, nil, auth.Options{TTL: time.Hour}))
	if eventQueue != "" {
		// As the activator runs with -event-queue: Events stored in NATS
		// before their 202, run from there through the same chain.
		chain.UseDurableEvents()
		q, err := eventqueue.Open(context.Background(), eventqueue.Config{URL: eventQueue})
		if err != nil {
			return err
		}
		chain.SetEventQueue(q)
		go q.Run(context.Background(), chain.EventPolicy, chain.RunEvent)
	}
	srv := &http.Server{Handler: chain, ReadHeaderTimeout: 30 * time.Second}
	parker := park.New(srv) // as in the activator: held requests park
	chain.SetParker(parker)
	go func() { _ = parker.Serve() }()
	return srv.Serve(ln)
}

// ---- the driver ----------------------------------------------------------------

type proc struct {
	cmd  *exec.Cmd
	addr []string
}

func start(re *regexp.Regexp, name string, args ...string) (*proc, error) {
	return startEnv("", re, name, args...)
}

// startEnv starts a process with extra KEY=VALUE environment (space separated).
func startEnv(env string, re *regexp.Regexp, name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	if env != "" {
		cmd.Env = append(os.Environ(), strings.Fields(env)...)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1:]
				sent = true
			}
		}
	}()
	select {
	case a := <-found:
		return &proc{cmd: cmd, addr: a}, nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start", name)
	}
}

func (p *proc) stop() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }

// The load generator shares the machine's 2 CPUs with the processes under
// test, so its own cost is kept small: a raw HTTP/1.1 client over pooled
// keep-alive connections, with the request made once per URL, written with
// one write and answered on the calling goroutine (net/http's client hands
// every request to two goroutines of its connection, and allocates its
// request and headers each time). Its CPU otherwise shows as queueing in
// both paths alike.
type rawClient struct {
	addr string
	req  []byte
	idle chan *rawConn
	// want is the answer's status: 200, or 202 for an Event.
	want int
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

var (
	rawMu      sync.Mutex
	rawClients = map[string]*rawClient{}
)

const benchEvent = `{"hello":"bench"}`

func rawFor(url string) (*rawClient, error) {
	rawMu.Lock()
	defer rawMu.Unlock()
	if c := rawClients[url]; c != nil {
		return c, nil
	}
	rest, ok := strings.CutPrefix(url, "http://")
	if !ok {
		return nil, fmt.Errorf("not an http URL: %s", url)
	}
	// A URL ending in #event sends Event (asynchronous) invocations.
	rest, isEvent := strings.CutSuffix(rest, "#event")
	host, path, _ := strings.Cut(rest, "/")
	var b strings.Builder
	fmt.Fprintf(&b, "POST /%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, host, len(benchEvent))
	want := http.StatusOK
	if isEvent {
		b.WriteString("X-Amz-Invocation-Type: Event\r\n")
		want = http.StatusAccepted
	}
	if strings.Contains(url, "/functions/"+authNS+".") {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", benchToken)
	}
	b.WriteString("\r\n" + benchEvent)
	c := &rawClient{addr: host, req: []byte(b.String()), idle: make(chan *rawConn, 20000), want: want}
	rawClients[url] = c
	return c, nil
}

// invoke posts the bench event to url and returns the time to its answer,
// which must be a 200 without a function error.
func invoke(url string) (time.Duration, error) {
	rc, err := rawFor(url)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	var c *rawConn
	select {
	case c = <-rc.idle:
	default:
		nc, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, err
		}
		c = &rawConn{c: nc, br: bufio.NewReaderSize(nc, 4096)}
	}
	status, keep, err := c.roundTrip(rc.req)
	if err != nil {
		c.c.Close()
		return 0, err
	}
	d := time.Since(t0)
	if keep {
		select {
		case rc.idle <- c:
		default:
			c.c.Close()
		}
	} else {
		c.c.Close()
	}
	if status != rc.want {
		return 0, fmt.Errorf("status %d", status)
	}
	return d, nil
}

// roundTrip writes req and reads the answer: its status, whether the
// connection may be kept, and a function error as an error.
func (c *rawConn) roundTrip(req []byte) (int, bool, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep, fnErr := -1, true, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, _ := strings.Cut(string(h), ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			length, _ = strconv.Atoi(v)
		case "connection":
			keep = !strings.EqualFold(v, "close")
		case "transfer-encoding":
			return 0, false, fmt.Errorf("unexpected Transfer-Encoding %s", v)
		case "x-amz-function-error":
			fnErr = true
		}
	}
	if length < 0 {
		return 0, false, errors.New("answer without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, false, err
	}
	if fnErr {
		return status, keep, errors.New("function error")
	}
	return status, keep, nil
}

// openLoop sends rate requests per second for d and returns the latencies.
func openLoop(url string, rate int, d time.Duration) ([]time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int32
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / interval)
	for i := 0; i < n; i++ {
		next := start.Add(time.Duration(i) * interval)
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := invoke(url)
			if err != nil {
				errs.Add(1)
				return
			}
			mu.Lock()
			lat = append(lat, l)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, int(errs.Load())
}

func closedLoop(url string, workers int, d time.Duration) (float64, int) {
	var ok, errs atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := invoke(url); err != nil {
					errs.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / d.Seconds(), int(errs.Load())
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }

type stats struct {
	Inflight, Queued, Pods, Goroutines int
	HeapInuse, StackInuse, Sys, RSS    uint64
	Mallocs, NumGC, GCPauseNs          uint64
}

func getStats(control, fn string, gc bool) (stats, error) {
	u := "http://" + control + "/stats?fn=" + fn
	if gc {
		u += "&gc=1"
	}
	resp, err := http.Get(u)
	if err != nil {
		return stats{}, err
	}
	defer resp.Body.Close()
	var m map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return stats{}, err
	}
	return stats{Inflight: int(m["inflight"]), Queued: int(m["queued"]), Pods: int(m["pods"]), Goroutines: int(m["goroutines"]),
		HeapInuse: uint64(m["heapInuse"]), StackInuse: uint64(m["stackInuse"]), Sys: uint64(m["sys"]), RSS: uint64(m["rss"]),
		Mallocs: uint64(m["mallocs"]), NumGC: uint64(m["numGC"]), GCPauseNs: uint64(m["gcPauseNs"])}, nil
}

// setEndpointsNS sets the endpoints of a function of another namespace.
func setEndpointsNS(control, ns, fn string, addrs []string) (time.Duration, error) {
	resp, err := http.Get("http://" + control + "/endpoints?ns=" + ns + "&fn=" + fn + "&addrs=" + strings.Join(addrs, ","))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return 0, nil
}

func setEndpoints(control, fn string, addrs []string, wait bool) (time.Duration, error) {
	u := "http://" + control + "/endpoints?fn=" + fn + "&addrs=" + strings.Join(addrs, ",")
	if wait {
		u += "&wait=1"
	}
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !wait {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return time.Duration(n), err
}

func drive(sidecarBin, bootstrapBin string, rate int, phase time.Duration, phases, held, conc int) error {
	fmt.Fprintf(out, "# activator benchmark: %d CPUs, %s, load average at start %s\n", runtime.NumCPU(), runtime.Version(), procstat.LoadAvg())
	defer func() { fmt.Fprintf(out, "\nload average at the end: %s\n", procstat.LoadAvg()) }()
	// The sidecar as the manager runs it: GOMAXPROCS=1 (a function of up
	// to one vCPU); the bootstraps, which in a pod run in their own
	// container, without it.
	sc, err := startEnv("GOMAXPROCS=1", regexp.MustCompile(`invoke API listening.* addr=(\S+)`), sidecarBin,
		"--invoke-addr", "127.0.0.1:0", "--runtime-api", "127.0.0.1:0", "--function-name", "fn",
		"--concurrency", strconv.Itoa(conc), "--timeout", "30s", "--queue-size", "1000", "--", "env", "-u", "GOMAXPROCS", bootstrapBin)
	if err != nil {
		return err
	}
	defer sc.stop()
	scAddr := sc.addr[0]
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + scAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 1000 {
			return fmt.Errorf("sidecar not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	self, _ := os.Executable()
	// As the chart runs it: GOMAXPROCS from its CPU request of 100m.
	// BENCH_ACTIVATOR_ENV adds to (or overrides) that.
	natsDir, err := os.MkdirTemp("", "lambdapod-bench-nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(natsDir)
	ns, err := natstest.Run(natsDir, 0)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	act, err := startEnv(strings.TrimSpace("GOMAXPROCS=1 "+os.Getenv("BENCH_ACTIVATOR_ENV")), regexp.MustCompile(`listening (\S+) control (\S+)`), self,
		"-role", "activator", "-concurrency", strconv.Itoa(conc), "-event-queue", ns.ClientURL())
	if err != nil {
		return err
	}
	defer act.stop()
	actAddr, control := act.addr[0], act.addr[1]
	if _, err := setEndpoints(control, "fn", []string{scAddr}, false); err != nil {
		return err
	}
	direct := "http://" + scAddr + "/2015-03-31/functions/fn/invocations"
	// The proxy bound (bound_linux.go), run as the activator is.
	bp, err := startEnv("GOMAXPROCS=1", regexp.MustCompile(`bound listening (\S+)`), self, "-role", "bound", "-backend", scAddr)
	if err != nil {
		return err
	}
	defer bp.stop()
	bound := "http://" + bp.addr[0] + "/2015-03-31/functions/fn/invocations"
	via := "http://" + actAddr + "/2015-03-31/functions/bench.fn/invocations"
	viaAuth := "http://" + actAddr + "/2015-03-31/functions/" + authNS + ".fn/invocations"
	if _, err := setEndpointsNS(control, authNS, "fn", []string{scAddr}); err != nil {
		return err
	}

	// Warm up both paths.
	openLoop(direct, rate, 500*time.Millisecond)
	openLoop(via, rate, 500*time.Millisecond)
	openLoop(viaAuth, rate, 500*time.Millisecond)
	openLoop(bound, rate, 500*time.Millisecond)

	if os.Getenv("BENCH_PAUSE") != "" {
		fmt.Fprintln(out, "control", control)
	}
	// 1. Latency at a fixed rate, alternating phases.
	if want("latency") {
		cpu0, _ := procstat.CPU(act.cmd.Process.Pid)
		bcpu0, _ := procstat.CPU(bp.cmd.Process.Pid)
		s0, err := getStats(control, "fn", false)
		if err != nil {
			return err
		}
		n, nb := latency(direct, via, viaAuth, bound, rate, phase, phases)
		cpu1, _ := procstat.CPU(act.cmd.Process.Pid)
		bcpu1, _ := procstat.CPU(bp.cmd.Process.Pid)
		cpu := cpu1 - cpu0
		s1, err := getStats(control, "fn", false)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nActivator CPU time (user+system, from /proc/<pid>/stat) per request through it: %.0f µs; heap allocations per request: %.0f; garbage collections: %d (one per %.0f requests), stop-the-world pauses %.1f ms in all\n",
			float64(cpu.Microseconds())/float64(n), float64(s1.Mallocs-s0.Mallocs)/float64(n),
			s1.NumGC-s0.NumGC, float64(n)/float64(max(s1.NumGC-s0.NumGC, 1)), float64(s1.GCPauseNs-s0.GCPauseNs)/1e6)
		fmt.Fprintf(out, "\nProxy bound CPU time per request through it: %.0f µs\n", float64((bcpu1-bcpu0).Microseconds())/float64(max(nb, 1)))
	}
	if want("throughput") {
		throughput(direct, via, bound)
	}
	if want("events") {
		if err := durableEvents(via, ns.ClientURL()); err != nil {
			return err
		}
	}
	if want("ready") {
		if err := readyToForwarded(actAddr, control, scAddr); err != nil {
			return err
		}
	}
	if want("memory") {
		return memory(actAddr, control, scAddr, held)
	}
	return nil
}

// latency returns how many requests went through the activator and how
// many through the proxy bound.
func latency(direct, via, viaAuth, bound string, rate int, phase time.Duration, phases int) (int, int) {
	var ld, la, lz, lb []time.Duration
	var ed, ea, ez, eb int
	// Per round of three back-to-back phases, the p95 of each path: a
	// burst of other work on this shared machine lands in some phases and
	// not others, so the pooled p95s above differ by it; the median over
	// the rounds of the paired differences does not.
	var pairA, pairZ, pairB []time.Duration
	for i := 0; i < phases; i++ {
		d, e := openLoop(direct, rate, phase)
		ld, ed = append(ld, d...), ed+e
		a, e := openLoop(via, rate, phase)
		la, ea = append(la, a...), ea+e
		z, e := openLoop(viaAuth, rate, phase)
		lz, ez = append(lz, z...), ez+e
		bb, e := openLoop(bound, rate, phase)
		lb, eb = append(lb, bb...), eb+e
		slices.Sort(d)
		slices.Sort(a)
		slices.Sort(z)
		slices.Sort(bb)
		pairA = append(pairA, pct(a, .95)-pct(d, .95))
		pairZ = append(pairZ, pct(z, .95)-pct(d, .95))
		pairB = append(pairB, pct(bb, .95)-pct(d, .95))
	}
	slices.Sort(pairA)
	slices.Sort(pairZ)
	slices.Sort(pairB)
	slices.Sort(lb)
	slices.Sort(ld)
	slices.Sort(la)
	slices.Sort(lz)
	fmt.Fprintf(out, "\n### Latency at %d requests/s (open loop, %d alternating phases of %v per path, Invoke API, %d-byte event)\n\n", rate, phases, phase, len(`{"hello":"bench"}`))
	fmt.Fprintln(out, "| path | requests | errors | p50 | p95 | p99 |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	row := func(name string, l []time.Duration, e int) {
		fmt.Fprintf(out, "| %s | %d | %d | %s | %s | %s |\n", name, len(l), e, ms(pct(l, .5)), ms(pct(l, .95)), ms(pct(l, .99)))
	}
	added := func(name string, l []time.Duration) {
		fmt.Fprintf(out, "| **%s** | | | %s | %s | %s |\n", name, ms(pct(l, .5)-pct(ld, .5)), ms(pct(l, .95)-pct(ld, .95)), ms(pct(l, .99)-pct(ld, .99)))
	}
	row("sidecar directly", ld, ed)
	row("through the activator, public function", la, ea)
	row("through the activator, authenticated caller (bearer token, cached decision)", lz, ez)
	row("through the proxy bound (bytes copied, no HTTP)", lb, eb)
	added("added by the activator", la)
	added("added by the activator with authorisation", lz)
	added("added by the proxy bound", lb)
	fmt.Fprintf(out, "\nAdded p95, median over the %d rounds of each round's p95 through the activator minus the sidecar's (paired phases, %v apart): %s public, %s with authorisation; %s through the proxy bound.\n",
		phases, phase, ms(pct(pairA, .5)), ms(pct(pairZ, .5)), ms(pct(pairB, .5)))
	result["boundP95ms"] = float64((pct(lb, .95) - pct(ld, .95)).Microseconds()) / 1000
	result["boundPairedP95ms"] = float64(pct(pairB, .5).Microseconds()) / 1000
	result["addedP95ms"] = float64((pct(la, .95) - pct(ld, .95)).Microseconds()) / 1000
	result["addedAuthP95ms"] = float64((pct(lz, .95) - pct(ld, .95)).Microseconds()) / 1000
	result["pairedP95ms"] = float64(pct(pairA, .5).Microseconds()) / 1000
	result["pairedAuthP95ms"] = float64(pct(pairZ, .5).Microseconds()) / 1000
	return len(la) + ea + len(lz) + ez, len(lb) + eb
}

// throughput runs the three paths closed-loop in turns (three rounds of
// one second each, the order rotating), so that other work on the machine
// falls on all of them alike.
func throughput(direct, via, bound string) {
	const rounds = 3
	fmt.Fprintf(out, "\n### Throughput limit (closed loop, 64 clients, %d rounds of 1 s per path, the order rotating)\n\n", rounds)
	paths := []string{direct, via, bound}
	var rps [3]float64
	var errs [3]int
	for r := range rounds {
		for j := range paths {
			i := (r + j) % len(paths)
			t, e := closedLoop(paths[i], 64, time.Second)
			rps[i] += t / rounds
			errs[i] += e
		}
	}
	fmt.Fprintln(out, "| path | requests/s | of the direct path's | errors |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for i, name := range []string{"sidecar directly", "through the activator", "through the proxy bound (bytes copied, no HTTP)"} {
		fmt.Fprintf(out, "| %s | %.0f | %.0f%% | %d |\n", name, rps[i], 100*rps[i]/rps[0], errs[i])
	}
	result["throughputPct"] = 100 * rps[1] / rps[0]
	result["boundThroughputPct"] = 100 * rps[2] / rps[0]
}

// durableEvents measures Event invocations kept in NATS next to
// synchronous ones through the same activator: how many are accepted (each
// stored before its 202), then how fast the queue drains.
func durableEvents(via, natsURL string) error {
	fmt.Fprintf(out, "\n### Event invocations kept in NATS JetStream (closed loop, 64 clients, 3 s each)\n\n")
	ts, e1 := closedLoop(via, 64, 3*time.Second)
	start := time.Now()
	te, e2 := closedLoop(via+"#event", 64, 3*time.Second)
	accepted := te * 3
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var left uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := js.Stream(ctx, "LAMBDAPOD_EVENTS")
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = st.Info(ctx)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("the event stream: %w", err)
		}
		if left = info.State.Msgs; left == 0 || time.Since(start) > 3*time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ran := time.Since(start)
	fmt.Fprintln(out, "| invocations through the activator | per second | errors |")
	fmt.Fprintln(out, "|---|---|---|")
	fmt.Fprintf(out, "| synchronous (RequestResponse), answered | %.0f | %d |\n", ts, e1)
	fmt.Fprintf(out, "| Event, accepted: stored in NATS, then 202 | %.0f | %d |\n", te, e2)
	fmt.Fprintf(out, "| Event, run from the queue (the %.0f accepted, from the first accept until the stream was empty: %s) | %.0f | %d left |\n",
		accepted, ran.Round(100*time.Millisecond), accepted/ran.Seconds(), left)
	result["eventsAcceptedPerSec"] = te
	result["syncPerSec"] = ts
	return nil
}

func readyToForwarded(actAddr, control, scAddr string) error {

	// 3. Ready -> forwarded: hold 100 requests at zero, then publish the
	// endpoint; the activator times the update to the first forward.
	fmt.Fprintf(out, "\n### From an endpoint turning ready to the first held request forwarded (100 held, 20 rounds)\n\n")
	var rf []time.Duration
	var e2e []time.Duration
	for round := 0; round < 20; round++ {
		fn := fmt.Sprintf("cold%d", round)
		var wg sync.WaitGroup
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = invoke("http://" + actAddr + "/2015-03-31/functions/bench." + fn + "/invocations")
			}()
		}
		for {
			s, err := getStats(control, fn, false)
			if err != nil {
				return err
			}
			if s.Queued == 100 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		t0 := time.Now()
		d, err := setEndpoints(control, fn, []string{scAddr}, true)
		if err != nil {
			return err
		}
		e2e = append(e2e, time.Since(t0))
		rf = append(rf, d)
		wg.Wait()
	}
	slices.Sort(rf)
	slices.Sort(e2e)
	fmt.Fprintln(out, "| measure | median | max |")
	fmt.Fprintln(out, "|---|---|---|")
	fmt.Fprintf(out, "| endpoint update -> first held request sent to the pod (inside the activator) | %s | %s |\n", ms(pct(rf, .5)), ms(rf[len(rf)-1]))
	result["readyMaxMs"] = float64(rf[len(rf)-1].Microseconds()) / 1000
	fmt.Fprintf(out, "| control call round trip incl. the above (upper bound) | %s | %s |\n", ms(pct(e2e, .5)), ms(e2e[len(e2e)-1]))
	return nil
}

func memory(actAddr, control, scAddr string, held int) error {

	// 4. Memory per held request.
	fmt.Fprintf(out, "\n### Memory per request held at zero (%d held, HTTP/1.1, one connection each)\n\n", held)
	// The held requests are for the sidecar's function, at zero pods.
	if _, err := setEndpoints(control, "fn", nil, false); err != nil {
		return err
	}
	before, err := getStats(control, "fn", true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	holdClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true, DisableCompression: true}}
	var hw sync.WaitGroup
	var holdErrs, answered atomic.Int32
	for i := 0; i < held; i++ {
		hw.Add(1)
		go func() {
			defer hw.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+actAddr+"/2015-03-31/functions/bench.fn/invocations", strings.NewReader(`{"hello":"bench"}`))
			resp, err := holdClient.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					holdErrs.Add(1)
				}
				return
			}
			if _, err := io.Copy(io.Discard, resp.Body); err == nil && resp.StatusCode == http.StatusOK {
				answered.Add(1)
			} else if os.Getenv("BENCH_DEBUG") != "" {
				fmt.Fprintln(os.Stderr, resp.StatusCode, err, resp.Header)
			}
			resp.Body.Close()
		}()
		if i%500 == 499 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var after stats
	for i := 0; ; i++ {
		after, err = getStats(control, "fn", false)
		if err != nil {
			cancel()
			return err
		}
		if after.Queued >= held || i > 3000 || int(holdErrs.Load())+after.Queued >= held {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	after, _ = getStats(control, "fn", true)
	if os.Getenv("BENCH_PAUSE") != "" {
		fmt.Fprintln(os.Stderr, "holding for 15s (BENCH_PAUSE)")
		time.Sleep(15 * time.Second)
	}
	// Then the function's pod turns ready: every held request is answered.
	released := time.Now()
	if _, err := setEndpoints(control, "fn", []string{scAddr}, false); err != nil {
		cancel()
		return err
	}
	allDone := make(chan struct{})
	go func() { hw.Wait(); close(allDone) }()
	select {
	case <-allDone:
	case <-time.After(2 * time.Minute):
		cancel()
		<-allDone
	}
	drained := time.Since(released)
	cancel()
	n := float64(after.Queued)
	if n == 0 {
		return fmt.Errorf("no request was held (%d errors)", holdErrs.Load())
	}
	kib := func(a, b uint64) string { return fmt.Sprintf("%.1f KiB", (float64(a)-float64(b))/n/1024) }
	fmt.Fprintf(out, "held: %d (client errors %d), goroutines %d -> %d\n\n", after.Queued, holdErrs.Load(), before.Goroutines, after.Goroutines)
	fmt.Fprintln(out, "| measure | before | with requests held | per held request |")
	fmt.Fprintln(out, "|---|---|---|---|")
	fmt.Fprintf(out, "| Go heap in use | %.1f MiB | %.1f MiB | %s |\n", mib(before.HeapInuse), mib(after.HeapInuse), kib(after.HeapInuse, before.HeapInuse))
	fmt.Fprintf(out, "| goroutine stacks | %.1f MiB | %.1f MiB | %s |\n", mib(before.StackInuse), mib(after.StackInuse), kib(after.StackInuse, before.StackInuse))
	fmt.Fprintf(out, "| heap + stacks | | | %s |\n", kib(after.HeapInuse+after.StackInuse, before.HeapInuse+before.StackInuse))
	result["heldKiB"] = (float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)) / n / 1024
	fmt.Fprintf(out, "| process RSS | %.1f MiB | %.1f MiB | %s |\n", mib(before.RSS), mib(after.RSS), kib(after.RSS, before.RSS))
	fmt.Fprintf(out, "\nThen the pod turned ready: %d of %d held requests answered 200 in %.1f s.\n", answered.Load(), after.Queued, drained.Seconds())
	result["heldAnswered"] = float64(answered.Load())
	if int(answered.Load()) < after.Queued {
		return fmt.Errorf("only %d of %d held requests were answered 200 once the pod was ready", answered.Load(), after.Queued)
	}
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

const docIntro = `Command: ` + "`make bench-activator`" + ` (builds the runtime sidecar, an aws-lambda-go echo
bootstrap and ` + "`activator/bench`" + `, runs it, and rewrites this section).

Setup, all on this machine in one run: a real runtime sidecar (` + "`runtime-sidecar/cmd`" + `,
4 bootstraps) running a real aws-lambda-go echo function
(` + "`activator/integration/testdata/bootstrap`" + `); the activator as its own process
serving its real request chain (` + "`activator/handler`" + ` with the production metrics,
over ` + "`activator/queue`" + ` and ` + "`activator/proxy`" + `). Its endpoints come from a control
port instead of the EndpointSlice informer, which isolates the activator's own
cost from the API server's watch latency (the informer path is exercised by
the envtest integration tests, not timed here). Clients call the Lambda Invoke
API (` + "`POST /2015-03-31/functions/{name}/invocations`" + `) over keep-alive HTTP/1.1,
either on the sidecar directly, through the activator, or through the
proxy bound: ` + "`activator/bench -role bound`" + `, the least any proxy can do
(the bytes of each connection copied to one of its own to the sidecar, on
one thread with one epoll set and raw system calls, no HTTP read at all),
which shows what any hop costs on this machine. The latency phases
alternate between the paths so that all see the same background load. The
activator runs as the chart runs it, with GOMAXPROCS=1 (from its CPU
request of 100m), as does the proxy bound. The load generator shares the
2 CPUs with the processes under test (and
with whatever else runs on the machine: the load average is printed); it is
a raw HTTP/1.1 client over pooled keep-alive connections, each request made
once and written with one write, to take as little of them as it can.
The activator keeps Event invocations in NATS JetStream (` + "`-event-queue`" + `, as
` + "`docs/async.md`" + ` describes), served by a NATS server that runs in the
driver's process with its store in a temporary directory (file storage,
as the chart's; one more consumer of the same CPUs).

`

func writeDoc(path string, rate, held int) error {
	var b strings.Builder
	b.WriteString("## Activator\n\n")
	b.WriteString(docIntro)
	b.WriteString(strings.TrimSpace(strings.Replace(report.String(), "# activator benchmark:", "Run:", 1)))
	b.WriteString("\n\nTargets in this run:\n\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	if v, ok := result["addedP95ms"]; ok {
		fmt.Fprintf(&b, "- added latency at p95 at %d requests/s: pooled %.3f ms (target <= 0.5 ms: %s); median of the paired rounds %.3f ms (%s).\n",
			rate, v, verdict(v <= 0.5), result["pairedP95ms"], verdict(result["pairedP95ms"] <= 0.5))
	}
	if v, ok := result["addedAuthP95ms"]; ok {
		fmt.Fprintf(&b, "- the same with authorisation on (a bearer token, cached decision): pooled %.3f ms (%s); median of the paired rounds %.3f ms (%s).\n",
			v, verdict(v <= 0.5), result["pairedAuthP95ms"], verdict(result["pairedAuthP95ms"] <= 0.5))
	}
	if v, ok := result["boundP95ms"]; ok {
		fmt.Fprintf(&b, "- for scale, the proxy bound (bytes copied between connections, no HTTP, no Go scheduler) adds at p95: pooled %.3f ms, median of the paired rounds %.3f ms (no target).\n",
			v, result["boundPairedP95ms"])
	}
	if v, ok := result["throughputPct"]; ok {
		fmt.Fprintf(&b, "- throughput with 64 clients through the activator: %.0f%% of the direct path's (target >= 90%%: %s); through the proxy bound %.0f%%.\n",
			v, verdict(v >= 90), result["boundThroughputPct"])
	}
	if v, ok := result["eventsAcceptedPerSec"]; ok {
		fmt.Fprintf(&b, "- Event invocations kept in NATS: %.0f accepted per second (each stored before its 202) next to %.0f synchronous invocations per second through the same activator (no target).\n", v, result["syncPerSec"])
	}
	if v, ok := result["heldKiB"]; ok {
		fmt.Fprintf(&b, "- memory per held request (Go heap + stacks, %d held): %.1f KiB (target < 10 KiB: %s).\n", held, v, verdict(v < 10))
	}
	if v, ok := result["readyMaxMs"]; ok {
		fmt.Fprintf(&b, "- endpoint ready -> first held request forwarded, worst of 20 rounds inside the activator: %.3f ms (target < 5 ms: %s; the control round trip above is an upper bound that adds a loopback HTTP call).\n", v, verdict(v < 5))
	}
	b.WriteString(docCauses)
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	section := b.String()
	if i := strings.Index(doc, "\n## Activator\n"); i >= 0 || strings.HasPrefix(doc, "## Activator\n") {
		start := i + 1
		if i < 0 {
			start = 0
		}
		end := len(doc)
		if j := strings.Index(doc[start+1:], "\n## "); j >= 0 {
			end = start + 1 + j + 1
		}
		doc = doc[:start] + section + "\n" + doc[end:]
	} else {
		if doc == "" {
			doc = "# Benchmarks\n"
		}
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(strings.TrimRight(doc, "\n")+"\n"), 0o644)
}

const docCauses = `
Where the numbers come from, and the causes of any gap:

- Added latency. The activator adds one more HTTP/1.1 hop on loopback (read
  the request, write it to the pod, read the answer, write it back) and one
  more process that must be scheduled; its CPU cost per request is printed
  above. The proxy writes and reads the pod's connection from the request's
  own goroutine (no net/http Transport hand-offs), pools keep-alive
  connections and copy buffers. On an idle 2-CPU machine the added p50 is a
  few hundred microseconds; the p95/p99 gap grows with the machine's load,
  because every extra process wake-up waits for a CPU that the load
  generator, the sidecar, the bootstrap and other work also want. The
  paired median (each round's p95 difference, median over the rounds)
  discounts bursts of other work that land in one path's phase only. The
  proxy bound's rows say what any hop adds here: copying the bytes
  between two connections on one thread, with no HTTP and no Go
  scheduler, adds 0.15 to 0.25 ms at p95 on this machine; the activator
  adds 0.15 to 0.3 ms more. On this kind of machine (a VM on a shared
  host) both move between runs minutes apart: on 30 November eleven runs
  within two hours gave paired medians of 0.32 to 0.48 ms in eight of them
  (the target met) and 0.51 to 0.65 ms in three, when the direct path's
  own tail rose with other work; the run that first set the target
  (0.48 ms pooled) was, as its note said, on an unloaded machine. The
  activator's CPU per request is 190-260 µs with GOMAXPROCS=1, as the
  chart runs it (260-330 µs with a thread per core: more cross-CPU
  wake-ups). For scale, in the same setting a raw HTTP/1.1 loop forwarding
  with activator/proxy costs 165 µs per request and net/http's server
  forwarding the same way 206 µs: the floor of a loopback proxy that
  reads HTTP is most of it. A perf profile puts about a third in the kernel's
  loopback socket calls (one write to the pod and one to the client per
  request, each about 20 µs, which include the receiver's TCP processing),
  about a fifth in Go's scheduler and its monitor thread (wake-ups between
  the netpoller, the request's goroutine and net/http's per-request
  background read; with one P, the monitor takes the P of a goroutine
  whose socket write outlasts its 20 µs tick and wakes another thread),
  and under a tenth in allocation and GC (about 70 heap
  allocations per request). At 1,000 requests/s on 2 CPUs shared with the
  load generator, the sidecar and its bootstraps, that extra fifth to quarter
  of a core is what stretches the tail. Cutting it much further means serving
  the hot path without net/http's server (as activator/proxy already does
  for the pod side).
- Throughput with 64 clients. All paths are bound by the 2 CPUs, which
  run the clients, the sidecar and its bootstraps (about 800 µs of CPU
  per invocation together), so a proxy costs throughput in proportion
  to its own CPU per request: the proxy bound, at the CPU per request
  printed above, keeps 93 to 99% of the direct path's; the activator's
  75 to 85% is its 190-260 µs. The 90% target needs under about 100 µs,
  which a proxy that reads HTTP with net/http's server does not reach
  on this machine (its floor above is 206 µs).
- Memory per held request. A held request is parked (activator/park): its
  handler hijacks the connection and returns, so net/http's 4 KiB read and
  4 KiB write buffers, its 2 KiB response buffer and both goroutines of the
  connection (about 26 KiB in all, measured before parking) are gone; what
  stays is the connection itself, the request's head to hand back to
  net/http when a slot comes, the payload, the queue entry and a timer.
  One epoll set watches every parked connection for a client that goes
  away. The queue bound (-max-queue per function) and the held-bytes
  budget cap the total.
- Authorisation. A caller with a bearer token costs a TokenReview and a
  SubjectAccessReview the first time; then both decisions come from the
  activator's caches (10 s by default), which is what every request of a
  steady caller costs: a hash of the token and two cache lookups. The
  bench's reviewers answer in-process (the API server's cost is paid once
  per token and TTL, outside the hot path).
- Ready to forwarded. The pool hands the freed or new slots to the oldest
  waiters inside the endpoint update itself (no polling), so the first held
  request leaves within microseconds; in a cluster add the EndpointSlice
  watch latency (API server to informer), typically a few milliseconds.
`

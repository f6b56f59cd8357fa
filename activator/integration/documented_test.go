package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/autoscaler"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/streamtest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// Answers that docs/activator.md (and the sidecar's README) promise to a
// caller or an operator, each through the real activator, real sidecars
// and real aws-lambda-go bootstraps.
func TestDocumentedAnswers(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ctx := context.Background()
	a := startActivator(t, e, server.Config{
		Handler:    handler.Options{ActivationTimeout: 30 * time.Second, TimeoutGrace: time.Second},
		DrainDelay: 10 * time.Millisecond,
	})
	base := "http://" + a.Addr()

	// docs/activator.md, error answers: "connection to the pod lost
	// mid-invocation". The payload reached a bootstrap, so the Invoke API
	// gets no 5xx (the SDKs would retry and run the function again).
	t.Run("ThePodsConnectionLostMidInvocation", func(t *testing.T) {
		ns := namespace(t, e.Client, "lost")
		for _, fn := range []string{"invoke", "route", "stream"} {
			makeFunction(t, e.Client, ns, fn, fnOpts{timeout: 30 * time.Second, replicas: 1, public: true})
		}
		// lose runs call against fn on a pod of its own and kills the
		// pod's sidecar while the invocation runs.
		lose := func(fn string, call func()) {
			t.Helper()
			p := startPod(t, fn, 1, 30*time.Second, "pod-"+fn)
			publish(t, e.Client, ns, fn, ready(p.IP))
			eventually(t, 10*time.Second, "the pod in rotation", func() bool { return a.Pools().Get(keyOf(ns, fn)).Ready() == 1 })
			go call()
			eventually(t, 10*time.Second, "the invocation runs in the pod", func() bool { return running(p.IP) })
			_ = p.cmd.Process.Kill()
			<-p.exited
		}

		type result struct {
			out *lambda.InvokeOutput
			err error
		}
		invoked := make(chan result, 1)
		lose("invoke", func() {
			out, err := sdkClient(base).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + ".invoke"), Payload: []byte(`{"sleepMs":10000}`)})
			invoked <- result{out, err}
		})
		var r result
		select {
		case r = <-invoked:
		case <-time.After(15 * time.Second):
			t.Fatal("the Invoke call was not answered after its pod died")
		}
		if r.err != nil {
			t.Fatalf("Invoke: %v, want the function error Runtime.Unknown", r.err)
		}
		rid, _ := awsmiddleware.GetRequestIDMetadata(r.out.ResultMetadata)
		var doc struct{ ErrorType, ErrorMessage string }
		_ = json.Unmarshal(r.out.Payload, &doc)
		if r.out.StatusCode != 200 || aws.ToString(r.out.FunctionError) != "Unhandled" || doc.ErrorType != "Runtime.Unknown" || rid == "" ||
			!strings.HasPrefix(doc.ErrorMessage, "RequestId: "+rid+" Error: lost the connection to the function's pod") {
			t.Errorf("Invoke API: %d X-Amz-Function-Error %q request id %q payload %s, want 200 Unhandled with Runtime.Unknown naming the request",
				r.out.StatusCode, aws.ToString(r.out.FunctionError), rid, r.out.Payload)
		}

		routed := make(chan answer, 1)
		lose("route", func() { routed <- get(base + "/" + ns + "/route/slow?sleepMs=10000") })
		var got answer
		select {
		case got = <-routed:
		case <-time.After(15 * time.Second):
			t.Fatal("the HTTP request was not answered after its pod died")
		}
		if got.err != nil || got.code != 502 || got.header.Get("Apigw-Requestid") == "" || got.header.Get("Content-Type") != "application/json" ||
			got.body != `{"message":"Bad Gateway: lost the connection to the function's pod during the invocation"}` {
			t.Errorf("HTTP route: %d %v %q %v, want the documented 502", got.code, got.header, got.body, got.err)
		}

		// InvokeWithResponseStream, lost after its first chunk: the caller
		// has that chunk, then an InvokeComplete with Runtime.Unknown.
		p := startPod(t, "stream", 1, 30*time.Second, "pod-stream")
		publish(t, e.Client, ns, "stream", ready(p.IP))
		eventually(t, 10*time.Second, "the pod in rotation", func() bool { return a.Pools().Get(keyOf(ns, "stream")).Ready() == 1 })
		first, streamed := make(chan struct{}), make(chan streamtest.Streamed, 1)
		go func() {
			st, err := streamtest.Invoke(ctx, t, sdkClient(base), &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(ns + ".stream"),
				Payload: []byte(`{"streamGate":"` + filepath.Join(t.TempDir(), "never") + `"}`)}, func(i int, _ []byte) {
				if i == 0 {
					close(first)
				}
			})
			if err != nil {
				t.Errorf("InvokeWithResponseStream: %v", err)
			}
			streamed <- st
		}()
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Fatal("no first chunk")
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
		select {
		case st := <-streamed:
			if st.Complete != nil {
				if st.Payload() != "first pod-stream\n" {
					t.Errorf("stream before the loss: %q", st.Payload())
				}
				streamtest.WantComplete(t, st, "Runtime.Unknown", "lost the connection to the function's pod")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the stream was not ended after its pod died")
		}
	})

	// docs/activator.md, routing: "any other method or path under
	// /2015-03-31/functions/ is 404 UnknownOperationException"; nothing runs.
	t.Run("UnknownOperationsUnderTheInvokeAPI", func(t *testing.T) {
		ns := namespace(t, e.Client, "unknownop")
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 1, public: true})
		p := startPod(t, "fn", 1, 5*time.Second, "pod-unknownop")
		publish(t, e.Client, ns, "fn", ready(p.IP))
		eventually(t, 10*time.Second, "the pod in rotation", func() bool { return a.Pools().Get(keyOf(ns, "fn")).Ready() == 1 })
		cl := sdkClient(base)

		_, err := cl.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(ns + ".fn")})
		wantUnknownOperation(t, "GetFunction", err, "Unknown operation GET /2015-03-31/functions/unknownop.fn:")
		_, err = cl.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(ns + ".fn")})
		wantUnknownOperation(t, "DeleteFunction", err, "Unknown operation DELETE /2015-03-31/functions/unknownop.fn:")

		// The invocation path with another method than POST.
		got := get(base + "/2015-03-31/functions/" + ns + ".fn/invocations")
		var doc struct{ Type, Message string }
		_ = json.Unmarshal([]byte(got.body), &doc)
		if got.code != 404 || got.header.Get("X-Amzn-ErrorType") != "UnknownOperationException" || got.header.Get("X-Amzn-RequestId") == "" ||
			doc.Type != "User" || doc.Message != "Unknown operation GET /2015-03-31/functions/unknownop.fn/invocations: lambdapod serves only Invoke (POST /2015-03-31/functions/{FunctionName}/invocations) and InvokeWithResponseStream (POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations)" {
			t.Errorf("GET on the invocations path: %d %v %s", got.code, got.header, got.body)
		}
		if n := invocations(t, p.IP); n != 0 {
			t.Errorf("the function ran %d times for unknown operations", n)
		}
		if got := post(base+"/2015-03-31/functions/"+ns+".fn/invocations", `{}`); got.code != 200 || invocations(t, p.IP) != 1 {
			t.Errorf("the Invoke call beside them: %d %q, ran %d times", got.code, got.body, invocations(t, p.IP))
		}
	})

	// docs/activator.md: an Event's payload may be up to 1 MB, as on
	// Lambda since 2025 (256 KB was the deprecated InvokeAsync's limit).
	t.Run("EventPayloadsUpTo1MB", func(t *testing.T) {
		ns := namespace(t, e.Client, "eventsize")
		makeFunction(t, e.Client, ns, "fn", fnOpts{replicas: 1, public: true})
		p := startPod(t, "fn", 1, 5*time.Second, "pod-eventsize")
		publish(t, e.Client, ns, "fn", ready(p.IP))
		eventually(t, 10*time.Second, "the pod in rotation", func() bool { return a.Pools().Get(keyOf(ns, "fn")).Ready() == 1 })
		cl := sdkClient(base)
		event := func(size int) (*lambda.InvokeOutput, error) {
			return cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + ".fn"), InvocationType: lambdatypes.InvocationTypeEvent,
				Payload: []byte(`"` + strings.Repeat("e", size-2) + `"`)})
		}
		if out, err := event(600_000); err != nil || out.StatusCode != 202 {
			t.Fatalf("a 600 KB Event: %v, want 202", err)
		}
		eventually(t, 10*time.Second, "the 600 KB Event runs", func() bool { return invocations(t, p.IP) == 1 })
		var tooLarge *lambdatypes.RequestTooLargeException
		if _, err := event(1_100_000); !errors.As(err, &tooLarge) ||
			!strings.Contains(err.Error(), "1100000 byte payload is too large for the Event invocation type (limit 1048576 bytes)") {
			t.Errorf("a 1.1 MB Event: %v, want RequestTooLargeException naming the 1048576-byte limit", err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := invocations(t, p.IP); n != 1 {
			t.Errorf("the function ran %d times, want once (the refused Event never runs)", n)
		}
	})

	// docs/activator.md, error answers: "no route | 404
	// UnknownOperationException (other operations under /2015-03-31/)".
	// The SDK sends these without a trailing slash.
	t.Run("OtherOperationsUnderTheAPIVersion", func(t *testing.T) {
		cl := sdkClient(base)
		_, err := cl.ListFunctions(ctx, &lambda.ListFunctionsInput{})
		wantUnknownOperation(t, "ListFunctions", err, "Unknown operation GET /2015-03-31/functions:")
		_, err = cl.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
		wantUnknownOperation(t, "ListEventSourceMappings", err, "Unknown operation GET /2015-03-31/event-source-mappings:")
	})

	// runtime-sidecar/README.md: "Invocations arriving while draining: 503
	// ServiceException + Retry-After: 1 (never dispatched, so a retry is
	// safe)", marked not-run for the activator, whose callers never see
	// it (docs/activator.md: the pod leaves the ready set at once and the
	// request waits for another pod, as at zero).
	t.Run("ADrainingPodAnswers503WithRetryAfter", func(t *testing.T) {
		ns := namespace(t, e.Client, "draining")
		makeFunction(t, e.Client, ns, "fn", fnOpts{conc: 2, timeout: 30 * time.Second, replicas: 1, public: true})
		d := startPod(t, "fn", 2, 30*time.Second, "pod-draining")
		publish(t, e.Client, ns, "fn", ready(d.IP))
		pool := a.Pools().Get(keyOf(ns, "fn"))
		eventually(t, 10*time.Second, "the pod in rotation", func() bool { return pool.Ready() == 1 })
		podURL := "http://" + d.IP + ":8080/2015-03-31/functions/fn/invocations"
		// A long invocation keeps the pod draining, not gone.
		long := make(chan answer, 1)
		go func() { long <- post(podURL, `{"sleepMs":4000}`) }()
		eventually(t, 10*time.Second, "the long invocation runs", func() bool { return running(d.IP) })
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		eventually(t, 5*time.Second, "the sidecar drains", func() bool { return get("http://"+d.IP+":8080/readyz").code == 503 })

		got := post(podURL, `{"direct":true}`)
		var doc struct{ Type, Message string }
		_ = json.Unmarshal([]byte(got.body), &doc)
		if got.code != 503 || got.header.Get("Retry-After") != "1" || got.header.Get("X-Amzn-ErrorType") != "ServiceException" ||
			got.header.Get(contract.HeaderNotRun) != contract.NotRunShuttingDown || doc.Type != "Service" ||
			doc.Message != "The function instance is shutting down; retry." {
			t.Errorf("an invocation arriving while the pod drains: %d %v %s, want 503 ServiceException with Retry-After: 1", got.code, got.header, got.body)
		}

		through := make(chan answer, 1)
		go func() { through <- post(base+"/2015-03-31/functions/"+ns+".fn/invocations", `{"through":"activator"}`) }()
		eventually(t, 10*time.Second, "the activator takes the draining pod out and holds the request", func() bool {
			_, queued, _ := pool.Counts()
			return pool.Ready() == 0 && queued == 1
		})
		select {
		case got := <-through:
			t.Fatalf("answered while no pod serves: %d %v %q", got.code, got.header, got.body)
		default:
		}
		up := startPod(t, "fn", 2, 30*time.Second, "pod-up")
		publish(t, e.Client, ns, "fn", terminating(d.IP), ready(up.IP))
		select {
		case got := <-through:
			if got.code != 200 || !strings.Contains(got.body, `"pod":"pod-up"`) || !strings.Contains(got.body, `"through":"activator"`) {
				t.Errorf("through the activator: %d %v %q, want 200 from pod-up", got.code, got.header, got.body)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the held request was not served by the new pod")
		}
		if got := <-long; got.code != 200 || !strings.Contains(got.body, `"pod":"pod-draining"`) {
			t.Errorf("the invocation the draining pod had: %d %q, want it finished", got.code, got.body)
		}
	})

	// docs/activator.md, Event: "an activator that stops waits for its
	// background invocations (up to -shutdown-timeout)", held ones
	// included.
	t.Run("AStoppingActivatorRunsTheEventInvocationsItAccepted", func(t *testing.T) {
		ns := namespace(t, e.Client, "async")
		makeFunction(t, e.Client, ns, "fn", fnOpts{public: true})
		publish(t, e.Client, ns, "fn") // at zero
		b, stop := startActivatorCtl(t, e, server.Config{
			Handler:         handler.Options{ActivationTimeout: time.Minute, TimeoutGrace: time.Second},
			DrainDelay:      100 * time.Millisecond,
			ShutdownTimeout: time.Minute,
		})
		cl := sdkClient("http://" + b.Addr())
		for i := 0; i < 2; i++ {
			out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + ".fn"),
				InvocationType: lambdatypes.InvocationTypeEvent, Payload: []byte(`{"sleepMs":300}`)})
			if err != nil {
				t.Fatalf("Event invocation %d: %v", i, err)
			}
			if rid, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); out.StatusCode != 202 || rid == "" {
				t.Fatalf("Event invocation %d: %d, request id %q, want 202 with one", i, out.StatusCode, rid)
			}
		}
		pool := b.Pools().Get(keyOf(ns, "fn"))
		eventually(t, 5*time.Second, "both Event invocations held", func() bool { _, q, _ := pool.Counts(); return q == 2 })

		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		eventually(t, 10*time.Second, "the activator's listener closes", func() bool {
			c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
		p := startPod(t, "fn", 1, 5*time.Second, "pod-async")
		select {
		case err := <-stopped:
			t.Fatalf("the activator stopped (%v) with 2 accepted Event invocations not run", err)
		default:
		}
		publish(t, e.Client, ns, "fn", ready(p.IP))
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the activator did not stop after its Event invocations could run")
		}
		// The bootstrap ran both to their end, each sleeping as its event
		// asked.
		eventually(t, 5*time.Second, "the pod counts both invocations", func() bool {
			return p.metric(t, `lambdapod_sidecar_invocations_total{outcome="success"}`) == "2"
		})
		podMetrics := scrape(t, "http://"+p.IP+":8080/metrics")
		if short, ok := podMetrics.value("lambdapod_sidecar_invocation_duration_seconds_bucket", map[string]string{"outcome": "success", "le": "0.25"}); !ok || short != 0 {
			t.Errorf("%v invocations ended within 250ms (present %v): the bootstrap did not run the events' 300ms", short, ok)
		}
	})

	// docs/activator.md, metrics: requests_total counts a caller that went
	// away under code 499, and every metric carries the labels the table
	// names; autoscaler_reports_total counts reports by result.
	t.Run("MetricsAfterCallersWentAway", func(t *testing.T) {
		ns := namespace(t, e.Client, "metrics")
		makeFunction(t, e.Client, ns, "fn", fnOpts{public: true})
		publish(t, e.Client, ns, "fn") // at zero
		m := startActivator(t, e, server.Config{
			AutoscalerURL:  startAutoscaler(t, e),
			ReportInterval: 100 * time.Millisecond,
			Handler:        handler.Options{ActivationTimeout: time.Minute, TimeoutGrace: time.Second},
			DrainDelay:     10 * time.Millisecond,
		})
		mbase, metricsURL := "http://"+m.Addr()+"/"+ns+"/fn", "http://"+m.AdminAddr()+"/metrics"
		fn := map[string]string{"namespace": ns, "function": "fn"}
		code := func(c string) map[string]string {
			return map[string]string{"namespace": ns, "function": "fn", "code": c}
		}
		pool := m.Pools().Get(keyOf(ns, "fn"))

		// hangUp sends a request and hangs up once cond holds.
		hangUp := func(path string, cond func() bool) {
			t.Helper()
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, mbase+path, nil)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					err = errors.New("answered " + resp.Status)
				}
				done <- err
			}()
			eventually(t, 10*time.Second, "the request "+path+" held or running", cond)
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: %v, want the caller to hang up first", path, err)
			}
		}

		// Held at zero (parked), then the caller goes.
		hangUp("/held", func() bool {
			_, q, _ := pool.Counts()
			v, _ := scrape(t, metricsURL).value("lambdapod_activator_parked_requests", nil)
			return q == 1 && v == 1
		})
		eventually(t, 5*time.Second, `requests_total{code="499"} 1 after a held caller went away`, func() bool {
			v, _ := scrape(t, metricsURL).value("lambdapod_activator_requests_total", code("499"))
			_, q, _ := pool.Counts()
			return v == 1 && q == 0
		})
		// The held request poked the autoscaler, which scaled from zero.
		eventually(t, 10*time.Second, "the autoscaler scales the function up", func() bool { return replicas(t, e.Client, ns, "fn") >= 1 })

		// A cold start, served by a pod that joins by the activator's own
		// probe (probe_ready_pods_total).
		served := make(chan answer, 1)
		go func() { served <- get(mbase + "/served") }()
		eventually(t, 10*time.Second, "the request held", func() bool { _, q, _ := pool.Counts(); return q == 1 })
		p := startPod(t, "fn", 1, 30*time.Second, "pod-metrics")
		publish(t, e.Client, ns, "fn", starting(p.IP))
		if got := <-served; got.code != 200 || got.body != "GET /served " {
			t.Fatalf("the request held until the pod was ready: %d %q", got.code, got.body)
		}
		if n := invocations(t, p.IP); n != 1 {
			t.Errorf("the function ran %d times, want 1: the request whose caller went away while held must not run", n)
		}

		// Running, then the caller goes.
		hangUp("/slow?sleepMs=5000", func() bool { return running(p.IP) })
		eventually(t, 5*time.Second, `requests_total{code="499"} 2 after a running caller went away`, func() bool {
			v, _ := scrape(t, metricsURL).value("lambdapod_activator_requests_total", code("499"))
			return v == 2
		})

		ex := scrape(t, metricsURL)
		for _, c := range []struct {
			series map[string]string
			name   string
			want   float64
		}{
			{code("200"), "lambdapod_activator_requests_total", 1},
			{code("499"), "lambdapod_activator_requests_total", 2},
			{fn, "lambdapod_activator_request_duration_seconds_count", 3},
			{fn, "lambdapod_activator_cold_starts_total", 1},
			{fn, "lambdapod_activator_hold_seconds_count", 1},
			{fn, "lambdapod_activator_probe_ready_pods_total", 1},
			{fn, "lambdapod_activator_ready_pods", 1},
			{fn, "lambdapod_activator_queued_requests", 0},
		} {
			if v, ok := ex.value(c.name, c.series); !ok || v != c.want {
				t.Errorf("%s%v = %v (present %v), want %v", c.name, c.series, v, ok, c.want)
			}
		}
		// The labels of the docs' table, on every series.
		for name, labels := range map[string]string{
			"lambdapod_activator_requests_total":                 "code,function,namespace",
			"lambdapod_activator_request_duration_seconds_count": "function,namespace",
			"lambdapod_activator_inflight_requests":              "function,namespace",
			"lambdapod_activator_queued_requests":                "function,namespace",
			"lambdapod_activator_ready_pods":                     "function,namespace",
			"lambdapod_activator_cold_starts_total":              "function,namespace",
			"lambdapod_activator_hold_seconds_count":             "function,namespace",
			"lambdapod_activator_autoscaler_reports_total":       "result",
			"lambdapod_activator_probe_ready_pods_total":         "function,namespace",
			"lambdapod_activator_parked_requests":                "",
		} {
			got := ex.labelSets(name)
			if len(got) == 0 {
				t.Errorf("no %s in the exposition", name)
			}
			for _, g := range got {
				if g != labels {
					t.Errorf("%s has labels %q, want %q", name, g, labels)
				}
			}
		}

		// Reports the autoscaler took.
		if v, ok := ex.value("lambdapod_activator_autoscaler_reports_total", map[string]string{"result": "ok"}); !ok || v < 1 {
			t.Errorf(`autoscaler_reports_total{result="ok"} = %v (present %v) with the autoscaler taking reports`, v, ok)
		}
		// Reports refused: a manager that is not the leader answers 503.
		notLeader := httptest.NewServer(autoscaler.New(e.Client, autoscaler.Options{}).Handler())
		t.Cleanup(notLeader.Close)
		f := startActivator(t, e, server.Config{AutoscalerURL: notLeader.URL + stats.Path, ReportInterval: 100 * time.Millisecond, DrainDelay: 10 * time.Millisecond})
		eventually(t, 10*time.Second, `autoscaler_reports_total{result="error"} counts refused reports`, func() bool {
			v, _ := scrape(t, "http://"+f.AdminAddr()+"/metrics").value("lambdapod_activator_autoscaler_reports_total", map[string]string{"result": "error"})
			return v >= 2
		})
		if v, ok := scrape(t, "http://"+f.AdminAddr()+"/metrics").value("lambdapod_activator_autoscaler_reports_total", map[string]string{"result": "ok"}); ok && v != 0 {
			t.Errorf(`autoscaler_reports_total{result="ok"} = %v though every report was refused`, v)
		}
	})
}

func sdkClient(base string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(base), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	})
}

// wantUnknownOperation checks an SDK call's error: 404
// UnknownOperationException whose message begins with msg.
func wantUnknownOperation(t *testing.T, call string, err error, msg string) {
	t.Helper()
	var ae smithy.APIError
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &ae) || !errors.As(err, &re) || ae.ErrorCode() != "UnknownOperationException" || re.HTTPStatusCode() != 404 ||
		!strings.HasPrefix(ae.ErrorMessage(), msg) {
		t.Errorf("%s: %v, want 404 UnknownOperationException %q...", call, err, msg)
	}
}

// exposition is a Prometheus text exposition, parsed.
type exposition []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func scrape(t *testing.T, url string) exposition {
	t.Helper()
	got := get(url)
	if got.err != nil || got.code != 200 {
		t.Fatalf("GET %s: %d %v", url, got.code, got.err)
	}
	var ex exposition
	for _, line := range strings.Split(got.body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(rest, "{ "); i >= 0 && rest[i] == '{' {
			s.name, rest = rest[:i], rest[i+1:]
			for !strings.HasPrefix(rest, "}") {
				k, v, ok := strings.Cut(rest, `="`)
				if !ok {
					t.Fatalf("bad exposition line %q", line)
				}
				val, n := unquoteLabel(v)
				s.labels[k] = val
				rest = strings.TrimPrefix(v[n:], ",")
			}
			rest = rest[1:]
		} else {
			s.name, rest, _ = strings.Cut(rest, " ")
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		s.value = v
		ex = append(ex, s)
	}
	return ex
}

// unquoteLabel reads a label value up to its closing quote and returns it
// with the bytes consumed (the quote included).
func unquoteLabel(s string) (string, int) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i < len(s) {
				if s[i] == 'n' {
					b.WriteByte('\n')
				} else {
					b.WriteByte(s[i])
				}
			}
		case '"':
			return b.String(), i + 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), len(s)
}

// value is the series of name with exactly these labels.
func (ex exposition) value(name string, labels map[string]string) (float64, bool) {
	for _, s := range ex {
		if s.name != name || len(s.labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// labelSets lists, for each series of name, its label names sorted and
// joined with commas.
func (ex exposition) labelSets(name string) []string {
	var out []string
	for _, s := range ex {
		if s.name != name {
			continue
		}
		var keys []string
		for k := range s.labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out = append(out, strings.Join(keys, ","))
	}
	return out
}

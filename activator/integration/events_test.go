package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/server"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/natstest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// postEvent sends an Event (asynchronous) invocation.
func postEvent(url, body string) answer {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "Event")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	return answer{code: resp.StatusCode, header: resp.Header}
}

// runs counts the invocations of request id in a pod's log (the
// integration bootstrap prints "invoked <id> <event>" for each).
func runs(p *pod, id string) int {
	return strings.Count(p.logs.String(), "invoked "+id+" ")
}

// Event invocations kept in NATS JetStream: every one answered 202 runs,
// with the request id its caller got; a function that always fails runs
// three times per event; while no NATS server answers, callers get 503,
// not 202, and synchronous invocations go on; events accepted before the
// server restarted run after it.
func TestDurableEvents(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ns := namespace(t, e.Client, "events")
	makeFunction(t, e.Client, ns, "ev", fnOpts{conc: 2, timeout: 5 * time.Second, replicas: 1, public: true})
	makeFunction(t, e.Client, ns, "evfail", fnOpts{conc: 1, timeout: 5 * time.Second, replicas: 1, public: true,
		async: &lambdapodv1alpha1.AsyncSpec{Destinations: &lambdapodv1alpha1.Destinations{
			OnFailure: &lambdapodv1alpha1.Destination{Function: "ev"}}}})
	dir := t.TempDir()
	nats := natstest.Start(t, dir, 0)
	natsPort := nats.Addr().(*net.TCPAddr).Port
	p := startPod(t, "ev", 2, 5*time.Second, "p-ev")
	publish(t, e.Client, ns, "ev", ready(p.IP))
	pf := startPod(t, "evfail", 1, 5*time.Second, "p-evfail")
	publish(t, e.Client, ns, "evfail", ready(pf.IP))

	a := startActivator(t, e, server.Config{Events: eventqueue.Config{
		URL: nats.ClientURL(), RetryDelay: 300 * time.Millisecond, AckWait: 3 * time.Second, PublishTimeout: time.Second,
	}})
	base := "http://" + a.Addr() + "/2015-03-31/functions/" + ns + "."
	eventually(t, 20*time.Second, "the activator accepts Events (connected to NATS, the function known)", func() bool {
		return postEvent(base+"ev/invocations", `{"warmup":true}`).code == 202
	})

	t.Run("EveryAcceptedEventRunsWithItsRequestID", func(t *testing.T) {
		ids := make([]string, 30)
		for i := range ids {
			got := postEvent(base+"ev/invocations", fmt.Sprintf(`{"n":%d}`, i))
			if got.err != nil || got.code != 202 || got.header.Get("X-Amzn-RequestId") == "" {
				t.Fatalf("event %d: %d %v (request id %q), want 202 with a request id", i, got.code, got.err, got.header.Get("X-Amzn-RequestId"))
			}
			ids[i] = got.header.Get("X-Amzn-RequestId")
		}
		eventually(t, 20*time.Second, "every accepted event ran", func() bool {
			for _, id := range ids {
				if runs(p, id) == 0 {
					return false
				}
			}
			return true
		})
		logs := p.logs.String()
		for i, id := range ids {
			if want := fmt.Sprintf(`invoked %s {"n":%d}`, id, i); !strings.Contains(logs, want) {
				t.Errorf("the pod's log has no %q: the function did not get the request id its caller got, or the payload", want)
			}
		}
	})

	t.Run("AFunctionThatAlwaysFailsRunsThreeTimes", func(t *testing.T) {
		got := postEvent(base+"evfail/invocations", `{"fail":true}`)
		if got.code != 202 {
			t.Fatalf("HTTP %d, want 202", got.code)
		}
		id := got.header.Get("X-Amzn-RequestId")
		eventually(t, 20*time.Second, "three runs of the failing event", func() bool { return runs(pf, id) >= 3 })
		time.Sleep(2 * time.Second) // a fourth would come within 1.2 s (the third retry's delay)
		if n := runs(pf, id); n != 3 {
			t.Errorf("the failing event ran %d times, want 3 (the first run and Lambda's two retries)", n)
		}
		// Its on-failure destination, the function ev, got Lambda's
		// invocation record as an Event.
		var record map[string]any
		eventually(t, 20*time.Second, "the on-failure destination got the record", func() bool {
			for _, line := range strings.Split(p.logs.String(), "\n") {
				i := strings.Index(line, `{"version":"1.0"`)
				if i < 0 || !strings.Contains(line, id) {
					continue
				}
				if err := json.Unmarshal([]byte(line[i:]), &record); err == nil {
					return true
				}
			}
			return false
		})
		rc, _ := record["requestContext"].(map[string]any)
		resp, _ := record["responseContext"].(map[string]any)
		if rc["requestId"] != id || rc["condition"] != "RetriesExhausted" || rc["approximateInvokeCount"] != 3.0 ||
			rc["functionArn"] != "arn:aws:lambda:us-east-1:000000000000:function:"+ns+".evfail:$LATEST" {
			t.Errorf("requestContext %v, want request %s, RetriesExhausted, 3 invocations, the ARN of %s.evfail", rc, id, ns)
		}
		if fmt.Sprint(record["requestPayload"]) != "map[fail:true]" || resp["statusCode"] != 200.0 || resp["functionError"] != "Unhandled" {
			t.Errorf("record %v: want the original payload, status 200, functionError Unhandled", record)
		}
		if record["responsePayload"] == nil {
			t.Errorf("record %v has no responsePayload (the function's error)", record)
		}
	})

	t.Run("NoQueueNo202", func(t *testing.T) {
		nats.Shutdown()
		nats.WaitForShutdown()
		got := postEvent(base+"ev/invocations", `{"n":"while down"}`)
		if got.code != http.StatusServiceUnavailable || got.header.Get("X-Amzn-ErrorType") != "ServiceException" {
			t.Errorf("an Event while NATS is down: HTTP %d %s, want 503 ServiceException (not accepted)", got.code, got.header.Get("X-Amzn-ErrorType"))
		}
		if got := post(base+"ev/invocations", `{"sync":true}`); got.code != 200 {
			t.Errorf("a synchronous invocation while NATS is down: HTTP %d %s, want 200", got.code, got.body)
		}
		// The same server back, with its store: what it had is kept, and
		// Events are accepted again.
		natstest.Start(t, dir, natsPort)
		var id string
		eventually(t, 30*time.Second, "Events accepted again once NATS is back", func() bool {
			got := postEvent(base+"ev/invocations", `{"n":"after"}`)
			id = got.header.Get("X-Amzn-RequestId")
			return got.code == 202
		})
		eventually(t, 20*time.Second, "the event accepted after the restart ran", func() bool { return runs(p, id) == 1 })
	})
}

// An activator killed (SIGKILL) while the events it accepted wait for a
// function at zero loses none: another activator runs every one of them
// once the function has a pod.
func TestEventsOfAKilledActivatorRun(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	ns := namespace(t, e.Client, "evkill")
	makeFunction(t, e.Client, ns, "zero", fnOpts{conc: 4, timeout: 5 * time.Second, public: true})
	nats := natstest.Start(t, t.TempDir(), 0)
	args := []string{"-event-queue", nats.ClientURL(), "-event-ack-wait", "2s", "-invoke-tokens=false", "-activation-timeout", "60s"}
	first := startActivatorProc(t, e, "act-first", args...)
	url := first.url + "/2015-03-31/functions/" + ns + ".zero/invocations"
	eventually(t, 20*time.Second, "the first activator accepts Events", func() bool {
		return postEvent(url, `{"warmup":true}`).code == 202
	})
	ids := make([]string, 50)
	for i := range ids {
		got := postEvent(url, fmt.Sprintf(`{"n":%d}`, i))
		if got.code != 202 {
			t.Fatalf("event %d: HTTP %d %v, want 202", i, got.code, got.err)
		}
		ids[i] = got.header.Get("X-Amzn-RequestId")
	}
	// They wait in the first activator for a pod that does not exist yet.
	time.Sleep(500 * time.Millisecond)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited

	startActivatorProc(t, e, "act-second", args...)
	p := startPod(t, "zero", 4, 5*time.Second, "p-zero")
	publish(t, e.Client, ns, "zero", ready(p.IP))
	eventually(t, 60*time.Second, "every event the killed activator accepted ran", func() bool {
		for _, id := range ids {
			if runs(p, id) == 0 {
				return false
			}
		}
		return true
	})
	for i, id := range ids {
		if n := runs(p, id); n != 1 {
			t.Errorf("event %d (%s) ran %d times, want once", i, id, n)
		}
	}
}

package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/streamtest"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// InvokeWithResponseStream through the AWS SDK, a real activator and real
// sidecars running aws-lambda-go bootstraps: a function's chunks reach the
// caller while it still runs, from a warm pod and from a function at zero
// (held, the autoscaler poked, then streamed); failures mid-stream, a
// timeout, a buffered response and an unknown function are answered as
// Lambda answers them.
func TestInvokeWithResponseStream(t *testing.T) {
	needRoot(t)
	e := testenv.Start(t)
	statsURL := startAutoscaler(t, e)
	a := startActivator(t, e, server.Config{
		AutoscalerURL: statsURL,
		Handler:       handler.Options{ActivationTimeout: 60 * time.Second, TimeoutGrace: time.Second},
		DrainDelay:    10 * time.Millisecond,
	})
	cl := sdkClient("http://" + a.Addr())
	ns := namespace(t, e.Client, "streams")
	invoke := func(fn, payload string, onChunk func(int, []byte)) (streamtest.Streamed, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return streamtest.Invoke(ctx, t, cl, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(ns + "." + fn), Payload: []byte(payload)}, onChunk)
	}
	// gated streams a function whose second chunk waits for the first to
	// reach the caller.
	gated := func(fn, pod string) {
		t.Helper()
		gate := filepath.Join(t.TempDir(), "gate")
		st, err := invoke(fn, `{"streamGate":"`+gate+`"}`, func(i int, p []byte) {
			if i == 0 {
				if string(p) != "first "+pod+"\n" {
					t.Errorf("first chunk %q", p)
				}
				if err := os.WriteFile(gate, nil, 0o644); err != nil {
					t.Error(err)
				}
			}
		})
		if err != nil {
			t.Error(err) // not Fatal: FromZero runs this on another goroutine
			return
		}
		if st.Payload() != "first "+pod+"\nsecond\n" || len(st.Chunks) < 2 {
			t.Errorf("payload %q in %d chunks", st.Payload(), len(st.Chunks))
		}
		streamtest.WantHead(t, st)
		streamtest.WantComplete(t, st, "", "")
	}

	t.Run("Warm", func(t *testing.T) {
		makeFunction(t, e.Client, ns, "warm", fnOpts{replicas: 1})
		p := startPod(t, "warm", 1, 2*time.Second, "pod-warm")
		publish(t, e.Client, ns, "warm", ready(p.IP))
		eventually(t, 10*time.Second, "the pod in rotation", func() bool { return a.Pools().Get(keyOf(ns, "warm")).Ready() == 1 })

		gated("warm", "pod-warm")

		st, err := invoke("warm", `{"streamFail":true}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Payload() != "partial" {
			t.Errorf("payload before the failure %q", st.Payload())
		}
		streamtest.WantComplete(t, st, "errorString", "stream broke")

		// A buffered response: all of it, then InvokeComplete.
		st, err = invoke("warm", `{"hello":"world"}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Payload() != `{"event":{"hello":"world"},"inflight":1,"pod":"pod-warm"}` {
			t.Errorf("buffered payload %q", st.Payload())
		}
		streamtest.WantComplete(t, st, "", "")

		// A buffered response of 3 MB arrives whole, in events the
		// activator takes (at most 256 KiB of payload each).
		big := `{"big":"` + strings.Repeat("b", 3<<20) + `"}`
		st, err = invoke("warm", big, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.Payload(), big) || len(st.Chunks) < 12 {
			t.Errorf("a 3 MB buffered response: %d bytes in %d chunks", len(st.Payload()), len(st.Chunks))
		}
		streamtest.WantComplete(t, st, "", "")

		st, err = invoke("warm", `{"fail":true}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		streamtest.WantComplete(t, st, "errorString", "requested failure")

		st, err = invoke("warm", `{"sleepMs":4000}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		streamtest.WantComplete(t, st, "Sandbox.Timedout", "Task timed out after 2.00 seconds")

		_, err = invoke("missing", `{}`, nil)
		var nf *lambdatypes.ResourceNotFoundException
		if !errors.As(err, &nf) || !strings.Contains(nf.ErrorMessage(), "Function not found: arn:aws:lambda:us-east-1:000000000000:function:streams.missing") {
			t.Errorf("unknown function: %v", err)
		}
	})

	t.Run("FromZero", func(t *testing.T) {
		makeFunction(t, e.Client, ns, "cold", fnOpts{replicas: 0, maxReplicas: 3})
		publish(t, e.Client, ns, "cold") // the Service exists, no endpoint yet
		done := make(chan struct{})
		go func() {
			defer close(done)
			gated("cold", "pod-cold")
		}()
		eventually(t, 5*time.Second, "the autoscaler starts a pod for the held stream", func() bool {
			return replicas(t, e.Client, ns, "cold") == 1
		})
		select {
		case <-done:
			t.Fatal("answered before any pod was ready")
		case <-time.After(300 * time.Millisecond):
		}
		p := startPod(t, "cold", 1, 5*time.Second, "pod-cold")
		publish(t, e.Client, ns, "cold", ready(p.IP))
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the held stream was not answered")
		}
		m := get("http://" + a.AdminAddr() + "/metrics")
		for _, want := range []string{
			`lambdapod_activator_cold_starts_total{function="cold",namespace="streams"} 1`,
			`lambdapod_activator_requests_total{code="200",function="cold",namespace="streams"} 1`,
		} {
			if !strings.Contains(m.body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

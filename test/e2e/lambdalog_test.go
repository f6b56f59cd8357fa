//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/streamtest"
)

// sdkClient is the AWS SDK for Go v2's Lambda client of the activator's
// Invoke API (functions with authType None: any credentials).
func sdkClient() *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(activator),
		Credentials:  credentials.NewStaticCredentialsProvider("e2e", "e2e", ""),
	})
}

// TestPlatformLogLinesAndTail: on the cluster, a function's container log
// reads like its CloudWatch log stream on Lambda (START, END, REPORT per
// invocation, in that order), and Invoke with LogType Tail through the
// activator returns that invocation's tail in LogResult.
func TestPlatformLogLinesAndTail(t *testing.T) {
	t.Parallel()
	fn := newFunction(t, "platform-log", nil)
	cl := sdkClient()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	event := `{"version":"2.0","rawPath":"/log","requestContext":{"http":{"method":"GET","path":"/log"}}}`
	var ids []string
	for i := range 3 {
		out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + "." + fn.Name), Payload: []byte(event),
			LogType: types.LogTypeTail})
		if err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		ids = append(ids, id)
		tail, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		if err != nil || out.LogResult == nil {
			t.Fatalf("Invoke %d: LogResult %q (%v), want base64 of the log tail", i, aws.ToString(out.LogResult), err)
		}
		t.Logf("Invoke %d (%s) tail:\n%s", i, id, tail)
		for _, want := range []string{"START RequestId: " + id + " Version: $LATEST", "END RequestId: " + id, "REPORT RequestId: " + id + "\tDuration: "} {
			if !strings.Contains(string(tail), want) {
				t.Errorf("Invoke %d: the tail has no %q", i, want)
			}
		}
		if i == 0 && !strings.Contains(string(tail), "Init Duration: ") {
			t.Errorf("the first invocation's REPORT has no Init Duration")
		}
		if i > 0 && strings.Contains(string(tail), "Init Duration: ") {
			t.Errorf("invocation %d's REPORT has an Init Duration: only the first after init has", i)
		}
	}

	// The function container's log (kubectl logs -c <container>).
	var pods corev1.PodList
	if err := k.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{contract.LabelFunction: fn.Name}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("the function's pods: %d, %v", len(pods.Items), err)
	}
	var logs strings.Builder
	for _, p := range pods.Items {
		out, errOut, err := kubectl(t, "", "-n", ns, "logs", p.Name, "-c", p.Spec.Containers[0].Name)
		if err != nil {
			t.Fatalf("kubectl logs %s: %v: %s", p.Name, err, errOut)
		}
		logs.WriteString(out)
	}
	log := logs.String()
	for _, id := range ids {
		start, end, report := strings.Index(log, "START RequestId: "+id), strings.Index(log, "END RequestId: "+id), strings.Index(log, "REPORT RequestId: "+id)
		if start < 0 || end < start || report < end {
			t.Errorf("request %s: START at %d, END at %d, REPORT at %d in the container log, want all three in that order:\n%s", id, start, end, report, log)
		}
	}
	for _, field := range []string{"\tBilled Duration: ", "\tMemory Size: 128 MB\t", "\tMax Memory Used: "} {
		if !strings.Contains(log, field) {
			t.Errorf("no REPORT line has %q", field)
		}
	}
}

// TestInvokeWithResponseStreamThroughTheActivator: the AWS SDK's
// InvokeWithResponseStream on a function that streams (the bash runtime's
// stream.sh: a line every 1.5 s with the Runtime API's streaming mode),
// from zero through the activator: the lines arrive as PayloadChunks as
// they are written, then an InvokeComplete without error.
func TestInvokeWithResponseStreamThroughTheActivator(t *testing.T) {
	t.Parallel()
	fn := newFunction(t, "sdk-stream", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = bashImage(t)
		fn.Spec.Runtime.Handler = "stream.handler"
		fn.Spec.Runtime.Env = []corev1.EnvVar{{Name: "STREAM_EVERY", Value: "1.5"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var at []time.Duration
	st, err := streamtest.Invoke(ctx, t, sdkClient(), &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String(ns + "." + fn.Name), Payload: []byte(`{}`),
	}, func(i int, p []byte) {
		at = append(at, time.Since(start))
		t.Logf("+%s chunk %d: %q", at[len(at)-1].Round(time.Millisecond), i, p)
	})
	if err != nil {
		t.Fatalf("InvokeWithResponseStream: %v", err)
	}
	if c := st.Complete; c.ErrorCode != nil || c.ErrorDetails != nil {
		t.Errorf("InvokeComplete %q %q, want no error", aws.ToString(c.ErrorCode), aws.ToString(c.ErrorDetails))
	}
	if p := st.Payload(); !strings.HasSuffix(p, "line 1 of 3\nline 2 of 3\nline 3 of 3\n") {
		t.Errorf("payload %q, want the three lines at the end", p)
	}
	if len(at) < 2 {
		t.Fatalf("%d chunks, want the lines as they came", len(at))
	}
	// Buffered anywhere on the way, every chunk would come at the end.
	if gap := at[len(at)-1] - at[0]; gap < 2*time.Second {
		t.Errorf("the first and last chunks arrived %s apart, want about 3 s: the stream was buffered", gap.Round(time.Millisecond))
	}
}

package conformance

import (
	"encoding/base64"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Lambda's platform lines in the function's log, around what the function
// printed, and X-Amz-Log-Type: Tail, with the AWS SDK's Invoke: standalone
// (the sidecar's own output) and in pod mode (the supervisor's, which is
// what kubectl logs shows of the function container).
func TestPlatformLogLines(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		s := startSidecar(t, sidecarOpts{
			flags:     []string{"--timeout", "1s", "--memory", "128"},
			bootstrap: []string{bin.bootstrap},
		})
		platformLogLines(t, s, "function", 128, s.logs.String)
	})
	t.Run("pod mode", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "control.sock")
		s := startSidecar(t, sidecarOpts{
			env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "LAMBDAPOD_TIMEOUT=1s", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256"},
			noWait: true,
		})
		sup := startSupervisor(t, socket, "--", bin.bootstrap)
		s.waitReady()
		platformLogLines(t, s, "fn-pod", 256, sup.out.String)
	})
}

func platformLogLines(t *testing.T, s *sidecar, fn string, memory int, log func() string) {
	c := s.client()
	invoke := func(payload string, tail bool) (id string, out *lambda.InvokeOutput) {
		t.Helper()
		out = sdkInvoke(t, c, payload, func(in *lambda.InvokeInput) {
			in.FunctionName = aws.String(fn)
			if tail {
				in.LogType = types.LogTypeTail
			}
		})
		id, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		return id, out
	}
	mem := strconv.Itoa(memory)
	reReport := func(id, rest string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^REPORT RequestId: ` + regexp.QuoteMeta(id) + `\tDuration: (\d+\.\d\d) ms\tBilled Duration: (\d+) ms\t` +
			`Memory Size: ` + mem + ` MB\tMax Memory Used: (\d+) MB\t` + rest + `$`)
	}
	// The lines of one invocation, in this order, in the log.
	inOrder := func(what, text string, lines ...string) {
		t.Helper()
		at := 0
		for _, l := range lines {
			i := strings.Index(text[at:], l)
			if i < 0 {
				t.Errorf("%s: %q missing or out of order in:\n%s", what, l, text)
				return
			}
			at += i + len(l)
		}
	}
	num := func(s string) float64 {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	// The first invocation of the bootstrap: Init Duration; with Tail, the
	// log comes back.
	line := "hello from the handler " + strconv.Itoa(os.Getpid())
	id1, out := invoke(`{"action":"log","line":"`+line+`","stderr":"and to stderr"}`, true)
	if out.LogResult == nil {
		t.Fatal("no LogResult with LogType Tail")
	}
	tail, err := base64.StdEncoding.DecodeString(*out.LogResult)
	if err != nil {
		t.Fatalf("LogResult %q: %v", *out.LogResult, err)
	}
	start1, end1 := "START RequestId: "+id1+" Version: $LATEST\n", "END RequestId: "+id1+"\n"
	inOrder("tail", string(tail), start1, line+"\n", end1, "REPORT RequestId: "+id1+"\t")
	if !strings.HasPrefix(string(tail), start1) || !strings.Contains(string(tail), "and to stderr\n") {
		t.Errorf("tail:\n%s", tail)
	}
	m := reReport(id1, `Init Duration: (\d+\.\d\d) ms\t`).FindStringSubmatch(string(tail))
	if m == nil {
		t.Fatalf("no REPORT with an Init Duration in the tail:\n%q", tail)
	}
	dur, billed, used, init := num(m[1]), num(m[2]), num(m[3]), num(m[4])
	if dur <= 0 || dur > 5000 || init <= 0 || init > 10000 || math.Abs(billed-math.Ceil(dur+init)) > 1 {
		t.Errorf("implausible REPORT %q", m[0])
	}
	if used <= 0 || used > 1<<20 {
		t.Errorf("Max Memory Used %v MB", used)
	}
	// The process log has the same lines, in the same order.
	waitFor(t, 5*time.Second, "the REPORT in the log", func() bool { return strings.Contains(log(), "REPORT RequestId: "+id1) })
	inOrder("log", log(), start1, line+"\n", end1, m[0])

	// The next one: no Init Duration; without Tail, no LogResult.
	id2, out := invoke(`{"action":"log","line":"second line"}`, false)
	if out.LogResult != nil {
		t.Errorf("LogResult %q without LogType Tail", *out.LogResult)
	}
	waitFor(t, 5*time.Second, "the REPORT in the log", func() bool { return strings.Contains(log(), "REPORT RequestId: "+id2) })
	re2 := reReport(id2, ``)
	inOrder("log", log(), "START RequestId: "+id2+" Version: $LATEST\n", "second line\n", "END RequestId: "+id2+"\n")
	if m := re2.FindStringSubmatch(log()); m == nil {
		t.Errorf("no REPORT for %s without an Init Duration:\n%s", id2, log())
	} else if billed, dur := num(m[2]), num(m[1]); math.Abs(billed-math.Ceil(dur)) > 1 {
		t.Errorf("billed %v for %v ms", billed, dur)
	}

	// A timeout: Duration is the function timeout, Status: timeout.
	id3, out := invoke(`{"action":"sleep","sleepMs":3000}`, true)
	assertBody(t, out.Payload, `{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: `+id3+` Error: Task timed out after 1.00 seconds"}`)
	tail, _ = base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	want := regexp.MustCompile(`^START RequestId: ` + id3 + ` Version: \$LATEST\nEND RequestId: ` + id3 + `\n` +
		`REPORT RequestId: ` + id3 + `\tDuration: 1000.00 ms\tBilled Duration: 1000 ms\tMemory Size: ` + mem + ` MB\tMax Memory Used: \d+ MB\tStatus: timeout\n$`)
	if !want.Match(tail) {
		t.Errorf("timeout's tail:\n%q", tail)
	}

	// The bootstrap restarted after the timeout: its first invocation has
	// an Init Duration again.
	id4, out := invoke(`{"action":"log","line":"after the reset"}`, true)
	tail, _ = base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if !reReport(id4, `Init Duration: \d+\.\d\d ms\t`).Match(tail) {
		t.Errorf("first invocation after a reset:\n%q", tail)
	}

	// Lambda ignores the log type of an Event.
	resp, _ := s.post("/2015-03-31/functions/"+fn+"/invocations", `{"action":"echo"}`,
		map[string]string{"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail"})
	if resp.StatusCode != 202 {
		t.Errorf("Event: %d", resp.StatusCode)
	}
	assertNoHeader(t, resp.Header, "X-Amz-Log-Result")
}

// The tail is the last 4 KB of the invocation's log.
func TestLogTailIsTheLast4KB(t *testing.T) {
	s := startSidecar(t, sidecarOpts{bootstrap: []string{bin.bootstrap}})
	long := strings.Repeat("0123456789", 1000)
	out := sdkInvoke(t, s.client(), `{"action":"log","line":"`+long+`"}`, func(in *lambda.InvokeInput) { in.LogType = types.LogTypeTail })
	tail, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if err != nil || len(tail) != 4096 {
		t.Fatalf("tail of %d bytes (%v)", len(tail), err)
	}
	end := strings.Index(string(tail), "\nEND RequestId: ")
	if end < 0 || !strings.HasSuffix(long, string(tail[:end])) ||
		!regexp.MustCompile(`^\nEND RequestId: \S+\nREPORT RequestId: [^\n]+\n$`).Match(tail[end:]) {
		t.Errorf("tail:\n%q", tail)
	}
}

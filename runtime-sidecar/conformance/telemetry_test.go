package conformance

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// platformRecord is a platform.* line of a JSON log.
type platformRecord struct {
	Time   string         `json:"time"`
	Type   string         `json:"type"`
	Record map[string]any `json:"record"`
}

// platformRecords returns the platform records of requestID in log, and
// whether the log has any text START line.
func platformRecords(t *testing.T, log, requestID string) []platformRecord {
	t.Helper()
	var out []platformRecord
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, `{"time":`) {
			continue
		}
		var r platformRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("not JSON: %q", line)
			continue
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", r.Time); err != nil {
			t.Errorf("time %q", r.Time)
		}
		if r.Record["requestId"] == requestID {
			out = append(out, r)
		}
	}
	return out
}

func recordTypes(rs []platformRecord) string {
	var ts []string
	for _, r := range rs {
		ts = append(ts, r.Type)
	}
	return strings.Join(ts, " ")
}

// AWS_LAMBDA_LOG_FORMAT=JSON: the function's log (the sidecar's stdout
// standalone, the supervisor's in pod mode) and its tail have Lambda's
// platform.start and platform.report records instead of START, END and
// REPORT, filtered by the system log level; the bootstrap's own lines pass
// as they are, and it finds the format and its log level in its
// environment.
func TestJSONLogFormat(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		s := startSidecar(t, sidecarOpts{
			flags:     []string{"--memory", "128", "--application-log-level", "debug"},
			env:       []string{"AWS_LAMBDA_LOG_FORMAT=JSON"},
			bootstrap: []string{bin.bootstrap},
		})
		jsonLogFormat(t, s, "function", "INFO", s.logs.String)
		out := sdkInvoke(t, s.client(), `{"action":"inspect"}`)
		var got struct{ Env map[string]string }
		_ = json.Unmarshal(out.Payload, &got)
		if got.Env["AWS_LAMBDA_LOG_FORMAT"] != "JSON" || got.Env["AWS_LAMBDA_LOG_LEVEL"] != "DEBUG" {
			t.Errorf("the bootstrap's environment: %v", got.Env)
		}
	})
	t.Run("pod mode DEBUG", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "control.sock")
		s := startSidecar(t, sidecarOpts{
			env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128"},
			noWait: true,
		})
		sup := startSupervisorEnv(t, socket, []string{"AWS_LAMBDA_LOG_FORMAT=json", "LAMBDAPOD_SYSTEM_LOG_LEVEL=DEBUG"}, "--", bin.bootstrap)
		s.waitReady()
		jsonLogFormat(t, s, "fn-pod", "DEBUG", sup.out.String)
	})
	t.Run("WARN", func(t *testing.T) {
		s := startSidecar(t, sidecarOpts{
			flags:     []string{"--function-log-format", "JSON", "--system-log-level", "WARN"},
			bootstrap: []string{bin.bootstrap},
		})
		jsonLogFormat(t, s, "function", "WARN", s.logs.String)
	})
}

func jsonLogFormat(t *testing.T, s *sidecar, fn, level string, log func() string) {
	c := s.client()
	line := `{"level":"INFO","message":"from the handler"}`
	out := sdkInvoke(t, c, `{"action":"log","line":`+strconvQuote(line)+`}`, func(in *lambda.InvokeInput) {
		in.FunctionName = aws.String(fn)
		in.LogType = types.LogTypeTail
	})
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	tail, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if err != nil || !strings.Contains(string(tail), line+"\n") {
		t.Fatalf("tail (%v):\n%s", err, tail)
	}
	want := map[string]string{"INFO": "platform.start platform.report", "DEBUG": "platform.start platform.runtimeDone platform.report", "WARN": ""}[level]
	for what, text := range map[string]func() string{"tail": func() string { return string(tail) }, "log": log} {
		if level != "WARN" {
			waitFor(t, 5*time.Second, "platform.report in the "+what, func() bool { return strings.Contains(text(), `"type":"platform.report"`) })
		} else {
			waitFor(t, 5*time.Second, "the line in the "+what, func() bool { return strings.Contains(text(), line) })
		}
		rs := platformRecords(t, text(), id)
		if got := recordTypes(rs); got != want {
			t.Errorf("%s: records %q, want %q:\n%s", what, got, want, text())
		}
		if strings.Contains(text(), "START RequestId") || strings.Contains(text(), "REPORT RequestId") {
			t.Errorf("%s has text platform lines:\n%s", what, text())
		}
		for _, r := range rs {
			switch r.Type {
			case "platform.start":
				if r.Record["version"] != "$LATEST" {
					t.Errorf("%s: %v", what, r.Record)
				}
			case "platform.report":
				m, _ := r.Record["metrics"].(map[string]any)
				num := func(k string) float64 { f, _ := m[k].(float64); return f }
				if num("durationMs") <= 0 || num("billedDurationMs") < num("durationMs") || num("memorySizeMB") != 128 ||
					num("maxMemoryUsedMB") <= 0 || num("initDurationMs") <= 0 || r.Record["status"] != "success" {
					t.Errorf("%s: %v", what, r.Record)
				}
			}
		}
	}
	if level == "WARN" {
		return
	}
	// A function error: status error and its type.
	out = sdkInvoke(t, c, `{"action":"error"}`, func(in *lambda.InvokeInput) {
		in.FunctionName = aws.String(fn)
		in.LogType = types.LogTypeTail
	})
	id, _ = awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	tail, _ = base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	rs := platformRecords(t, string(tail), id)
	if len(rs) == 0 || rs[len(rs)-1].Type != "platform.report" || rs[len(rs)-1].Record["status"] != "error" ||
		rs[len(rs)-1].Record["errorType"] != "errorString" {
		t.Errorf("a function error's records:\n%s", tail)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var telExt struct {
	once sync.Once
	path string
	err  error
}

// telemetryExtension builds testdata/telemetry once.
func telemetryExtension(t *testing.T) string {
	t.Helper()
	telExt.once.Do(func() {
		telExt.path = filepath.Join(filepath.Dir(bin.sidecar), "telemetry-extension")
		cmd := exec.Command("go", "build", "-o", telExt.path, "./testdata/telemetry")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			telExt.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if telExt.err != nil {
		t.Fatal(telExt.err)
	}
	return telExt.path
}

// telemetryDir makes an extensions directory holding the telemetry
// extension as name, and the directory it records to.
func telemetryDir(t *testing.T, name string) (extDir, recordDir string) {
	t.Helper()
	b, err := os.ReadFile(telemetryExtension(t))
	if err != nil {
		t.Fatal(err)
	}
	extDir, recordDir = t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(extDir, name), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return extDir, recordDir
}

type telEvent struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

func (e telEvent) rec() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(e.Record, &m)
	return m
}

func (e telEvent) line() string {
	var s string
	_ = json.Unmarshal(e.Record, &s)
	return s
}

// received is what the extension name got so far.
func received(t *testing.T, recordDir, name string) []telEvent {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(recordDir, name+".events"))
	var out []telEvent
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var e telEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("event %q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

func extLog(recordDir, name string) string {
	b, _ := os.ReadFile(filepath.Join(recordDir, name+".log"))
	return string(b)
}

// invokeLogging invokes n times, each logging a line; it returns the
// request ids the caller got.
func invokeLogging(t *testing.T, s *sidecar, fn string, n int) (ids []string, lines []string) {
	t.Helper()
	c := s.client()
	for i := range n {
		line := "telemetry line " + strconv.Itoa(i) + " of " + strconv.Itoa(os.Getpid())
		out := sdkInvoke(t, c, `{"action":"log","line":"`+line+`"}`, func(in *lambda.InvokeInput) { in.FunctionName = aws.String(fn) })
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		ids = append(ids, id)
		lines = append(lines, line)
	}
	return ids, lines
}

// A real extension subscribed to platform and function events through the
// Telemetry API gets, for each invocation, platform.start,
// platform.runtimeDone and platform.report (metrics present, requestId the
// caller's X-Amzn-RequestId) and the function's log line; and the init's
// events before.
func TestTelemetryAPI(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		extDir, rec := telemetryDir(t, "tel-ext")
		s := startSidecar(t, sidecarOpts{
			flags:     []string{"--memory", "128", "--extensions-dir", extDir},
			env:       []string{"TEL_RECORD_DIR=" + rec, "TEL_TYPES=platform,function,extension"},
			bootstrap: []string{bin.bootstrap},
		})
		telemetryAPI(t, s, "function", rec, "tel-ext", s.logs.String)
	})
	t.Run("pod mode", func(t *testing.T) {
		extDir, rec := telemetryDir(t, "tel-ext")
		socket := filepath.Join(t.TempDir(), "control.sock")
		s := startSidecar(t, sidecarOpts{
			env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128"},
			noWait: true,
		})
		sup := startSupervisorEnv(t, socket, []string{"TEL_RECORD_DIR=" + rec, "LAMBDAPOD_EXTENSIONS_DIR=" + extDir, "TEL_TYPES=platform,function,extension"}, "--", bin.bootstrap)
		s.waitReady()
		telemetryAPI(t, s, "fn-pod", rec, "tel-ext", sup.out.String)
	})
}

func telemetryAPI(t *testing.T, s *sidecar, fn, rec, name string, log func() string) {
	if l := extLog(rec, name); !strings.Contains(l, `SUBSCRIBE 200 "OK"`) {
		t.Fatalf("subscription: %q", l)
	}
	const n = 5
	ids, lines := invokeLogging(t, s, fn, n)
	complete := func() bool {
		evs := received(t, rec, name)
		for _, id := range ids {
			found := 0
			for _, e := range evs {
				if e.rec()["requestId"] == id && (e.Type == "platform.start" || e.Type == "platform.runtimeDone" || e.Type == "platform.report") {
					found++
				}
			}
			if found != 3 {
				return false
			}
		}
		return true
	}
	waitFor(t, 10*time.Second, "every invocation's events", complete)
	evs := received(t, rec, name)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	all := strings.Join(types, " ")
	for _, want := range []string{"platform.initStart", "platform.initRuntimeDone", "platform.initReport", "platform.telemetrySubscription", "platform.extension"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s in %v", want, types)
		}
	}
	for i, id := range ids {
		// In order: start, the function's line, runtimeDone, report.
		seq := sequence(evs, id, lines[i], func(e telEvent) {
			if e.Type == "platform.report" {
				r := e.rec()
				m, _ := r["metrics"].(map[string]any)
				num := func(k string) float64 { f, _ := m[k].(float64); return f }
				if num("durationMs") <= 0 || num("billedDurationMs") < 1 || num("memorySizeMB") != 128 || num("maxMemoryUsedMB") <= 0 || r["status"] != "success" {
					t.Errorf("report %s", e.Record)
				}
				if _, ok := m["initDurationMs"]; ok != (i == 0) {
					t.Errorf("initDurationMs in report %d: %s", i, e.Record)
				}
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", e.Time); err != nil {
				t.Errorf("time %q", e.Time)
			}
		})
		if got := seq; got != "platform.start line platform.runtimeDone platform.report" {
			t.Errorf("invocation %d (%s): %s", i, id, got)
		}
	}
	// The extension's own output is in the function container's log, and
	// the extension stream.
	if !strings.Contains(log(), "telemetry extension got INVOKE "+ids[0]) {
		t.Errorf("the extension's output is not in the log")
	}
	waitFor(t, 5*time.Second, "the extension's line as an extension record", func() bool {
		for _, e := range received(t, rec, name) {
			if e.Type == "extension" && e.line() == "telemetry extension got INVOKE "+ids[n-1] {
				return true
			}
		}
		return false
	})
	// The extension gets SHUTDOWN after what was pending.
	s.stop()
	waitFor(t, 5*time.Second, "the extension's exit", func() bool { return strings.Contains(extLog(rec, name), "EXIT") })
}

// An extension subscribed through the older Logs API (schema 2021-03-18)
// gets its event types: platform.start, platform.runtimeDone, platform.end
// and platform.report without status, and the function's lines.
func TestLogsAPI(t *testing.T) {
	extDir, rec := telemetryDir(t, "logs-ext")
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", extDir},
		env:       []string{"TEL_RECORD_DIR=" + rec, "TEL_API=logs"},
		bootstrap: []string{bin.bootstrap},
	})
	if l := extLog(rec, "logs-ext"); !strings.Contains(l, `SUBSCRIBE 200 "OK"`) {
		t.Fatalf("subscription: %q", l)
	}
	ids, lines := invokeLogging(t, s, "function", 2)
	waitFor(t, 10*time.Second, "the reports", func() bool {
		n := 0
		for _, e := range received(t, rec, "logs-ext") {
			if e.Type == "platform.report" {
				n++
			}
		}
		return n == 2
	})
	evs := received(t, rec, "logs-ext")
	for i, id := range ids {
		seq := sequence(evs, id, lines[i], func(e telEvent) {
			if r := e.rec(); e.Type == "platform.report" && (r["status"] != nil || r["metrics"] == nil) {
				t.Errorf("Logs API report %s", e.Record)
			}
		})
		if got := seq; got != "platform.start line platform.runtimeDone platform.end platform.report" {
			t.Errorf("invocation %d: %s", i, got)
		}
	}
	for _, e := range evs {
		if strings.HasPrefix(e.Type, "platform.init") || e.Type == "platform.telemetrySubscription" {
			t.Errorf("a Logs API subscriber got %s", e.Type)
		}
	}
	if !slicesContainsType(evs, "platform.logsSubscription") {
		t.Errorf("no platform.logsSubscription")
	}
}

// sequence is what evs say of invocation id, whose function printed line,
// in order: "line" for the line, the record's type for each record of the
// invocation, which check gets too.
func sequence(evs []telEvent, id, line string, check func(telEvent)) string {
	var seq []string
	for _, e := range evs {
		switch {
		case e.Type == "function" && e.line() == line:
			seq = append(seq, "line")
		case e.rec()["requestId"] == id:
			seq = append(seq, e.Type)
			check(e)
		}
	}
	return strings.Join(seq, " ")
}

func slicesContainsType(evs []telEvent, typ string) bool {
	for _, e := range evs {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// A subscriber that never answers does not slow the invocations down: its
// events wait in its bounded buffer.
func TestStuckSubscriberDoesNotSlowInvocations(t *testing.T) {
	extDir, rec := telemetryDir(t, "stuck-ext")
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", extDir},
		env:       []string{"TEL_RECORD_DIR=" + rec, "TEL_STALL=1"},
		bootstrap: []string{bin.bootstrap},
	})
	if l := extLog(rec, "stuck-ext"); !strings.Contains(l, `SUBSCRIBE 200 "OK"`) {
		t.Fatalf("subscription: %q", l)
	}
	c := s.client()
	big := strings.Repeat("z", 8000)
	start := time.Now()
	var worst time.Duration
	for range 100 {
		t0 := time.Now()
		sdkInvoke(t, c, `{"action":"log","line":"`+big+`"}`)
		worst = max(worst, time.Since(t0))
	}
	total := time.Since(start)
	// The subscriber holds each POST for 3 s: 100 invocations would take
	// minutes if they waited for it.
	if total > 20*time.Second || worst > 2*time.Second {
		t.Errorf("100 invocations took %v (the slowest %v) with a stuck subscriber", total, worst)
	}
	if got := received(t, rec, "stuck-ext"); len(got) != 0 {
		t.Errorf("a stuck subscriber received %d events", len(got))
	}
}

// Bad subscriptions get Lambda's answers: 400 ValidationError for a bad
// body (as the extension sees it), 403 for a missing, malformed or
// unknown extension identifier.
func TestSubscriptionErrors(t *testing.T) {
	extDir, rec := telemetryDir(t, "bad-ext")
	s := startSidecar(t, sidecarOpts{
		flags: []string{"--extensions-dir", extDir},
		env: []string{"TEL_RECORD_DIR=" + rec,
			`TEL_BODY={"schemaVersion":"2022-12-13","types":[],"buffering":{"maxItems":5},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain/x"}}`},
		bootstrap: []string{bin.bootstrap},
	})
	l := extLog(rec, "bad-ext")
	if !strings.Contains(l, `SUBSCRIBE 400 {"errorType":"ValidationError","errorMessage":"types should not be empty; URI port is not provided; buffering.maxItems must be an integer from 1000 to 10000, got 5"}`) {
		t.Errorf("bad body: %q", l)
	}
	put := func(path, id, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.Runtime[0]+path, strings.NewReader(body))
		if id != "" {
			req.Header.Set("Lambda-Extension-Identifier", id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good := `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:9999"}}`
	for _, c := range []struct{ path, id, status, errType string }{
		{"/2022-07-01/telemetry", "", "403", "Extension.MissingExtensionIdentifier"},
		{"/2022-07-01/telemetry", "not-a-uuid", "403", "Extension.InvalidExtensionIdentifier"},
		{"/2022-07-01/telemetry", "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "403", "Extension.UnknownExtensionIdentifier"},
		{"/2020-08-15/logs", "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa", "403", "Extension.UnknownExtensionIdentifier"},
	} {
		status, body := put(c.path, c.id, good)
		if strconv.Itoa(status) != c.status || !strings.Contains(body, `"errorType":"`+c.errType+`"`) {
			t.Errorf("%s with %q: %d %s", c.path, c.id, status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Runtime[0]+"/2022-07-01/telemetry", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("GET: %v %v", resp, err)
	}
}

// Events still buffered when the sidecar stops (here a batch would wait
// 30 s) are delivered before the extensions get SHUTDOWN.
func TestPendingEventsBeforeShutdown(t *testing.T) {
	extDir, rec := telemetryDir(t, "flush-ext")
	s := startSidecar(t, sidecarOpts{
		flags: []string{"--extensions-dir", extDir},
		env: []string{"TEL_RECORD_DIR=" + rec,
			`TEL_BODY={"schemaVersion":"2022-12-13","types":["platform","function"],"buffering":{"timeoutMs":30000},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:PORT/events"}}`},
		bootstrap: []string{bin.bootstrap},
	})
	ids, lines := invokeLogging(t, s, "function", 1)
	time.Sleep(100 * time.Millisecond)
	if got := received(t, rec, "flush-ext"); len(got) != 0 {
		t.Fatalf("%d events delivered before their batch was due", len(got))
	}
	s.stop()
	waitFor(t, 5*time.Second, "the extension's exit", func() bool { return strings.Contains(extLog(rec, "flush-ext"), "EXIT") })
	var report, line bool
	for _, e := range received(t, rec, "flush-ext") {
		report = report || e.Type == "platform.report" && e.rec()["requestId"] == ids[0]
		line = line || e.Type == "function" && e.line() == lines[0]
	}
	l := extLog(rec, "flush-ext")
	if !report || !line || !strings.Contains(l, "BATCH") || strings.Index(l, "BATCH") > strings.Index(l, "EVENT SHUTDOWN") {
		t.Errorf("report %v, line %v; the extension's log:\n%s", report, line, l)
	}
}

// With the JSON log format, a function line that is a JSON object reaches
// subscribers as that object; another stays a string.
func TestTelemetryJSONFunctionRecords(t *testing.T) {
	extDir, rec := telemetryDir(t, "json-ext")
	s := startSidecar(t, sidecarOpts{
		flags:     []string{"--extensions-dir", extDir, "--function-log-format", "JSON"},
		env:       []string{"TEL_RECORD_DIR=" + rec},
		bootstrap: []string{bin.bootstrap},
	})
	line := `{"level":"INFO","message":"structured","n":1}`
	sdkInvoke(t, s.client(), `{"action":"log","line":`+strconvQuote(line)+`,"stderr":"plain text"}`)
	var obj map[string]any
	var text string
	waitFor(t, 5*time.Second, "both records", func() bool {
		for _, e := range received(t, rec, "json-ext") {
			if e.Type != "function" {
				continue
			}
			if strings.HasPrefix(string(e.Record), "{") {
				_ = json.Unmarshal(e.Record, &obj)
			} else {
				text = e.line()
			}
		}
		return obj != nil && text != ""
	})
	if obj["message"] != "structured" || obj["n"] != 1.0 || text != "plain text" {
		t.Errorf("records %v and %q", obj, text)
	}
}

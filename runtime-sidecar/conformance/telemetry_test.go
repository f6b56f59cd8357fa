package conformance

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
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

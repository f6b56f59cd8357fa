//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// platformRecord is one line of a JSON-format log that the platform wrote,
// in Lambda's shape: {"time":...,"type":"platform.start","record":{...}}.
type platformRecord struct {
	Time   string `json:"time"`
	Type   string `json:"type"`
	Record struct {
		RequestID string `json:"requestId"`
		Version   string `json:"version"`
		Status    string `json:"status"`
		Metrics   *struct {
			DurationMs       float64 `json:"durationMs"`
			BilledDurationMs int64   `json:"billedDurationMs"`
			MemorySizeMB     int     `json:"memorySizeMB"`
			MaxMemoryUsedMB  int     `json:"maxMemoryUsedMB"`
		} `json:"metrics"`
	} `json:"record"`
}

// TestJSONLogFormat: a Function with spec.runtime.logging.format JSON
// gives its bootstrap AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL
// (and nothing of lambdapod's own), and its container log has, in place
// of the START and REPORT lines, Lambda's JSON platform.start and
// platform.report records of each invocation, as LogType Tail returns
// them too; at systemLogLevel WARN those INFO records are left out. The
// function's JSON lines below the application log level are dropped, and
// a plain line counts as INFO, as Lambda filters them.
func TestJSONLogFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		logging  lambdapodv1alpha1.LoggingSpec
		appLevel string
		platform bool
		// kept are the levels of env.sh's JSON lines that must be in the
		// log; the others must not
		kept []string
	}{
		{"json-log", lambdapodv1alpha1.LoggingSpec{Format: lambdapodv1alpha1.LogFormatJSON, ApplicationLogLevel: "DEBUG"}, "DEBUG", true,
			[]string{"DEBUG", "INFO", "WARN", "ERROR"}},
		{"json-log-warn", lambdapodv1alpha1.LoggingSpec{Format: lambdapodv1alpha1.LogFormatJSON, SystemLogLevel: "WARN"}, "INFO", false,
			[]string{"INFO", "WARN", "ERROR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fn := newFunction(t, tc.name, func(fn *lambdapodv1alpha1.Function) {
				fn.Spec.Source.Image = bashExtImage(t)
				fn.Spec.Runtime.Handler = "env.handler"
				fn.Spec.Runtime.Logging = &tc.logging
				fn.Spec.Scale.MaxReplicas = 1
			})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var ids []string
			for i := range 2 {
				out, err := sdkClient().Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(ns + "." + fn.Name),
					Payload: []byte(`{}`), LogType: types.LogTypeTail})
				if err != nil {
					t.Fatalf("Invoke %d: %v", i, err)
				}
				id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
				ids = append(ids, id)
				var env map[string]*string
				if err := json.Unmarshal(out.Payload, &env); err != nil || out.FunctionError != nil {
					t.Fatalf("Invoke %d: %q (function error %q): %v", i, out.Payload, aws.ToString(out.FunctionError), err)
				}
				if f, l := aws.ToString(env[contract.EnvLogFormat]), aws.ToString(env[contract.EnvLogLevel]); f != "JSON" || l != tc.appLevel {
					t.Errorf("the bootstrap has %s=%q and %s=%q, want JSON and %s", contract.EnvLogFormat, f, contract.EnvLogLevel, l, tc.appLevel)
				}
				if v, set := env[contract.EnvSystemLogLevel]; !set || v != nil {
					t.Errorf("the bootstrap has %s=%q, want it unset: it is the supervisor's", contract.EnvSystemLogLevel, aws.ToString(v))
				}
				tail, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
				if err != nil {
					t.Fatalf("Invoke %d: LogResult %q: %v", i, aws.ToString(out.LogResult), err)
				}
				if hasStart := hasRecord(parseRecords(string(tail)), "platform.start", id); hasStart != tc.platform {
					t.Errorf("Invoke %d: the LogResult tail has a platform.start record of %s: %v, want %v:\n%s", i, id, hasStart, tc.platform, tail)
				}
			}

			pod := onlyPod(t, fn.Name)
			var log string
			var recs []platformRecord
			// The report is written once the bootstrap has asked for its
			// next event, which may be a moment after the answer.
			deadline := time.Now().Add(20 * time.Second)
			for {
				log = containerLog(t, pod, contract.FunctionContainer)
				recs = parseRecords(log)
				if !tc.platform || hasRecord(recs, "platform.report", ids[len(ids)-1]) || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			t.Logf("the function container's log:\n%s", log)
			for _, level := range []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR"} {
				want := 0
				if slices.Contains(tc.kept, level) {
					want = len(ids)
				}
				if got := strings.Count(log, `"message":"env.sh at `+level+`"`); got != want {
					t.Errorf("%d lines of the function at %s in the log, want %d (application log level %s)", got, level, want, tc.appLevel)
				}
			}
			if got := strings.Count(log, "env.sh plain line\n"); got != len(ids) {
				t.Errorf("%d plain lines of the function in the log, want %d: a line without a level is INFO", got, len(ids))
			}
			for _, text := range []string{"START RequestId: ", "END RequestId: ", "REPORT RequestId: "} {
				if strings.Contains(log, text) {
					t.Errorf("the log has a Text line %q...: with JSON the platform writes JSON records", text)
				}
			}
			if !tc.platform {
				for _, r := range recs {
					if r.Type == "platform.start" || r.Type == "platform.report" {
						t.Errorf("a %s record at systemLogLevel WARN: it is INFO", r.Type)
					}
				}
				return
			}
			for _, id := range ids {
				var start, report *platformRecord
				for i := range recs {
					switch r := &recs[i]; {
					case r.Record.RequestID != id:
					case r.Type == "platform.start":
						start = r
					case r.Type == "platform.report":
						report = r
					}
				}
				if start == nil || start.Record.Version != "$LATEST" {
					t.Errorf("request %s: platform.start %+v, want one with version $LATEST", id, start)
				}
				if report == nil || report.Record.Status != "success" || report.Record.Metrics == nil {
					t.Errorf("request %s: platform.report %+v, want one with status success and metrics", id, report)
					continue
				}
				if m := report.Record.Metrics; m.DurationMs <= 0 || m.BilledDurationMs < 1 || m.MemorySizeMB != 128 || m.MaxMemoryUsedMB < 1 {
					t.Errorf("request %s: platform.report metrics %+v, want a duration, a billed duration, 128 MB and the memory used", id, *m)
				}
				for _, r := range []*platformRecord{start, report} {
					if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
						t.Errorf("request %s: %s time %q: %v", id, r.Type, r.Time, err)
					}
				}
			}
		})
	}
}

// parseRecords returns the platform's JSON records in log, skipping lines
// that are not (the runtime's and the extension's).
func parseRecords(log string) []platformRecord {
	var recs []platformRecord
	for _, line := range strings.Split(log, "\n") {
		var r platformRecord
		if json.Unmarshal([]byte(line), &r) == nil && strings.HasPrefix(r.Type, "platform.") {
			recs = append(recs, r)
		}
	}
	return recs
}

func hasRecord(recs []platformRecord, typ, requestID string) bool {
	for _, r := range recs {
		if r.Type == typ && r.Record.RequestID == requestID {
			return true
		}
	}
	return false
}

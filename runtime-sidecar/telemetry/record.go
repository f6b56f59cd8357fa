// Package telemetry is Lambda's Telemetry API and Logs API on the
// subscriber side: the platform event records (the Telemetry API schema,
// the same objects Lambda writes to a function's log in JSON format), the
// validation of subscriptions, and their delivery: a bounded buffer per
// subscriber, batches POSTed as JSON arrays, oldest events dropped with a
// platform.logsDropped record when a subscriber falls behind.
package telemetry

import (
	"encoding/json"
	"math"
	"strings"
	"time"
)

// TimeFormat is the events' "time": RFC 3339 in UTC with milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Event types of the Telemetry API (and the Logs API, which shares some).
const (
	TypeInitStart             = "platform.initStart"
	TypeInitRuntimeDone       = "platform.initRuntimeDone"
	TypeInitReport            = "platform.initReport"
	TypeStart                 = "platform.start"
	TypeRuntimeDone           = "platform.runtimeDone"
	TypeReport                = "platform.report"
	TypeExtension             = "platform.extension"
	TypeTelemetrySubscription = "platform.telemetrySubscription"
	TypeLogsDropped           = "platform.logsDropped"
	TypeFunction              = "function"
	TypeExtensionLog          = "extension"

	// Logs API only.
	TypeEnd              = "platform.end"
	TypeFault            = "platform.fault"
	TypeLogsSubscription = "platform.logsSubscription"
)

// Categories a subscription names in "types".
const (
	CategoryPlatform  = "platform"
	CategoryFunction  = "function"
	CategoryExtension = "extension"
)

// Status of an init or an invocation (the schema's Status).
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusFailure = "failure"
	StatusTimeout = "timeout"
)

// InitStart is platform.initStart.
type InitStart struct {
	InitializationType string `json:"initializationType"`
	Phase              string `json:"phase"`
	RuntimeVersion     string `json:"runtimeVersion,omitempty"`
	RuntimeVersionArn  string `json:"runtimeVersionArn,omitempty"`
	FunctionName       string `json:"functionName,omitempty"`
	FunctionVersion    string `json:"functionVersion,omitempty"`
}

// InitRuntimeDone is platform.initRuntimeDone.
type InitRuntimeDone struct {
	InitializationType string `json:"initializationType"`
	Phase              string `json:"phase"`
	Status             string `json:"status"`
	ErrorType          string `json:"errorType,omitempty"`
}

// InitReportMetrics is the metrics of platform.initReport.
type InitReportMetrics struct {
	DurationMs float64 `json:"durationMs"`
}

// InitReport is platform.initReport.
type InitReport struct {
	InitializationType string            `json:"initializationType"`
	Phase              string            `json:"phase"`
	Status             string            `json:"status"`
	ErrorType          string            `json:"errorType,omitempty"`
	Metrics            InitReportMetrics `json:"metrics"`
}

// Start is platform.start.
type Start struct {
	RequestID string `json:"requestId"`
	Version   string `json:"version,omitempty"`
}

// RuntimeDoneMetrics is the metrics of platform.runtimeDone.
type RuntimeDoneMetrics struct {
	DurationMs    float64 `json:"durationMs"`
	ProducedBytes int64   `json:"producedBytes,omitempty"`
}

// RuntimeDone is platform.runtimeDone.
type RuntimeDone struct {
	RequestID string              `json:"requestId"`
	Status    string              `json:"status"`
	ErrorType string              `json:"errorType,omitempty"`
	Metrics   *RuntimeDoneMetrics `json:"metrics,omitempty"`
}

// ReportMetrics is the metrics of platform.report.
type ReportMetrics struct {
	DurationMs       float64 `json:"durationMs"`
	BilledDurationMs int64   `json:"billedDurationMs"`
	MemorySizeMB     int     `json:"memorySizeMB"`
	MaxMemoryUsedMB  int     `json:"maxMemoryUsedMB"`
	InitDurationMs   float64 `json:"initDurationMs,omitempty"`
}

// Report is platform.report.
type Report struct {
	RequestID string        `json:"requestId"`
	Metrics   ReportMetrics `json:"metrics"`
	Status    string        `json:"status"`
	ErrorType string        `json:"errorType,omitempty"`
}

// ExtensionState is platform.extension.
type ExtensionState struct {
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Events    []string `json:"events"`
	ErrorType string   `json:"errorType,omitempty"`
}

// Subscribed is platform.telemetrySubscription (and the Logs API's
// platform.logsSubscription).
type Subscribed struct {
	Name  string   `json:"name"`
	State string   `json:"state"`
	Types []string `json:"types"`
}

// LogsDropped is platform.logsDropped.
type LogsDropped struct {
	DroppedBytes   int64  `json:"droppedBytes"`
	DroppedRecords int64  `json:"droppedRecords"`
	Reason         string `json:"reason"`
}

// Event is one event as a subscriber gets it.
type Event struct {
	Time time.Time
	Type string
	// Record is one of the record types above, a string (a log line),
	// or json.RawMessage (a log line that is a JSON object, in JSON log
	// format).
	Record any
}

// envelope is the wire form of an Event.
type envelope struct {
	Time   string `json:"time"`
	Type   string `json:"type"`
	Record any    `json:"record"`
}

// Encode returns e as Lambda sends and logs it:
// {"time":"...","type":"...","record":...}.
func (e Event) Encode() []byte {
	b, err := json.Marshal(envelope{Time: e.Time.UTC().Format(TimeFormat), Type: e.Type, Record: e.Record})
	if err != nil {
		// Only a record type of ours can get here: a bug, not input.
		panic("telemetry: cannot encode " + e.Type + ": " + err.Error())
	}
	return b
}

// Millis is d in milliseconds rounded to two decimals, as REPORT prints
// them.
func Millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)/10) / 100
}

// Level is a system log level: Lambda writes a platform record to a
// function's JSON log when its level is at least the function's system
// log level.
type Level int

// System log levels; the zero Level is INFO, Lambda's default.
const (
	LevelDebug Level = iota - 1
	LevelInfo
	LevelWarn
)

// ParseLevel reads DEBUG, INFO or WARN (any case); "" is INFO, Lambda's
// default.
func ParseLevel(s string) (Level, bool) {
	switch strings.ToUpper(s) {
	case "", "INFO":
		return LevelInfo, true
	case "DEBUG":
		return LevelDebug, true
	case "WARN":
		return LevelWarn, true
	}
	return LevelInfo, false
}

// LevelOf is the system log level of a platform event type: the
// lifecycle milestones are INFO, the runtime's own "done" events DEBUG,
// lost records WARN.
func LevelOf(typ string) Level {
	switch typ {
	case TypeInitRuntimeDone, TypeRuntimeDone:
		return LevelDebug
	case TypeLogsDropped, TypeFault:
		return LevelWarn
	}
	return LevelInfo
}

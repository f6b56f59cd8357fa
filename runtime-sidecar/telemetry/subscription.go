package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// API is the API a subscription came through: they differ in defaults,
// schema versions, error types and some event types.
type API int

const (
	// TelemetryAPI is PUT /2022-07-01/telemetry.
	TelemetryAPI API = iota
	// LogsAPI is PUT /2020-08-15/logs, the older one.
	LogsAPI
)

func (a API) String() string {
	if a == LogsAPI {
		return "Logs"
	}
	return "Telemetry"
}

// Buffering is a subscription's batching: a batch goes out when it holds
// MaxItems events or MaxBytes bytes, or its oldest event is Timeout old.
type Buffering struct {
	MaxItems int
	MaxBytes int
	Timeout  time.Duration
}

// Bounds of the buffering fields, and their defaults, as Lambda documents
// them (the Logs API defaults to 10,000 items, the Telemetry API to 1,000).
const (
	MinItems     = 1000
	MaxItems     = 10000
	MinBytes     = 262144
	MaxBytes     = 1048576
	MinTimeoutMs = 25
	MaxTimeoutMs = 30000

	defaultTimeoutMs = 1000
)

// Subscription is a validated subscription request.
type Subscription struct {
	API           API
	SchemaVersion string
	Types         []string // platform, function, extension (each once)
	Protocol      string   // HTTP or TCP
	// Addr is where events go, always on this host's loopback: the
	// sandbox's name (sandbox.localdomain) means the pod itself.
	Addr string // host:port
	Path string // HTTP: the path and query of the URI
	Buffering
}

// Wants reports whether the subscription takes events of category.
func (s *Subscription) Wants(category string) bool { return slices.Contains(s.Types, category) }

// Schema versions each API accepts.
var (
	telemetrySchemas = []string{"2022-07-01", "2022-12-13", "2025-01-29"}
	logsSchemas      = []string{"2020-08-15", "2021-03-18"}
)

// SandboxHost is the name subscribers give their listener by: Lambda's
// name for the execution environment (a pod, here).
const SandboxHost = "sandbox.localdomain"

// localHosts are the destination hosts taken for the sandbox itself.
var localHosts = []string{SandboxHost, "sandbox", "localhost", "127.0.0.1"}

// Error is a refused subscription: the status and the body Lambda answers
// with.
type Error struct {
	Status  int
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Body is the JSON error document.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}{e.Type, e.Message})
	return b
}

// ValidationErrorType is the errorType of a bad subscription body.
func (a API) ValidationErrorType() string {
	if a == LogsAPI {
		return "Logs.ValidationError"
	}
	return "ValidationError"
}

// request is the body of a subscription, loosely typed so that each
// problem gets its own message.
type request struct {
	SchemaVersion *string         `json:"schemaVersion"`
	Types         []string        `json:"types"`
	Destination   *destination    `json:"destination"`
	Buffering     json.RawMessage `json:"buffering"`
}

type destination struct {
	Protocol string          `json:"protocol"`
	URI      string          `json:"URI"`
	Port     json.RawMessage `json:"port"`
}

type bufferingBody struct {
	MaxItems  *json.Number `json:"maxItems"`
	MaxBytes  *json.Number `json:"maxBytes"`
	TimeoutMs *json.Number `json:"timeoutMs"`
}

// ParseSubscription validates a subscription body of api. Every problem
// found is in the one 400 it returns, as Lambda lists them ("URI port is
// not provided; types should not be empty").
func ParseSubscription(api API, body []byte) (*Subscription, *Error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return nil, &Error{400, api.ValidationErrorType(), "Invalid JSON: " + err.Error()}
	}
	sub := &Subscription{API: api}

	switch {
	case req.SchemaVersion == nil && api == LogsAPI:
		sub.SchemaVersion = logsSchemas[0]
	case req.SchemaVersion == nil:
		bad("schemaVersion is required")
	case api == LogsAPI && !slices.Contains(logsSchemas, *req.SchemaVersion),
		api == TelemetryAPI && !slices.Contains(telemetrySchemas, *req.SchemaVersion):
		valid := telemetrySchemas
		if api == LogsAPI {
			valid = logsSchemas
		}
		bad("schemaVersion %q is not supported (valid: %s)", *req.SchemaVersion, strings.Join(valid, ", "))
	default:
		sub.SchemaVersion = *req.SchemaVersion
	}

	if len(req.Types) == 0 {
		bad("types should not be empty")
	}
	for _, t := range req.Types {
		switch t {
		case CategoryPlatform, CategoryFunction, CategoryExtension:
			if !slices.Contains(sub.Types, t) {
				sub.Types = append(sub.Types, t)
			}
		default:
			bad("type %q is not valid (valid: platform, function, extension)", t)
		}
	}

	if req.Destination == nil {
		bad("destination is required")
	} else {
		parseDestination(sub, req.Destination, bad)
	}

	sub.Buffering = Buffering{MaxItems: 1000, MaxBytes: MinBytes, Timeout: defaultTimeoutMs * time.Millisecond}
	if api == LogsAPI {
		sub.MaxItems = MaxItems
	}
	if len(req.Buffering) > 0 && string(req.Buffering) != "null" {
		var b bufferingBody
		d := json.NewDecoder(bytes.NewReader(req.Buffering))
		d.UseNumber()
		if err := d.Decode(&b); err != nil {
			bad("buffering must be an object with maxItems, maxBytes and timeoutMs")
		} else {
			bound := func(name string, n *json.Number, lo, hi int, set func(int)) {
				if n == nil {
					return
				}
				v, err := strconv.Atoi(n.String())
				if err != nil || v < lo || v > hi {
					bad("buffering.%s must be an integer from %d to %d, got %s", name, lo, hi, n.String())
					return
				}
				set(v)
			}
			bound("maxItems", b.MaxItems, MinItems, MaxItems, func(v int) { sub.MaxItems = v })
			bound("maxBytes", b.MaxBytes, MinBytes, MaxBytes, func(v int) { sub.MaxBytes = v })
			bound("timeoutMs", b.TimeoutMs, MinTimeoutMs, MaxTimeoutMs, func(v int) { sub.Timeout = time.Duration(v) * time.Millisecond })
		}
	}
	if len(problems) > 0 {
		return nil, &Error{400, api.ValidationErrorType(), strings.Join(problems, "; ")}
	}
	return sub, nil
}

// parseDestination checks the destination: HTTP to a URI on the sandbox
// (http://sandbox.localdomain:PORT/path), or TCP to a port of it (the
// Telemetry API's "port", the Logs API's URI host:port).
func parseDestination(sub *Subscription, d *destination, bad func(string, ...any)) {
	sub.Protocol = strings.ToUpper(d.Protocol)
	switch sub.Protocol {
	case "HTTP":
		if d.URI == "" {
			bad("destination.URI is required")
			return
		}
		u, err := url.Parse(d.URI)
		if err != nil || u.Host == "" {
			bad("destination.URI %q is not a URI (want http://%s:PORT/path)", d.URI, SandboxHost)
			return
		}
		if u.Scheme != "http" {
			bad("destination.URI scheme must be http (not %q)", u.Scheme)
		}
		checkHostPort(sub, u.Hostname(), u.Port(), bad)
		sub.Path = u.EscapedPath()
		if sub.Path == "" {
			sub.Path = "/"
		}
		if u.RawQuery != "" {
			sub.Path += "?" + u.RawQuery
		}
	case "TCP":
		if len(d.Port) > 0 {
			checkHostPort(sub, SandboxHost, strings.Trim(string(d.Port), `"`), bad)
			return
		}
		host, port, err := net.SplitHostPort(strings.TrimPrefix(d.URI, "tcp://"))
		if err != nil {
			bad("destination.port is required for TCP")
			return
		}
		checkHostPort(sub, host, port, bad)
	case "":
		bad("destination.protocol is required")
	default:
		bad("destination.protocol %q is not valid (valid: HTTP, TCP)", d.Protocol)
	}
}

func checkHostPort(sub *Subscription, host, port string, bad func(string, ...any)) {
	if !slices.Contains(localHosts, strings.ToLower(host)) {
		bad("destination host must be %s (extensions can only receive events inside the execution environment), got %q", SandboxHost, host)
	}
	if port == "" {
		bad("URI port is not provided")
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		bad("destination port %q is not valid", port)
		return
	}
	sub.Addr = net.JoinHostPort("127.0.0.1", port)
}

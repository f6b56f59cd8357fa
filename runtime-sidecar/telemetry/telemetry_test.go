package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseSubscription(t *testing.T) {
	for _, c := range []struct {
		name string
		api  API
		body string
		want Subscription // compared when err is ""
		err  string       // a substring of the 400's message
	}{
		{name: "telemetry defaults", body: `{"schemaVersion":"2022-12-13","types":["platform","function"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080/x?y=1"}}`,
			want: Subscription{SchemaVersion: "2022-12-13", Types: []string{"platform", "function"}, Protocol: "HTTP", Addr: "127.0.0.1:8080", Path: "/x?y=1",
				Buffering: Buffering{MaxItems: 1000, MaxBytes: 262144, Timeout: time.Second}}},
		{name: "logs defaults", api: LogsAPI, body: `{"types":["extension"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}`,
			want: Subscription{API: LogsAPI, SchemaVersion: "2020-08-15", Types: []string{"extension"}, Protocol: "HTTP", Addr: "127.0.0.1:1234", Path: "/",
				Buffering: Buffering{MaxItems: 10000, MaxBytes: 262144, Timeout: time.Second}}},
		{name: "buffering", body: `{"schemaVersion":"2022-07-01","types":["platform"],"buffering":{"maxItems":10000,"maxBytes":1048576,"timeoutMs":25},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:9"}}`,
			want: Subscription{SchemaVersion: "2022-07-01", Types: []string{"platform"}, Protocol: "HTTP", Addr: "127.0.0.1:9", Path: "/",
				Buffering: Buffering{MaxItems: 10000, MaxBytes: 1048576, Timeout: 25 * time.Millisecond}}},
		{name: "tcp", body: `{"schemaVersion":"2025-01-29","types":["function"],"destination":{"protocol":"TCP","port":4243}}`,
			want: Subscription{SchemaVersion: "2025-01-29", Types: []string{"function"}, Protocol: "TCP", Addr: "127.0.0.1:4243",
				Buffering: Buffering{MaxItems: 1000, MaxBytes: 262144, Timeout: time.Second}}},
		{name: "not json", body: `{"types":`, err: "Invalid JSON"},
		{name: "no port, no types", body: `{"schemaVersion":"2022-12-13","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain/"}}`,
			err: "types should not be empty; URI port is not provided"},
		{name: "schema", body: `{"schemaVersion":"2020-01-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "schemaVersion"},
		{name: "no schema", body: `{"types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "schemaVersion is required"},
		{name: "type", body: `{"schemaVersion":"2022-12-13","types":["platform","everything"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: `type "everything"`},
		{name: "host", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:80"}}`, err: "destination host"},
		{name: "https", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"https://sandbox.localdomain:8443"}}`, err: "scheme must be http"},
		{name: "protocol", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"UDP","URI":"http://sandbox.localdomain:1"}}`, err: "protocol"},
		{name: "no destination", body: `{"schemaVersion":"2022-12-13","types":["platform"]}`, err: "destination is required"},
		{name: "maxItems low", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":10},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "buffering.maxItems must be an integer from 1000 to 10000"},
		{name: "maxBytes high", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxBytes":1048577},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "buffering.maxBytes"},
		{name: "timeout", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":30001},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "buffering.timeoutMs"},
		{name: "timeout float", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":100.5},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "buffering.timeoutMs"},
		{name: "logs schema", api: LogsAPI, body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`, err: "schemaVersion"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sub, err := ParseSubscription(c.api, []byte(c.body))
			if c.err != "" {
				if err == nil {
					t.Fatalf("accepted: %+v", sub)
				}
				if err.Status != 400 || err.Type != c.api.ValidationErrorType() || !strings.Contains(err.Message, c.err) {
					t.Fatalf("got %d %s %q, want 400 %s containing %q", err.Status, err.Type, err.Message, c.api.ValidationErrorType(), c.err)
				}
				var doc map[string]string
				if json.Unmarshal(err.Body(), &doc) != nil || doc["errorType"] != err.Type || doc["errorMessage"] != err.Message {
					t.Fatalf("body %s", err.Body())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(sub)
			want, _ := json.Marshal(c.want)
			if string(got) != string(want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// The records carry the schema's field names.
func TestEncode(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 9, 35, 123456789, time.FixedZone("x", 3600))
	for _, c := range []struct {
		ev   Event
		want string
	}{
		{Event{at, TypeStart, Start{RequestID: "id", Version: "$LATEST"}},
			`{"time":"2026-11-30T08:09:35.123Z","type":"platform.start","record":{"requestId":"id","version":"$LATEST"}}`},
		{Event{at, TypeReport, Report{RequestID: "id", Status: StatusError, ErrorType: "Runtime.ExitError",
			Metrics: ReportMetrics{DurationMs: Millis(6260 * time.Microsecond), BilledDurationMs: 13, MemorySizeMB: 128, MaxMemoryUsedMB: 45, InitDurationMs: 5.97}}},
			`{"time":"2026-11-30T08:09:35.123Z","type":"platform.report","record":{"requestId":"id","metrics":{"durationMs":6.26,"billedDurationMs":13,"memorySizeMB":128,"maxMemoryUsedMB":45,"initDurationMs":5.97},"status":"error","errorType":"Runtime.ExitError"}}`},
		{Event{at, TypeRuntimeDone, RuntimeDone{RequestID: "id", Status: StatusSuccess, Metrics: &RuntimeDoneMetrics{DurationMs: 1.5, ProducedBytes: 12}}},
			`{"time":"2026-11-30T08:09:35.123Z","type":"platform.runtimeDone","record":{"requestId":"id","status":"success","metrics":{"durationMs":1.5,"producedBytes":12}}}`},
		{Event{at, TypeInitStart, InitStart{InitializationType: "on-demand", Phase: "init", FunctionName: "f", FunctionVersion: "$LATEST"}},
			`{"time":"2026-11-30T08:09:35.123Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init","functionName":"f","functionVersion":"$LATEST"}}`},
		{Event{at, TypeLogsDropped, LogsDropped{DroppedBytes: 10, DroppedRecords: 1, Reason: "r"}},
			`{"time":"2026-11-30T08:09:35.123Z","type":"platform.logsDropped","record":{"droppedBytes":10,"droppedRecords":1,"reason":"r"}}`},
		{Event{at, TypeFunction, "a line"}, `{"time":"2026-11-30T08:09:35.123Z","type":"function","record":"a line"}`},
	} {
		if got := string(c.ev.Encode()); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

// collector is a subscriber's HTTP listener that records the batches.
type collector struct {
	srv     *httptest.Server
	mu      sync.Mutex
	batches [][]map[string]any
	block   atomic.Bool // hold requests (answering 503 when released) instead of taking them
	release chan struct{}
}

func newCollector(t *testing.T) *collector {
	c := &collector{release: make(chan struct{})}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.block.Load() {
			select {
			case <-c.release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/events" {
			t.Errorf("%s %s %s", r.Method, r.URL, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		var batch []map[string]any
		if err := json.Unmarshal(b, &batch); err != nil {
			t.Errorf("batch is not a JSON array: %v", err)
		}
		c.mu.Lock()
		c.batches = append(c.batches, batch)
		c.mu.Unlock()
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) port() string {
	_, p, _ := net.SplitHostPort(c.srv.Listener.Addr().String())
	return p
}

func (c *collector) got() [][]map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]map[string]any(nil), c.batches...)
}

func subscribe(t *testing.T, h *Hub, api API, name, body string) {
	t.Helper()
	if status, resp := h.Subscribe(api, name, []byte(body)); status != 200 || string(resp) != `"OK"` {
		t.Fatalf("subscribe: %d %s", status, resp)
	}
}

// Batches go out when maxItems is reached, the rest at the batch timeout;
// each is a JSON array, one delivery at a time.
func TestBatching(t *testing.T) {
	c := newCollector(t)
	h := NewHub(HubConfig{})
	defer h.Stop(context.Background())
	subscribe(t, h, TelemetryAPI, "ext", `{"schemaVersion":"2022-12-13","types":["function"],"buffering":{"maxItems":1000,"timeoutMs":300},
		"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:`+c.port()+`/events"}}`)
	start := time.Now()
	for i := range 2500 {
		h.Line(CategoryFunction, time.Now(), []byte("line "+strconv.Itoa(i)))
	}
	waitFor(t, func() bool { return len(c.got()) >= 2 })
	if got := c.got(); len(got[0]) != 1000 || len(got[1]) != 1000 || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("full batches: %d, %d after %v", len(got[0]), len(got[1]), time.Since(start))
	}
	waitFor(t, func() bool { return len(c.got()) == 3 })
	if d := time.Since(start); d < 280*time.Millisecond {
		t.Errorf("the last batch went after %v, before its 300ms timeout", d)
	}
	n := 0
	for _, b := range c.got() {
		for _, ev := range b {
			if ev["type"] != "function" || ev["record"] != "line "+strconv.Itoa(n) {
				t.Fatalf("event %d: %v", n, ev)
			}
			n++
		}
	}
	if n != 2500 {
		t.Fatalf("%d events delivered", n)
	}
}

// maxBytes cuts batches too.
func TestBatchBytes(t *testing.T) {
	c := newCollector(t)
	h := NewHub(HubConfig{})
	defer h.Stop(context.Background())
	subscribe(t, h, TelemetryAPI, "ext", `{"schemaVersion":"2022-12-13","types":["function"],"buffering":{"maxBytes":262144,"timeoutMs":30000},
		"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:`+c.port()+`/events"}}`)
	line := strings.Repeat("x", 10000)
	for range 60 {
		h.Line(CategoryFunction, time.Now(), []byte(line))
	}
	waitFor(t, func() bool { return len(c.got()) >= 2 })
	for _, b := range c.got() {
		size := 0
		for _, ev := range b {
			raw, _ := json.Marshal(ev)
			size += len(raw)
		}
		if size > 262144 || len(b) < 20 {
			t.Errorf("a batch of %d events, %d bytes", len(b), size)
		}
	}
}

// A subscriber that does not answer neither blocks the publisher nor makes
// the buffer grow: the oldest events go, and once it answers it gets
// platform.logsDropped with their count before the rest.
func TestSlowSubscriber(t *testing.T) {
	saved := SendTimeout
	SendTimeout = 100 * time.Millisecond
	defer func() { SendTimeout = saved }()
	c := newCollector(t)
	c.block.Store(true)
	h := NewHub(HubConfig{})
	defer h.Stop(context.Background())
	subscribe(t, h, TelemetryAPI, "ext", `{"schemaVersion":"2022-12-13","types":["function"],"buffering":{"timeoutMs":25},
		"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:`+c.port()+`/events"}}`)
	s := h.subs["ext"]
	const n = 40000
	line := []byte(strings.Repeat("y", 100))
	start := time.Now()
	for range n {
		h.Line(CategoryFunction, time.Now(), line)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("publishing %d lines to a stuck subscriber took %v", n, d)
	}
	s.mu.Lock()
	size := s.size
	s.mu.Unlock()
	if size > bufferFactor*MinBytes {
		t.Errorf("buffer holds %d bytes", size)
	}
	c.block.Store(false)
	close(c.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Flush(ctx)
	var delivered, dropped int64
	sawDropped := false
	for _, b := range c.got() {
		for i, ev := range b {
			switch ev["type"] {
			case "function":
				delivered++
			case "platform.logsDropped":
				if i != 0 {
					t.Errorf("platform.logsDropped at %d in its batch", i)
				}
				rec := ev["record"].(map[string]any)
				dropped += int64(rec["droppedRecords"].(float64))
				if rec["droppedBytes"].(float64) <= 0 || rec["reason"] == "" {
					t.Errorf("record %v", rec)
				}
				sawDropped = true
			}
		}
	}
	if !sawDropped || delivered+dropped != n || delivered == 0 {
		t.Errorf("delivered %d, dropped %d of %d", delivered, dropped, n)
	}
}

// The Logs API gets its own event types; events before a subscription
// (the init's) are replayed to it; JSON lines stay objects in JSON format.
func TestLogsAPIAndReplay(t *testing.T) {
	c := newCollector(t)
	h := NewHub(HubConfig{JSONLogs: true})
	defer h.Stop(context.Background())
	now := time.Now()
	h.Publish(CategoryPlatform, Event{now, TypeInitStart, InitStart{InitializationType: "on-demand", Phase: "init"}})
	subscribe(t, h, LogsAPI, "logs-ext", `{"schemaVersion":"2021-03-18","types":["platform","function"],"buffering":{"timeoutMs":25},
		"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:`+c.port()+`/events"}}`)
	h.CloseSubscriptions()
	if status, body := h.Subscribe(LogsAPI, "late", []byte(`{"types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`)); status != 403 ||
		!strings.Contains(string(body), `"errorType":"Logs.SubscriptionClosed"`) {
		t.Errorf("after init: %d %s", status, body)
	}
	h.Publish(CategoryPlatform, Event{now, TypeStart, Start{RequestID: "r1", Version: "$LATEST"}})
	h.Line(CategoryFunction, now, []byte(`{"level":"INFO","msg":"hi"}`))
	h.Line(CategoryFunction, now, []byte(`{not json`))
	h.Publish(CategoryPlatform, Event{now, TypeRuntimeDone, RuntimeDone{RequestID: "r1", Status: StatusSuccess}})
	h.Publish(CategoryPlatform, Event{now, TypeReport, Report{RequestID: "r1", Status: StatusSuccess, Metrics: ReportMetrics{DurationMs: 1, BilledDurationMs: 1, MemorySizeMB: 128, MaxMemoryUsedMB: 20}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.Flush(ctx)
	var types []string
	var all []map[string]any
	for _, b := range c.got() {
		for _, ev := range b {
			types = append(types, ev["type"].(string))
			all = append(all, ev)
		}
	}
	want := "platform.logsSubscription platform.start function function platform.runtimeDone platform.end platform.report"
	if strings.Join(types, " ") != want {
		t.Fatalf("types %v\nwant %s", types, want)
	}
	if rec, ok := all[2]["record"].(map[string]any); !ok || rec["msg"] != "hi" {
		t.Errorf("a JSON line: %v", all[2]["record"])
	}
	if all[3]["record"] != "{not json" {
		t.Errorf("not JSON: %v", all[3]["record"])
	}
	if rec := all[6]["record"].(map[string]any); rec["status"] != nil || rec["metrics"] == nil {
		t.Errorf("Logs API report: %v", rec)
	}
	if status, body := h.Subscribe(TelemetryAPI, "logs-ext", []byte(`{}`)); status != 400 {
		t.Errorf("bad body after init: %d %s", status, body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}

// Reset ends the subscriptions and opens them again; line collection is
// told to stop.
func TestReset(t *testing.T) {
	var wants []string
	h := NewHub(HubConfig{OnWant: func(f, x bool) { wants = append(wants, strconv.FormatBool(f)+strconv.FormatBool(x)) }})
	defer h.Stop(context.Background())
	body := `{"schemaVersion":"2022-12-13","types":["function","extension"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}`
	subscribe(t, h, TelemetryAPI, "ext", body)
	h.CloseSubscriptions()
	if status, _ := h.Subscribe(TelemetryAPI, "ext2", []byte(body)); status != 403 {
		t.Errorf("closed: %d", status)
	}
	h.Reset()
	if !h.Active() || h.Wants(CategoryFunction) {
		t.Error("after Reset")
	}
	subscribe(t, h, TelemetryAPI, "ext2", body)
	if strings.Join(wants, " ") != "truetrue falsefalse truetrue" {
		t.Errorf("OnWant: %v", wants)
	}
}

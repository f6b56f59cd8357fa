package process

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendReport(t *testing.T) {
	for _, c := range []struct {
		r    Report
		want string
	}{
		{Report{RequestID: "id1", Duration: 12345678 * time.Nanosecond, MemoryMB: 128}, "END RequestId: id1\n" +
			"REPORT RequestId: id1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 45 MB\t\n"},
		// A cold start: the init is billed too.
		{Report{RequestID: "id2", Duration: 2850 * time.Microsecond, Init: 3152180 * time.Microsecond, MemoryMB: 1024}, "END RequestId: id2\n" +
			"REPORT RequestId: id2\tDuration: 2.85 ms\tBilled Duration: 3156 ms\tMemory Size: 1024 MB\tMax Memory Used: 45 MB\tInit Duration: 3152.18 ms\t\n"},
		{Report{RequestID: "id3", Duration: 3 * time.Second, Timeout: true, MemoryMB: 1024}, "END RequestId: id3\n" +
			"REPORT RequestId: id3\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 1024 MB\tMax Memory Used: 45 MB\tStatus: timeout\n"},
		{Report{RequestID: "id4", Duration: 35500 * time.Microsecond, ErrorType: "Runtime.ExitError", MemoryMB: 512}, "END RequestId: id4\n" +
			"REPORT RequestId: id4\tDuration: 35.50 ms\tBilled Duration: 36 ms\tMemory Size: 512 MB\tMax Memory Used: 45 MB\tStatus: error\tError Type: Runtime.ExitError\n"},
	} {
		if got := string(appendReport(nil, c.r, 45)); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

func TestKeepTail(t *testing.T) {
	o := &output{}
	var all []byte
	for i := 0; i < 1000; i++ {
		line := []byte(strings.Repeat("x", i%97) + "\n")
		o.keep(line)
		all = append(all, line...)
	}
	got := o.tail[len(o.tail)-TailSize:]
	if !bytes.Equal(got, all[len(all)-TailSize:]) {
		t.Fatal("tail lost bytes")
	}
	o.keep(bytes.Repeat([]byte("y"), 3*TailSize))
	if string(o.tail) != strings.Repeat("y", TailSize) {
		t.Fatalf("tail after a big write: %d bytes", len(o.tail))
	}
}

func TestMaxMemory(t *testing.T) {
	if mb := maxMemoryMB(os.Getpid()); mb <= 0 {
		t.Errorf("Max Memory Used %d MB (cgroup file %q)", mb, memFile)
	}
}

// The platform lines come between the child's output, in order, on lines
// of their own (after a partial line too); the tail holds the invocation's
// log, stderr included.
func TestChildPlatformLines(t *testing.T) {
	out, tail := captureChild(t, `echo one; printf 'partial'; echo err >&2`, Report{RequestID: "id-1", Duration: time.Millisecond, MemoryMB: 128})

	re := regexp.MustCompile(`^START RequestId: id-1 Version: \$LATEST\none\npartial\nEND RequestId: id-1\n` +
		`REPORT RequestId: id-1\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: \d+ MB\t\n$`)
	if !re.MatchString(out) {
		t.Errorf("stdout:\n%q", out)
	}
	// stdout and stderr are two pipes: their order is the copiers'.
	ts := string(tail)
	if !strings.HasPrefix(ts, "START RequestId: id-1 Version: $LATEST\n") || !strings.HasSuffix(ts, out[strings.Index(out, "END"):]) ||
		!strings.Contains(ts, "err\n") || !strings.Contains(ts, "one\n") || !strings.Contains(ts, "partial") {
		t.Errorf("tail:\n%q\nstdout:\n%q", tail, out)
	}
}

// The cost of an invocation's platform lines in the process that runs the
// bootstrap (the sidecar standalone, the supervisor in pod mode).
func BenchmarkInvokeLines(b *testing.B) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	saved := stdoutSink.f
	stdoutSink.f = devnull
	defer func() { stdoutSink.f = saved }()
	c, err := StartChild([]string{"sleep", "60"}, os.Environ(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop(0)
	r := Report{RequestID: "8f507cfc-xmpl-4697-b07a-ac58fc914c95", Duration: time.Millisecond, MemoryMB: 128}
	b.ReportAllocs()
	for b.Loop() {
		c.InvokeStart(r.RequestID, "$LATEST")
		c.InvokeEnd(r, false, false)
	}
}

// captureChild runs script as a child through one invocation (id-1,
// ended with r) and returns this process's stdout meanwhile and the tail.
func captureChild(t *testing.T, script string, r Report) (string, []byte) {
	t.Helper()
	rd, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := stdoutSink.f
	stdoutSink.f = w
	// A line left unfinished by the last child is not this one's.
	stdoutSink.nl = true
	defer func() { stdoutSink.f = saved }()
	got := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(rd)
		got <- b.String()
	}()
	dir := t.TempDir()
	gate, done := filepath.Join(dir, "gate"), filepath.Join(dir, "done")
	c, err := StartChild([]string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done; ` + script + `; : > "$2"; exec sleep 10`, "sh", gate, done}, os.Environ(), "")
	if err != nil {
		t.Fatal(err)
	}
	c.InvokeStart("id-1", "$LATEST")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not run")
		}
	}
	tail := c.InvokeEnd(r, true, false).Tail
	c.Stop(0)
	<-c.Done()
	w.Close()
	return <-got, tail
}

// In JSON format the platform lines are Lambda's platform.* records, those
// the system log level lets through; the function's own lines pass as
// they are.
func TestChildJSONLines(t *testing.T) {
	defer SetLogFormat(LogFormat{})
	script := `echo '{"level":"INFO","message":"hi"}'; echo plain`
	rep := Report{RequestID: "id-1", Duration: 1500 * time.Microsecond, Init: 2 * time.Millisecond, MemoryMB: 128, FunctionError: "MyError"}
	for _, c := range []struct {
		level string
		want  []string // the types of the platform records, in order
	}{
		{"INFO", []string{"platform.start", "platform.report"}},
		{"DEBUG", []string{"platform.start", "platform.runtimeDone", "platform.report"}},
		{"WARN", nil},
	} {
		t.Run(c.level, func(t *testing.T) {
			f, err := ParseLogFormat("json", c.level, "")
			if err != nil || !f.JSON {
				t.Fatal(f, err)
			}
			SetLogFormat(f)
			out, tail := captureChild(t, script, rep)
			var types []string
			var fn []string
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				var ev struct {
					Time   string
					Type   string
					Record map[string]any
				}
				if strings.HasPrefix(line, `{"time"`) && json.Unmarshal([]byte(line), &ev) == nil {
					types = append(types, ev.Type)
					if _, err := time.Parse("2006-01-02T15:04:05.000Z", ev.Time); err != nil {
						t.Errorf("time %q", ev.Time)
					}
					if ev.Record["requestId"] != "id-1" {
						t.Errorf("record %v", ev.Record)
					}
					switch ev.Type {
					case "platform.start":
						if ev.Record["version"] != "$LATEST" {
							t.Errorf("start %v", ev.Record)
						}
					case "platform.report":
						m, _ := ev.Record["metrics"].(map[string]any)
						if m["durationMs"] != 1.5 || m["billedDurationMs"] != 4.0 || m["memorySizeMB"] != 128.0 || m["maxMemoryUsedMB"].(float64) <= 0 ||
							m["initDurationMs"] != 2.0 || ev.Record["status"] != "error" || ev.Record["errorType"] != "MyError" {
							t.Errorf("report %v", ev.Record)
						}
					}
					continue
				}
				fn = append(fn, line)
			}
			if strings.Join(types, " ") != strings.Join(c.want, " ") {
				t.Errorf("records %v, want %v; stdout:\n%s", types, c.want, out)
			}
			if strings.Join(fn, "|") != `{"level":"INFO","message":"hi"}|plain` || strings.Contains(out, "START") || strings.Contains(out, "REPORT") {
				t.Errorf("stdout:\n%s", out)
			}
			if !strings.HasSuffix(string(tail), out[strings.Index(out, "plain\n")+len("plain\n"):]) || !strings.Contains(string(tail), "plain\n") {
				t.Errorf("tail:\n%s\nstdout:\n%s", tail, out)
			}
		})
	}
	if _, err := ParseLogFormat("xml", "", ""); err == nil {
		t.Error("xml accepted")
	}
	if _, err := ParseLogFormat("Text", "TRACE", ""); err == nil {
		t.Error("system level TRACE accepted")
	}
}

// With JSON and an application log level, the function's lines below it
// are dropped, as Lambda filters a runtime's output that it does not
// filter itself: a JSON object's "level" (any case) is its level, any
// other line (plain text, no level, an unknown one) is INFO. A line left
// unfinished when the invocation ends is judged then.
func TestApplicationLogLevel(t *testing.T) {
	defer SetLogFormat(LogFormat{})
	script := `echo '{"level":"debug","m":"d"}'; echo '{"level":"INFO","m":"i"}'; echo '{"m":"none"}'; echo plain; ` +
		`echo '{"level":"warn","m":"w"}'; echo '{"level":"NOISE","m":"bad"}'; echo '{"level":"ERROR","m":"e"}' >&2; ` +
		`echo '{"level":"TRACE","m":"t"}'; printf '{"level":"fatal","m":"unfinished"}'`
	all := []string{`{"level":"debug","m":"d"}`, `{"level":"INFO","m":"i"}`, `{"m":"none"}`, `plain`, `{"level":"warn","m":"w"}`,
		`{"level":"NOISE","m":"bad"}`, `{"level":"TRACE","m":"t"}`, `{"level":"fatal","m":"unfinished"}`}
	for _, c := range []struct {
		format, level string
		want          []string // the function's lines on stdout, in order
	}{
		{"JSON", "WARN", []string{`{"level":"warn","m":"w"}`, `{"level":"fatal","m":"unfinished"}`}},
		{"JSON", "", []string{`{"level":"INFO","m":"i"}`, `{"m":"none"}`, `plain`, `{"level":"warn","m":"w"}`, `{"level":"NOISE","m":"bad"}`, `{"level":"fatal","m":"unfinished"}`}},
		{"JSON", "FATAL", []string{`{"level":"fatal","m":"unfinished"}`}},
		{"JSON", "TRACE", all},
		{"Text", "ERROR", all}, // levels are JSON's only, as on Lambda
	} {
		t.Run(c.format+"-"+c.level, func(t *testing.T) {
			f, err := ParseLogFormat(c.format, "WARN", c.level)
			if err != nil {
				t.Fatal(err)
			}
			SetLogFormat(f)
			out, tail := captureChild(t, script, Report{RequestID: "id-1", MemoryMB: 128})
			var fn []string
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if !strings.HasPrefix(line, "START ") && !strings.HasPrefix(line, "END ") && !strings.HasPrefix(line, "REPORT ") {
					fn = append(fn, line)
				}
			}
			if strings.Join(fn, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("the function's lines on stdout:\n%s\nwant:\n%s", strings.Join(fn, "\n"), strings.Join(c.want, "\n"))
			}
			for _, l := range all {
				if in := strings.Contains(string(tail), l); in != slices.Contains(c.want, l) {
					t.Errorf("line %s in the log tail: %v\ntail:\n%s", l, in, tail)
				}
			}
		})
	}
	if _, err := ParseLogFormat("JSON", "", "VERBOSE"); err == nil {
		t.Error("application level VERBOSE accepted")
	}
}

// While lines are forwarded, each line of a child's stdout and stderr
// goes to the sink once, whole (a partial line waits for its end, one
// longer than MaxLine is cut), marked with the child's stream; when
// nobody wants a stream, none of its lines are collected.
func TestForwardLines(t *testing.T) {
	saved, savedErr := stdoutSink.f, stderrSink.f
	stdoutSink.f, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	stderrSink.f = stdoutSink.f
	defer func() {
		// The child ends on a partial line: the next test starts afresh.
		stdoutSink.f, stderrSink.f = saved, savedErr
		stdoutSink.nl, stderrSink.nl = true, true
	}()

	var mu sync.Mutex
	got := map[Stream][]string{}
	ForwardLines(func(s Stream, _ time.Time, line []byte) {
		mu.Lock()
		got[s] = append(got[s], string(line))
		mu.Unlock()
	}, true, false)
	defer ForwardLines(nil, false, false)

	script := `printf 'one\npart'; sleep 0.05; printf 'ial\r\n'; echo err >&2; head -c 300000 /dev/zero | tr '\0' x; echo; printf 'last'`
	c, err := StartChild([]string{"sh", "-c", script}, os.Environ(), "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := StartExtensionChild([]string{"sh", "-c", "echo from the extension"}, os.Environ(), "")
	if err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	<-e.Done()
	mu.Lock()
	defer mu.Unlock()
	var fn []string
	for _, l := range got[StreamFunction] {
		if strings.HasPrefix(l, "xxx") {
			l = "x*" + strconv.Itoa(len(l))
		}
		fn = append(fn, l)
	}
	// stdout and stderr are two pipes: "err" may come anywhere.
	sorted := append([]string(nil), fn...)
	slices.Sort(sorted)
	if want := []string{"err", "last", "one", "partial", "x*262144", "x*37856"}; !slices.Equal(sorted, want) {
		t.Errorf("function lines %q", fn)
	}
	if len(got[StreamExtension]) != 0 {
		t.Errorf("extension lines collected while not wanted: %q", got[StreamExtension])
	}
}

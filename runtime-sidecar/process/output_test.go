package process

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := stdoutSink.f
	stdoutSink.f = w
	defer func() { stdoutSink.f = saved }()
	got := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		got <- b.String()
	}()

	dir := t.TempDir()
	gate, done := filepath.Join(dir, "gate"), filepath.Join(dir, "done")
	c, err := StartChild([]string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done; echo one; printf 'partial'; echo err >&2; : > "$2"; exec sleep 10`, "sh", gate, done}, os.Environ(), "")
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
	tail := c.InvokeEnd(Report{RequestID: "id-1", Duration: time.Millisecond, MemoryMB: 128}, true)
	c.Stop(0)
	<-c.Done()
	w.Close()
	out := <-got

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
		c.InvokeEnd(r, false)
	}
}

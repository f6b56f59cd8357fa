package conformance

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// In pod mode the bootstrap gets a warm invocation without the sidecar
// waiting for the supervisor to write START; what the bootstrap prints of
// it must still come after its START and before its END in the function's
// log, under load and with several slots. (Without the supervisor's
// output barrier 140 to 168 of the 400 lines came before their START
// here; and before the copier counted a read from the pipe in the same
// step as the read, one line in about a thousand came after its END.)
func TestPodModeLinesStayBetweenStartAndEnd(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	s := startSidecar(t, sidecarOpts{
		env:    []string{"LAMBDAPOD_CONTROL_SOCKET=" + socket, "AWS_LAMBDA_FUNCTION_NAME=fn-pod", "LAMBDAPOD_CONCURRENCY=4"},
		noWait: true,
	})
	sup := startSupervisor(t, socket, "--", bin.bootstrap)
	s.waitReady()

	const clients, each = 4, 100
	type call struct{ id, line string }
	calls := make([][]call, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for i := range each {
				line := fmt.Sprintf("order-%d-%d", g, i)
				resp, err := c.Post(s.URL+"/2015-03-31/functions/fn-pod/invocations", "application/json",
					strings.NewReader(`{"action":"log","line":"`+line+`"}`))
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				id := resp.Header.Get("X-Amzn-Requestid") // x-amzn-RequestId
				if resp.StatusCode != http.StatusOK || id == "" {
					errs <- fmt.Errorf("invocation %s: %d, request id %q", line, resp.StatusCode, id)
					return
				}
				calls[g] = append(calls[g], call{id, line})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The supervisor writes the lines as the bootstrap's output and the
	// sidecar's messages come: every REPORT, then look.
	waitFor(t, 10*time.Second, "every REPORT in the function's log", func() bool {
		return strings.Count(sup.out.String(), "REPORT RequestId: ") >= clients*each
	})
	log := sup.out.String()
	bad := 0
	for _, cs := range calls {
		for _, c := range cs {
			start := strings.Index(log, "START RequestId: "+c.id+" ")
			line := strings.Index(log, "\n"+c.line+"\n")
			end := strings.Index(log, "END RequestId: "+c.id+"\n")
			if start < 0 || line < 0 || end < 0 || !(start < line && line < end) {
				if bad++; bad <= 5 {
					t.Errorf("%s (%s): START at %d, its line at %d, END at %d", c.id, c.line, start, line, end)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d invocations' lines out of their START and END", bad, clients*each)
	}
}

package extensions

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func serve(r *Registry, open bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.ServeHTTP(w, req, Caller{Slot: 0, RegistrationOpen: func() bool { return open }})
	}))
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	resp, b, err := try(method, url, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// try is do for other goroutines than the test's.
func try(method, url string, hdr map[string]string, body string) (*http.Response, string, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// getNext is a /next from another goroutine: its body, "" on an error.
func getNext(url, id string) string {
	_, b, _ := try(http.MethodGet, url+pathNext, map[string]string{headerID: id}, "")
	return b
}

// An INVOKE is held for the extension's next, and its channel closes only
// at the next /next after it (the end of the extension's Invoke phase);
// the extension is then Running, so a second concurrent /next is refused.
func TestInvokeAckedByNextNext(t *testing.T) {
	r := New(Config{Function: Function{Name: "fn", Version: "$LATEST"}, Log: slog.New(slog.DiscardHandler)})
	srv := serve(r, true)
	defer func() {
		// Held /next calls end with their connections.
		srv.CloseClientConnections()
		srv.Close()
	}()

	resp, _ := do(t, http.MethodPost, srv.URL+pathRegister, map[string]string{"Lambda-Extension-Name": "in"}, `{"events":["INVOKE"]}`)
	id := resp.Header.Get(headerID)
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("register: %d %q", resp.StatusCode, id)
	}
	if info, ok := r.Lookup(id); !ok || info.Name != "in" || info.External || info.Slot != 0 {
		t.Errorf("Lookup = %+v, %v", info, ok)
	}

	got := make(chan string, 1)
	go func() { got <- getNext(srv.URL, id) }()
	deadline := time.Now().Add(time.Minute)
	var acks []<-chan struct{}
	for len(acks) == 0 {
		// Queued even before the extension's next arrives.
		acks = r.Invoke(0, "req-1", "arn:x", "Root=1", deadline)
	}
	var ev InvokeEvent
	if err := json.Unmarshal([]byte(<-got), &ev); err != nil || ev.RequestID != "req-1" || ev.DeadlineMs != deadline.UnixMilli() ||
		ev.Tracing == nil || ev.Tracing.Value != "Root=1" {
		t.Fatalf("event %+v (%v)", ev, err)
	}
	select {
	case <-acks[0]:
		t.Fatal("acknowledged before the extension's next")
	default:
	}
	go getNext(srv.URL, id)
	select {
	case <-acks[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("not acknowledged by the next /next")
	}
	// That /next is held: another is refused as the emulator does.
	time.Sleep(50 * time.Millisecond)
	resp, body := do(t, http.MethodGet, srv.URL+pathNext, map[string]string{headerID: id}, "")
	if resp.StatusCode != 403 || body != `{"errorMessage":"State transition from Ready to Ready failed for extension `+id+`. Error: State transition is not allowed","errorType":"Extension.InvalidExtensionState"}` {
		t.Errorf("concurrent next: %d %s", resp.StatusCode, body)
	}
	// Dropping the slot's extensions releases what waits for them.
	acks = r.Invoke(0, "req-2", "arn:x", "", deadline)
	r.DropSlot(0)
	select {
	case <-acks[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("DropSlot did not release the INVOKE")
	}
	if _, ok := r.Lookup(id); ok {
		t.Error("dropped extension still found")
	}
}

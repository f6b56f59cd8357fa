package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInvokeReusesConnectionsAndForwardsHeaders(t *testing.T) {
	var conns, closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/2015-03-31/functions/my-fn/invocations" || r.Header.Get("X-Amz-Invocation-Type") != "RequestResponse" ||
			r.Header.Get("X-Amz-Client-Context") != "e30=" || r.Header.Get("Authorization") != "" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("sidecar got %s %v", r.URL.Path, r.Header)
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Amzn-RequestId", "rid")
		_, _ = w.Write(b)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	inv := New()
	addr := strings.TrimPrefix(srv.URL, "http://")
	h := http.Header{"X-Amz-Client-Context": {"e30="}, "Authorization": {"AWS4-HMAC-SHA256 x"}}
	invoke := func(what, payload string) {
		t.Helper()
		resp, err := inv.Invoke(context.Background(), addr, &Request{Function: "my-fn", Payload: []byte(payload), Header: h})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != payload || resp.Header.Get("X-Amzn-RequestId") != "rid" {
			t.Fatalf("%s: got %d %q %v, want 200 %q from the pod", what, resp.StatusCode, b, resp.Header, payload)
		}
	}
	for i := 0; i < 5; i++ {
		invoke("sequential invocation", fmt.Sprintf(`{"i":%d}`, i))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential invocations, want 1", n)
	}
	// The pod closes its idle connection: the next invocation notices and
	// dials again instead of failing or writing into the dead one.
	srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the pod did not close its connection")
		}
		time.Sleep(time.Millisecond)
	}
	invoke("after the pod closed its idle connection", `{"after":"close"}`)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the pod closed the first, want 2: the stale one replaced by one new", n)
	}
	// The new connection is the one kept for the next invocation.
	invoke("on the new connection", `{"again":true}`)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want the replacement reused", n)
	}
}

func TestInvokeStreamsChunkedResponses(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-release
		_, _ = w.Write([]byte("second"))
	}))
	defer srv.Close()
	resp, err := New().Invoke(context.Background(), strings.TrimPrefix(srv.URL, "http://"), &Request{Function: "f", Header: http.Header{}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, _ := resp.Body.Read(buf)
	if string(buf[:n]) != "first" {
		t.Fatalf("first chunk %q", buf[:n])
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

func TestInvokeErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := New().Invoke(context.Background(), addr, &Request{Function: "f", Header: http.Header{}})
	if !NotDelivered(err) {
		t.Fatalf("refused connection: %v, want NotDelivered", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = New().Invoke(ctx, strings.TrimPrefix(srv.URL, "http://"), &Request{Function: "f", Header: http.Header{}})
	if !errors.Is(err, context.DeadlineExceeded) || NotDelivered(err) || time.Since(start) > time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(start))
	}
}

// A pod that answers with an endless head (a function's author controls
// the pod) costs the activator at most MaxResponseHead, not all it sends.
func TestEndlessResponseHeadIsCutOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var sent atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		go func() { _, _ = io.Copy(io.Discard, c) }()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for sent.Load() < 64<<20 {
			n, err := io.WriteString(c, line)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	inv := New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = inv.Invoke(ctx, ln.Addr().String(), &Request{Function: "fn", Payload: []byte(`{}`), Header: http.Header{}})
	if err == nil || !strings.Contains(err.Error(), "head over") {
		t.Fatalf("got %v, want the head refused", err)
	}
	if s := sent.Load(); s > 8<<20 {
		t.Fatalf("the activator read on while the pod sent %d MiB", s>>20)
	}
}

// Command telemetry is an external Lambda extension for the conformance
// tests that subscribes to the Telemetry API (or the Logs API), as AWS's
// sample telemetry extensions do: it listens on 127.0.0.1, registers under
// its file name, subscribes with destination
// http://sandbox.localdomain:PORT, and loops on event/next until SHUTDOWN.
// It writes what it gets under $TEL_RECORD_DIR:
//
//	<name>.events   every event delivered to it, one JSON object a line
//	<name>.log      SUBSCRIBE <status> <body>, BATCH <events>, EVENT <type> <request id>, EXIT
//
// and prints a line per INVOKE to stdout (the extension log stream).
//
// Environment: TEL_API=logs subscribes through the Logs API (schema
// 2021-03-18); TEL_TYPES is the comma-separated types (default
// platform,function); TEL_BODY replaces the subscription body (PORT is
// replaced with the listener's port); TEL_STALL=1 makes the listener
// never answer.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	name = filepath.Base(os.Args[0])
	api  = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API")
	dir  = os.Getenv("TEL_RECORD_DIR")
	mu   sync.Mutex
)

func appendTo(file, line string) {
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(filepath.Join(dir, name+file), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	stall := os.Getenv("TEL_STALL") == "1"
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if stall {
				<-r.Context().Done()
				return
			}
			b, _ := io.ReadAll(r.Body)
			var batch []json.RawMessage
			if err := json.Unmarshal(b, &batch); err != nil {
				appendTo(".log", "BADBATCH "+err.Error())
				w.WriteHeader(400)
				return
			}
			for _, ev := range batch {
				var c bytes.Buffer
				_ = json.Compact(&c, ev)
				appendTo(".events", c.String())
			}
			appendTo(".log", "BATCH "+strconv.Itoa(len(batch)))
		}))
	}()

	req, _ := http.NewRequest(http.MethodPost, api+"/2020-01-01/extension/register", strings.NewReader(`{"events":["INVOKE","SHUTDOWN"]}`))
	req.Header.Set("Lambda-Extension-Name", name)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, "register:", err)
		os.Exit(3)
	}
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Extension-Identifier")

	types := os.Getenv("TEL_TYPES")
	if types == "" {
		types = "platform,function"
	}
	quoted, _ := json.Marshal(strings.Split(types, ","))
	path, schema := "/2022-07-01/telemetry", "2022-12-13"
	if os.Getenv("TEL_API") == "logs" {
		path, schema = "/2020-08-15/logs", "2021-03-18"
	}
	body := `{"schemaVersion":"` + schema + `","types":` + string(quoted) + `,"buffering":{"timeoutMs":25},` +
		`"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:PORT/events"}}`
	if b := os.Getenv("TEL_BODY"); b != "" {
		body = b
	}
	req, _ = http.NewRequest(http.MethodPut, api+path, strings.NewReader(strings.ReplaceAll(body, "PORT", port)))
	req.Header.Set("Lambda-Extension-Identifier", id)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		appendTo(".log", "SUBSCRIBE error "+err.Error())
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		appendTo(".log", "SUBSCRIBE "+strconv.Itoa(resp.StatusCode)+" "+string(b))
	}

	for {
		req, _ := http.NewRequest(http.MethodGet, api+"/2020-01-01/extension/event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			os.Exit(6)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ev struct{ EventType, RequestID string }
		_ = json.Unmarshal(b, &ev)
		appendTo(".log", "EVENT "+ev.EventType+" "+ev.RequestID)
		if ev.EventType == "SHUTDOWN" {
			// What is still on its way arrives before the deadline.
			time.Sleep(300 * time.Millisecond)
			appendTo(".log", "EXIT")
			os.Exit(0)
		}
		fmt.Println("telemetry extension got INVOKE", ev.RequestID)
	}
}

// Command extension is an external Lambda extension for the conformance
// tests, written against the raw Extensions API as AWS's sample
// go-example-extension is: it registers under its file name, then loops on
// event/next until SHUTDOWN. It appends what it did and got to
// $EXT_RECORD_DIR/<its name>, one line each:
//
//	REGISTER <status> <body>
//	EVENT <event JSON>
//	EXIT
//
// Its name picks a behaviour: a name containing "slow" sleeps 1 s before
// its first next; "initerror" posts /extension/init/error instead of
// calling next; "crash" exits 5 after its first INVOKE, once (a later
// instance finds <record>.crashed); "lag" sleeps 500 ms after each INVOKE
// before its next; "noregister" exits 4 at once; "invokeonly" registers
// for INVOKE only.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var (
	name   = filepath.Base(os.Args[0])
	base   = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension/"
	record *os.File
)

func note(format string, args ...any) {
	fmt.Fprintf(record, format+"\n", args...)
}

func main() {
	var err error
	record, err = os.OpenFile(filepath.Join(os.Getenv("EXT_RECORD_DIR"), name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(name, "starting")
	if strings.Contains(name, "noregister") {
		os.Exit(4)
	}
	events := []string{"INVOKE", "SHUTDOWN"}
	if strings.Contains(name, "invokeonly") {
		events = []string{"INVOKE"}
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	req, _ := http.NewRequest(http.MethodPost, base+"register", bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Name", name)
	req.Header.Set("Lambda-Extension-Accept-Feature", "accountId")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		note("REGISTER error %v", err)
		os.Exit(3)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	note("REGISTER %d %s", resp.StatusCode, b)
	id := resp.Header.Get("Lambda-Extension-Identifier")
	if resp.StatusCode != 200 {
		os.Exit(3)
	}
	if strings.Contains(name, "slow") {
		time.Sleep(time.Second)
	}
	if strings.Contains(name, "initerror") {
		req, _ := http.NewRequest(http.MethodPost, base+"init/error", strings.NewReader(`{"errorMessage":"no config","errorType":"Extension.ConfigInvalid"}`))
		req.Header.Set("Lambda-Extension-Identifier", id)
		req.Header.Set("Lambda-Extension-Function-Error-Type", "Extension.ConfigInvalid")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			note("INITERROR %d %s", resp.StatusCode, b)
		}
		time.Sleep(time.Hour)
	}
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			note("NEXT error %v", err)
			os.Exit(6)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			note("NEXT %d %s", resp.StatusCode, b)
			os.Exit(6)
		}
		note("EVENT %s", b)
		var ev struct{ EventType string }
		_ = json.Unmarshal(b, &ev)
		if ev.EventType == "SHUTDOWN" {
			note("EXIT")
			os.Exit(0)
		}
		if strings.Contains(name, "crash") {
			marker := filepath.Join(os.Getenv("EXT_RECORD_DIR"), name+".crashed")
			if _, err := os.Stat(marker); err != nil {
				_ = os.WriteFile(marker, nil, 0o644)
				note("CRASH")
				os.Exit(5)
			}
		}
		if strings.Contains(name, "lag") {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

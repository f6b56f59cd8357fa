// Command extension is an external Lambda extension for make e2e, written
// against the Extensions API as Lambda documents it (no SDK): installed as
// /opt/extensions/<name>, it registers under its file name for INVOKE and
// SHUTDOWN, then asks for event after event and prints one line for each
// to standard output, which is the function's log:
//
//	EXTENSION <name> REGISTERED <functionName>
//	EXTENSION <name> INVOKE <requestId>
//	EXTENSION <name> SHUTDOWN <shutdownReason>
//
// and exits after SHUTDOWN. With EXTENSION_TELEMETRY_PORT set it also
// subscribes to the Telemetry API's platform events, with the destination
// http://sandbox.localdomain:<port> that Lambda's sandbox resolves (and a
// lambdapod pod, through its host alias), and prints
//
//	EXTENSION <name> TELEMETRY <type> <requestId>
//
// for each event it receives there.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

const (
	extensionAPI = "/2020-01-01/extension"
	telemetryAPI = "/2022-07-01/telemetry"
	// sandboxHost is where Lambda's extensions reach each other.
	sandboxHost = "sandbox.localdomain"
)

var (
	name = filepath.Base(os.Args[0])
	base = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API")
	// No timeout: event/next blocks until the next invocation, which may
	// be minutes away.
	client = &http.Client{}
)

type event struct {
	EventType      string `json:"eventType"`
	RequestID      string `json:"requestId"`
	ShutdownReason string `json:"shutdownReason"`
}

func main() {
	id, functionName, err := register()
	if err != nil {
		// No identifier to report it with: Lambda fails the Init of an
		// extension that exits before it registers.
		fmt.Fprintf(os.Stderr, "EXTENSION %s: %v\n", name, err)
		os.Exit(1)
	}
	fmt.Printf("EXTENSION %s REGISTERED %s\n", name, functionName)
	if port := os.Getenv("EXTENSION_TELEMETRY_PORT"); port != "" {
		if err := subscribe(id, port); err != nil {
			report(id, "init/error", "Extension.TelemetrySubscribeFailed", err)
		}
	}
	for {
		ev, err := next(id)
		if err != nil {
			report(id, "exit/error", "Extension.NextFailed", err)
		}
		switch ev.EventType {
		case "INVOKE":
			fmt.Printf("EXTENSION %s INVOKE %s\n", name, ev.RequestID)
		case "SHUTDOWN":
			fmt.Printf("EXTENSION %s SHUTDOWN %s\n", name, ev.ShutdownReason)
			return
		default:
			fmt.Printf("EXTENSION %s %s\n", name, ev.EventType)
		}
	}
}

func register() (id, functionName string, err error) {
	req, _ := http.NewRequest(http.MethodPost, base+extensionAPI+"/register",
		bytes.NewReader([]byte(`{"events":["INVOKE","SHUTDOWN"]}`)))
	req.Header.Set("Lambda-Extension-Name", name)
	req.Header.Set("Content-Type", "application/json")
	body, resp, err := do(req)
	if err != nil {
		return "", "", fmt.Errorf("register: %w", err)
	}
	var r struct {
		FunctionName string `json:"functionName"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", "", fmt.Errorf("register: %w in %q", err, body)
	}
	id = resp.Header.Get("Lambda-Extension-Identifier")
	if id == "" {
		return "", "", errors.New("register: no Lambda-Extension-Identifier in the answer")
	}
	return id, r.FunctionName, nil
}

func next(id string) (event, error) {
	req, _ := http.NewRequest(http.MethodGet, base+extensionAPI+"/event/next", nil)
	req.Header.Set("Lambda-Extension-Identifier", id)
	body, _, err := do(req)
	if err != nil {
		return event{}, fmt.Errorf("event/next: %w", err)
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		return event{}, fmt.Errorf("event/next: %w in %q", err, body)
	}
	return ev, nil
}

// subscribe listens on sandbox.localdomain:port and asks the Telemetry API
// to send the platform's events there.
func subscribe(id, port string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(sandboxHost, port))
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, http.HandlerFunc(receive)) }()
	sub, _ := json.Marshal(map[string]any{
		"schemaVersion": "2022-12-13",
		"destination":   map[string]string{"protocol": "HTTP", "URI": "http://" + net.JoinHostPort(sandboxHost, port)},
		"types":         []string{"platform"},
		// the least the API allows: the lines appear as soon as they can
		"buffering": map[string]int{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
	})
	req, _ := http.NewRequest(http.MethodPut, base+telemetryAPI, bytes.NewReader(sub))
	req.Header.Set("Lambda-Extension-Identifier", id)
	req.Header.Set("Content-Type", "application/json")
	if _, _, err := do(req); err != nil {
		return fmt.Errorf("telemetry subscription: %w", err)
	}
	fmt.Printf("EXTENSION %s SUBSCRIBED %s\n", name, net.JoinHostPort(sandboxHost, port))
	return nil
}

func receive(w http.ResponseWriter, r *http.Request) {
	var batch []struct {
		Type   string          `json:"type"`
		Record json.RawMessage `json:"record"`
	}
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ev := range batch {
		var rec struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(ev.Record, &rec) // not every record is an object
		fmt.Printf("EXTENSION %s TELEMETRY %s %s\n", name, ev.Type, rec.RequestID)
	}
}

// report tells Lambda why the extension gives up (init/error during Init,
// exit/error after it), then exits.
func report(id, path, errorType string, cause error) {
	fmt.Fprintf(os.Stderr, "EXTENSION %s: %v\n", name, cause)
	body, _ := json.Marshal(map[string]any{"errorMessage": cause.Error(), "errorType": errorType})
	req, _ := http.NewRequest(http.MethodPost, base+extensionAPI+"/"+path, bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Identifier", id)
	req.Header.Set("Lambda-Extension-Function-Error-Type", errorType)
	req.Header.Set("Content-Type", "application/json")
	client.Timeout = 2 * time.Second
	if _, _, err := do(req); err != nil {
		fmt.Fprintf(os.Stderr, "EXTENSION %s: %s: %v\n", name, path, err)
	}
	os.Exit(1)
}

// do sends req and reads the answer, which must be a 2xx.
func do(req *http.Request) ([]byte, *http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("%s: %q", resp.Status, body)
	}
	return body, resp, nil
}

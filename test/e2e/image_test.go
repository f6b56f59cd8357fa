//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestBashCurlImage: an image-sourced Function whose image is the Lambda
// Developer Guide's bash custom runtime (hack/dev/bashimage: bash, curl and
// their libraries, /var/task/bootstrap as entrypoint, a handler that echoes
// the event) answers through the activator with the event it got: the
// HTTP API 2.0 event of the request, which the activator returns as a 200
// application/json (a result without statusCode).
func TestBashCurlImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(devDir, "bash-image.txt"))
	if err != nil {
		t.Fatalf("the bash+curl image that make dev pushes: %v (run make dev)", err)
	}
	img := strings.TrimSpace(string(b))
	t.Logf("image %s", img)
	fn := newFunction(t, "bash", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = img
	})

	for i, body := range []string{"hello from curl", `{"a": "b"}`} {
		u := fmt.Sprintf("%s/%s/%s/bash/echo?n=%d", activator, ns, fn.Name, i)
		start := time.Now()
		resp, err := httpClient.Post(u, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", u, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("POST %q: HTTP %d %s in %s: %.300s", body, resp.StatusCode, resp.Header.Get("Content-Type"), time.Since(start).Round(time.Millisecond), got)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.StatusCode, got)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var ev struct {
			RawPath        string            `json:"rawPath"`
			RawQueryString string            `json:"rawQueryString"`
			Body           string            `json:"body"`
			Headers        map[string]string `json:"headers"`
			RequestContext struct {
				HTTP struct {
					Method string `json:"method"`
				} `json:"http"`
			} `json:"requestContext"`
		}
		if err := json.Unmarshal(got, &ev); err != nil {
			t.Fatalf("the echoed event is not JSON: %v: %s", err, got)
		}
		if ev.RawPath != "/bash/echo" || ev.RawQueryString != fmt.Sprintf("n=%d", i) || ev.Body != body || ev.RequestContext.HTTP.Method != "POST" {
			t.Errorf("echoed event: rawPath %q rawQueryString %q method %q body %q, want /bash/echo n=%d POST %q",
				ev.RawPath, ev.RawQueryString, ev.RequestContext.HTTP.Method, ev.Body, i, body)
		}
	}
}

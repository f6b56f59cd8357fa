//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// viaIngress is make dev's Ingress controller (Traefik, hack/dev/traefik.yaml)
// as a client outside the cluster reaches it: every host name resolves to
// Traefik's Service, whose certificates are signed by make dev's authority.
type viaIngress struct {
	addr       string       // Traefik's Service IP
	podIPs     []string     // Traefik's pods: the activator's peers
	client     *http.Client // dials addr for every host, trusts the authority
	host       string       // the activator Ingress's host (path routing)
	hooksHost  string       // the webhook Ingress's host
	domainHost func(namespace, name string) string
}

var (
	ingressOnce sync.Once
	ingressEnv  *viaIngress
	ingressErr  error
)

// ingress finds the Ingress controller and the chart's Ingresses as make dev
// installed them.
func ingress(t *testing.T) *viaIngress {
	t.Helper()
	ingressOnce.Do(func() { ingressEnv, ingressErr = findIngress() })
	if ingressErr != nil {
		t.Fatalf("the Ingress of make dev: %v (run make dev)", ingressErr)
	}
	return ingressEnv
}

// bashImage is the bash+curl runtime image that make dev pushed.
func bashImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(devDir, "bash-image.txt"))
	if err != nil {
		t.Fatalf("the bash+curl image that make dev pushes: %v (run make dev)", err)
	}
	return strings.TrimSpace(string(b))
}

func findIngress() (*viaIngress, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var svc corev1.Service
	if err := k.Get(ctx, client.ObjectKey{Namespace: "traefik", Name: "traefik"}, &svc); err != nil {
		return nil, fmt.Errorf("Service traefik/traefik: %w", err)
	}
	var podList corev1.PodList
	if err := k.List(ctx, &podList, client.InNamespace("traefik"), client.MatchingLabels{"app.kubernetes.io/name": "traefik"}); err != nil {
		return nil, err
	}
	v := &viaIngress{addr: svc.Spec.ClusterIP}
	for _, p := range podList.Items {
		if p.Status.PodIP != "" {
			v.podIPs = append(v.podIPs, p.Status.PodIP)
		}
	}
	hostOf := func(name string) (string, error) {
		var ing networkingv1.Ingress
		if err := k.Get(ctx, client.ObjectKey{Namespace: systemNS, Name: name}, &ing); err != nil {
			return "", fmt.Errorf("Ingress %s/%s: %w", systemNS, name, err)
		}
		if len(ing.Spec.TLS) == 0 {
			return "", fmt.Errorf("Ingress %s/%s has no tls section", systemNS, name)
		}
		for _, r := range ing.Spec.Rules {
			if r.Host != "" {
				return r.Host, nil
			}
		}
		return "", fmt.Errorf("Ingress %s/%s has no host", systemNS, name)
	}
	var err error
	if v.host, err = hostOf("lambdapod-activator"); err != nil {
		return nil, err
	}
	if v.hooksHost, err = hostOf("lambdapod-webhook"); err != nil {
		return nil, err
	}
	domain := envOr("DEV_DOMAIN", "lambdapod.test")
	v.domainHost = func(namespace, name string) string { return name + "." + namespace + "." + domain }

	pem, err := os.ReadFile(filepath.Join(devDir, "tls", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("make dev's certificate authority: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s/tls/ca.crt: no certificate", devDir)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	v.client = &http.Client{
		Timeout: 3 * time.Minute,
		Transport: &http.Transport{
			// As DNS would: every name is the Ingress controller.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				return d.DialContext(ctx, network, net.JoinHostPort(v.addr, port))
			},
			TLSClientConfig:     &tls.Config{RootCAs: roots},
			MaxIdleConnsPerHost: 10,
		},
	}
	return v, nil
}

// TestIngress: the topology users run, a client outside the cluster calling
// through an Ingress controller (Traefik) that terminates TLS, with the
// chart's activator Ingress and host routing. What the caller gets: a cold
// start from zero at the Function's status.url over HTTPS; a request that
// outlasts the proxy's default timeouts; a streamed response arriving line
// by line; the request as the Ingress saw it in the event (sourceIp,
// domainName, the forwarded scheme), which a caller going around the
// Ingress cannot forge; a body over 6 MB refused with a clear answer. (The
// push webhook through its Ingress: TestGitPushRebuilds.)
func TestIngress(t *testing.T) {
	in := ingress(t)
	// In the namespace of make dev's function: the Ingress certificate
	// names *.<that namespace>.<domain> (a wildcard covers one label).
	name := "ingress-" + strings.TrimPrefix(ns, "lambdapod-e2e-")
	fn := newFunctionIn(t, devFnNS, name, func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Runtime.Timeout = &metav1.Duration{Duration: 90 * time.Second}
	})
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") == "" {
			_ = k.Delete(context.Background(), fn)
		}
	})
	url := "https://" + in.domainHost(devFnNS, name) + "/"
	if fn.Status.URL != url {
		t.Fatalf("status.url = %q, want the Ingress URL %q", fn.Status.URL, url)
	}

	t.Run("ColdStartOverHTTPSWithHostRouting", func(t *testing.T) {
		if all, _ := pods(t, devFnNS, name); all != 0 {
			t.Fatalf("%d pods before the first request, want 0", all)
		}
		start := time.Now()
		resp, err := in.client.Get(url + "cold?name=ingress")
		if err != nil {
			t.Fatalf("GET %scold: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("GET %scold from zero: HTTP %d in %s: %s", url, resp.StatusCode, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(body)))
		if resp.StatusCode != 200 || string(body) != helloBody("ingress", "/cold", name) {
			t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, helloBody("ingress", "/cold", name))
		}
		if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 || resp.TLS.ServerName != in.domainHost(devFnNS, name) {
			t.Errorf("TLS %+v: want a verified chain for %s", resp.TLS, in.domainHost(devFnNS, name))
		}
		if all, _ := pods(t, devFnNS, name); all < 1 {
			t.Errorf("%d pods after the cold start, want 1 or more", all)
		}
	})

	// Longer than Traefik's default read timeout (60s, after which it
	// cancels the request): the Ingress must let the function's own
	// timeout (90s here) rule. It runs while the other cases go on.
	long := make(chan string, 1)
	go func() {
		start := time.Now()
		resp, err := in.client.Get(url + "long?name=patient&sleep=70s")
		if err != nil {
			long <- fmt.Sprintf("GET %slong: %v after %s", url, err, time.Since(start).Round(time.Millisecond))
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("GET %slong?sleep=70s: HTTP %d after %s", url, resp.StatusCode, took.Round(time.Millisecond))
		switch {
		case resp.StatusCode != 200 || string(body) != helloBody("patient", "/long", name):
			long <- fmt.Sprintf("GET %slong?sleep=70s: %d %q after %s, want 200 %q", url, resp.StatusCode, body, took.Round(time.Millisecond), helloBody("patient", "/long", name))
		case took < 70*time.Second:
			long <- fmt.Sprintf("answered after %s, before the function's 70s", took)
		default:
			long <- ""
		}
	}()

	t.Run("StreamedResponseArrivesInChunks", func(t *testing.T) {
		// The bash runtime's streaming handler (hack/dev/bashimage
		// stream.sh): a line every 1.5s, posted with the Runtime API's
		// streaming response mode, in the HTTP integration format.
		fn := newFunction(t, "ingress-stream", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = bashImage(t)
			fn.Spec.Runtime.Handler = "stream.handler"
			fn.Spec.Runtime.Env = []corev1.EnvVar{{Name: "STREAM_EVERY", Value: "1.5"}}
		})
		u := fmt.Sprintf("https://%s/%s/%s/stream", in.host, ns, fn.Name)
		start := time.Now()
		resp, err := in.client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		headers := time.Since(start)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("HTTP %d %s: %q, want 200 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var at []time.Duration
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			at = append(at, time.Since(start))
			t.Logf("+%s %s", at[len(at)-1].Round(time.Millisecond), sc.Text())
			if want := fmt.Sprintf("line %d of 3", len(at)); sc.Text() != want {
				t.Errorf("line %d %q, want %q", len(at), sc.Text(), want)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if len(at) != 3 {
			t.Fatalf("%d lines, want 3", len(at))
		}
		t.Logf("GET %s: headers after %s, lines after %s", u, headers.Round(time.Millisecond), at)
		// The function writes a line every 1.5s: buffered by the Ingress
		// or the activator, all three would arrive together at the end.
		if gap := at[2] - at[0]; gap < 2*time.Second {
			t.Errorf("the first and last lines arrived %s apart, want about 3s: the response was buffered on the way", gap.Round(time.Millisecond))
		}
		if at[0] > headers+time.Second {
			t.Errorf("the first line arrived %s after the headers, want at once", (at[0] - headers).Round(time.Millisecond))
		}
	})

	t.Run("ForwardedHeadersAsTheIngressSawThem", func(t *testing.T) {
		echo := newFunction(t, "ingress-echo", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = bashImage(t)
		})
		// What a client claims: to be 203.0.113.7, on port 8080, and the
		// scheme it did not use.
		forged := func(req *http.Request) {
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			req.Header.Set("X-Forwarded-Port", "8080")
			req.Header.Set("X-Real-Ip", "203.0.113.7")
			if req.URL.Scheme == "https" {
				req.Header.Set("X-Forwarded-Proto", "http")
			} else {
				req.Header.Set("X-Forwarded-Proto", "https")
			}
		}
		type event struct {
			Headers        map[string]string `json:"headers"`
			RequestContext struct {
				DomainName string `json:"domainName"`
				HTTP       struct {
					SourceIP string `json:"sourceIp"`
				} `json:"http"`
			} `json:"requestContext"`
		}
		call := func(c *http.Client, u string) event {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			forged(req)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", u, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
			}
			var ev event
			if err := json.Unmarshal(body, &ev); err != nil {
				t.Fatalf("the echoed event: %v: %s", err, body)
			}
			t.Logf("GET %s: sourceIp %s domainName %s x-forwarded-for %q -proto %q -port %q", u, ev.RequestContext.HTTP.SourceIP,
				ev.RequestContext.DomainName, ev.Headers["x-forwarded-for"], ev.Headers["x-forwarded-proto"], ev.Headers["x-forwarded-port"])
			return ev
		}

		// Through the Ingress, path routing on its host: the client as
		// Traefik saw it (Traefik drops what the client claimed and sends
		// X-Real-Ip and X-Forwarded-For of its own), https on 443.
		ev := call(in.client, fmt.Sprintf("https://%s/%s/%s/echo", in.host, ns, echo.Name))
		src := ev.RequestContext.HTTP.SourceIP
		if src == "203.0.113.7" || src == "" || src != ev.Headers["x-real-ip"] {
			t.Errorf("sourceIp %q through the Ingress, want the client's address as Traefik saw it (x-real-ip %q), not the forged one", src, ev.Headers["x-real-ip"])
		}
		for _, ip := range in.podIPs {
			if src == ip {
				t.Errorf("sourceIp %q is Traefik's pod: the activator did not believe its forwarded headers", src)
			}
		}
		if ev.RequestContext.DomainName != in.host {
			t.Errorf("domainName %q, want the host the client asked for, %q", ev.RequestContext.DomainName, in.host)
		}
		if p := ev.Headers["x-forwarded-proto"]; p != "https" {
			t.Errorf("x-forwarded-proto %q, want https (TLS ended at the Ingress)", p)
		}
		if p := ev.Headers["x-forwarded-port"]; p != "443" {
			t.Errorf("x-forwarded-port %q, want 443", p)
		}

		// Around the Ingress, straight to the activator's Service: the same
		// claims are not believed, sourceIp is the connection's peer.
		ev = call(httpClient, fmt.Sprintf("%s/%s/%s/echo", activator, ns, echo.Name))
		if src := ev.RequestContext.HTTP.SourceIP; src == "203.0.113.7" || src == "" {
			t.Errorf("sourceIp %q around the Ingress, want the peer's address, not the forged X-Forwarded-For", src)
		}
		if p := ev.Headers["x-forwarded-proto"]; p != "http" {
			t.Errorf("x-forwarded-proto %q around the Ingress, want http (the connection's own, not the forged https)", p)
		}
		if p := ev.Headers["x-forwarded-port"]; p == "8080" {
			t.Errorf("x-forwarded-port %q around the Ingress: the forged header was believed", p)
		}
	})

	t.Run("BodyOver6MBRefused", func(t *testing.T) {
		body := strings.Repeat("x", 7<<20)
		resp, err := in.client.Post(url+"upload", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST 7 MiB to %supload: %v", url, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("POST 7 MiB: HTTP %d %s", resp.StatusCode, got)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(got), "6291456") {
			t.Errorf("HTTP %d %q, want 413 naming the 6291456-byte limit", resp.StatusCode, got)
		}
	})

	select {
	case msg := <-long:
		if msg != "" {
			t.Errorf("RequestLongerThanTheProxysDefaultTimeouts: %s", msg)
		}
	case <-time.After(3 * time.Minute):
		t.Errorf("RequestLongerThanTheProxysDefaultTimeouts: no answer in 3 minutes")
	}
}

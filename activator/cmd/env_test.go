package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdapod/lambdapod/internal/testproc"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/invokekey"
	"github.com/lambdapod/lambdapod/internal/stats"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// The activator's configuration is parsed inside run(), which goes on to
// serve: there is no function that returns the parsed options. These tests
// run the activator binary and look at what it does.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdapod-activator-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "activator")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// activator is the binary running.
type activator struct {
	cmd    *exec.Cmd
	out    *testproc.Buffer
	exited chan struct{}
	err    error
}

// start runs the activator with args and an environment of env alone (nothing of
// this process' ACTIVATOR_*, KUBECONFIG, POD_NAME or POD_NAMESPACE).
func start(t *testing.T, env map[string]string, args ...string) *activator {
	t.Helper()
	a := &activator{cmd: exec.Command(binary, args...), out: &testproc.Buffer{}, exited: make(chan struct{})}
	a.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		a.cmd.Env = append(a.cmd.Env, k+"="+v)
	}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("activator %v:\n%s", args, a.out.String())
		}
	})
	return a
}

// exit waits for the process to end and returns its exit code and output.
func (a *activator) exit(t *testing.T) (int, string) {
	t.Helper()
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the activator did not exit:\n%s", a.out.String())
	}
	return a.cmd.ProcessState.ExitCode(), a.out.String()
}

// serving waits until the admin listener at admin says ready.
func (a *activator) serving(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-a.exited:
			t.Fatalf("the activator exited:\n%s", a.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activator's admin listener %s not ready after 60s:\n%s", admin, a.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// documentedEnv is the documented fallback of a flag.
func documentedEnv(flag string) string {
	return "ACTIVATOR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Every flag's value comes from its ACTIVATOR_ variable when the command
// line does not set it: -h shows the value each flag has before the
// command line is read. A flag added without a fallback, or read from a
// misspelt variable, fails here.
func TestEveryFlagFallsBackToItsEnvironmentVariable(t *testing.T) {
	// The value set through the environment and how -h shows it ("" for
	// a false boolean, which -h shows without a default; the documented
	// defaults of the three booleans are true).
	cases := map[string]struct{ env, shown string }{
		"listen":                 {":18080", `":18080"`},
		"admin-listen":           {":19090", `":19090"`},
		"domain":                 {"fn.example.com", `"fn.example.com"`},
		"default-namespace":      {"team-a", `"team-a"`},
		"max-connections":        {"7", "7"},
		"max-held-bytes":         {"4096", "4096"},
		"body-timeout":           {"300ms", "300ms"},
		"max-queue":              {"3", "3"},
		"activation-timeout":     {"600ms", "600ms"},
		"timeout-grace":          {"2s", "2s"},
		"overflow-status":        {"503", "503"},
		"retry-after":            {"3s", "3s"},
		"region":                 {"eu-west-1", `"eu-west-1"`},
		"autoscaler-url":         {"http://as.example:8083/v1/stats", `"http://as.example:8083/v1/stats"`},
		"autoscaler-token-file":  {"/tmp/token", `"/tmp/token"`},
		"report-interval":        {"250ms", "250ms"},
		"drain-delay":            {"1.5s", "1.5s"},
		"shutdown-timeout":       {"1m", "1m0s"},
		"endpointslice-selector": {"team=x", `"team=x"`},
		"namespace":              {"team-b", `"team-b"`},
		"pod-port":               {"9999", "9999"},
		"probe-not-ready":        {"false", ""},
		"id":                     {"act-env", `"act-env"`},
		"invoke-auth":            {"false", ""},
		"auth-cache-ttl":         {"42s", "42s"},
		"system-namespace":       {"sys-env", `"sys-env"`},
		"invoke-tokens":          {"false", ""},
		"kubeconfig":             {"/tmp/kubeconfig", `"/tmp/kubeconfig"`},
		"log-level":              {"debug", `"debug"`},
		"event-queue":            {"nats://nats.example:4222", `"nats://nats.example:4222"`},
		"event-concurrency":      {"9", "9"},
		"event-retry-delay":      {"5s", "5s"},
		"event-ack-wait":         {"12s", "12s"},
		"event-queue-replicas":   {"3", "3"},
		"event-queue-max-bytes":  {"1048576", "1048576"},
		// A list flag shows no default; TestTrustedProxiesFromTheEnvironment.
		"trusted-proxies": {"10.0.0.0/8", ""},
	}
	env := map[string]string{}
	for name, c := range cases {
		env[documentedEnv(name)] = c.env
	}
	code, out := start(t, env, "-h").exit(t)
	if code != 0 {
		t.Fatalf("-h exited %d:\n%s", code, out)
	}
	shown := defaults(out)
	for name, def := range shown {
		c, ok := cases[name]
		if !ok {
			t.Errorf("flag -%s (default %s) has no case here: add its %s", name, def, documentedEnv(name))
			continue
		}
		if def != c.shown {
			t.Errorf("-%s with %s=%s: the value before the command line is %s, want %s", name, documentedEnv(name), c.env, def, c.shown)
		}
	}
	for name := range cases {
		if _, ok := shown[name]; !ok {
			t.Errorf("no flag -%s in -h", name)
		}
	}
}

var defaultRE = regexp.MustCompile(`\(default (.*)\)$`)

// defaults reads flag.PrintDefaults' output: each flag's name and shown
// default ("" when none is shown).
func defaults(usage string) map[string]string {
	out := map[string]string{}
	name := ""
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			name = strings.Fields(line[3:])[0]
			out[name] = ""
		case name != "" && strings.HasPrefix(line, "    \t"):
			if m := defaultRE.FindStringSubmatch(line); m != nil {
				out[name] = m[1]
			}
		}
	}
	return out
}

// Options checked before the activator connects anywhere: a bad value
// from the environment is refused as the same value on the command line
// would be, and a flag given on the command line wins.
func TestEnvironmentValuesAreCheckedAndFlagsWin(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"overflow status from the environment", map[string]string{"ACTIVATOR_OVERFLOW_STATUS": "500"}, nil,
			1, "-overflow-status must be 429 or 503, not 500"},
		{"overflow status: the flag wins", map[string]string{"ACTIVATOR_OVERFLOW_STATUS": "500", "ACTIVATOR_KUBECONFIG": missing},
			[]string{"-overflow-status=503"}, 1, "kubernetes client config: stat " + missing},
		{"log level from the environment", map[string]string{"ACTIVATOR_LOG_LEVEL": "chatty"}, nil,
			1, `-log-level: slog: level string "chatty": unknown name`},
		{"log level: the flag wins", map[string]string{"ACTIVATOR_LOG_LEVEL": "chatty", "ACTIVATOR_KUBECONFIG": missing},
			[]string{"-log-level=warn"}, 1, "kubernetes client config: stat " + missing},
		{"kubeconfig: the flag wins", map[string]string{"ACTIVATOR_KUBECONFIG": missing},
			[]string{"-kubeconfig=" + missing + "-flag"}, 1, "kubernetes client config: stat " + missing + "-flag"},
		// A value that does not parse is refused as a bad flag is, not
		// replaced by the default without a word.
		{"a duration that does not parse", map[string]string{"ACTIVATOR_ACTIVATION_TIMEOUT": "2 minutes"}, nil,
			2, `ACTIVATOR_ACTIVATION_TIMEOUT="2 minutes": not a duration`},
		{"a number that does not parse", map[string]string{"ACTIVATOR_MAX_QUEUE": "lots"}, nil,
			2, `ACTIVATOR_MAX_QUEUE="lots": not a whole number`},
		{"a boolean that does not parse", map[string]string{"ACTIVATOR_INVOKE_AUTH": "maybe"}, nil,
			2, `ACTIVATOR_INVOKE_AUTH="maybe": not true or false`},
		{"a value that does not parse: the flag wins", map[string]string{"ACTIVATOR_ACTIVATION_TIMEOUT": "2 minutes", "ACTIVATOR_KUBECONFIG": missing},
			[]string{"-activation-timeout=1m"}, 1, "kubernetes client config: stat " + missing},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := start(t, c.env, c.args...).exit(t)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit %d with:\n%s\nwant exit %d with %q", code, out, c.code, c.want)
			}
		})
	}
}

// -trusted-proxies is a list, parsed apart from the other flags: a bad
// value from the environment is refused.
func TestTrustedProxiesFromTheEnvironment(t *testing.T) {
	code, out := start(t, map[string]string{"ACTIVATOR_TRUSTED_PROXIES": "10.0.0.0/8, not-a-cidr"}).exit(t)
	if code != 2 || !strings.Contains(out, `trusted proxy "not-a-cidr": want a CIDR such as 10.0.0.0/8 or an address`) {
		t.Errorf("exit %d with:\n%s\nwant exit 2 naming the bad proxy", code, out)
	}
}

// As for every flag, -trusted-proxies on the command line wins over
// ACTIVATOR_TRUSTED_PROXIES (docs/activator.md, Configuration).
func TestTrustedProxiesFlagWinsOverTheEnvironment(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	code, out := start(t, map[string]string{"ACTIVATOR_TRUSTED_PROXIES": "not-a-cidr", "ACTIVATOR_KUBECONFIG": missing},
		"-trusted-proxies", "10.0.0.0/8").exit(t)
	if code != 1 || !strings.Contains(out, "kubernetes client config: stat "+missing) {
		t.Errorf("-trusted-proxies 10.0.0.0/8 with ACTIVATOR_TRUSTED_PROXIES=not-a-cidr: exit %d with:\n%s\nwant the flag to win (on to the kubeconfig)", code, out)
	}
}

// The activator configured through the environment alone serves as those
// values say; a second one given the same environment and contradicting
// flags serves as the flags say. Against a real API server; no function
// has a pod, so requests that reach the wait are held and time out.
func TestTheEnvironmentConfiguresTheActivatorAndFlagsWin(t *testing.T) {
	e := testenv.Start(t)
	ctx := context.Background()
	for _, ns := range []string{"team-a", "team-b", "sys-env"} {
		if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// team-a/fn takes only authorised callers (RBAC, the default);
	// team-b/fn anyone.
	for ns, auth := range map[string]lambdapodv1alpha1.AuthType{"team-a": "", "team-b": lambdapodv1alpha1.AuthNone} {
		f := &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: ns},
			Spec: lambdapodv1alpha1.FunctionSpec{
				Source:   lambdapodv1alpha1.Source{Image: "example.com/fn:1"},
				Runtime:  lambdapodv1alpha1.RuntimeSpec{Concurrency: 1, Timeout: &metav1.Duration{Duration: 5 * time.Second}},
				AuthType: auth,
			},
		}
		if err := e.Client.Create(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := e.Kubeconfig(t)
	reports := newReportSink(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-env\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(listen, admin string) map[string]string {
		return map[string]string{
			"ACTIVATOR_LISTEN":                listen,
			"ACTIVATOR_ADMIN_LISTEN":          admin,
			"ACTIVATOR_KUBECONFIG":            kubeconfig,
			"ACTIVATOR_NAMESPACE":             "team-a",
			"ACTIVATOR_DEFAULT_NAMESPACE":     "team-a",
			"ACTIVATOR_DOMAIN":                "fn.example.com",
			"ACTIVATOR_REGION":                "eu-west-1",
			"ACTIVATOR_ACTIVATION_TIMEOUT":    "2s",
			"ACTIVATOR_MAX_QUEUE":             "1",
			"ACTIVATOR_OVERFLOW_STATUS":       "503",
			"ACTIVATOR_RETRY_AFTER":           "3s",
			"ACTIVATOR_MAX_HELD_BYTES":        "4096",
			"ACTIVATOR_BODY_TIMEOUT":          "300ms",
			"ACTIVATOR_INVOKE_AUTH":           "false",
			"ACTIVATOR_INVOKE_TOKENS":         "true",
			"ACTIVATOR_SYSTEM_NAMESPACE":      "sys-env",
			"ACTIVATOR_ID":                    "act-env",
			"ACTIVATOR_AUTOSCALER_URL":        reports.url,
			"ACTIVATOR_AUTOSCALER_TOKEN_FILE": tokenFile,
			"ACTIVATOR_REPORT_INTERVAL":       "100ms",
			"ACTIVATOR_DRAIN_DELAY":           "3s",
			"ACTIVATOR_LOG_LEVEL":             "debug",
		}
	}
	invoke := func(base, body string) answer {
		return do(t, "POST", base+"/2015-03-31/functions/fn/invocations", "", body)
	}
	big := `{"pad":"` + strings.Repeat("x", 5000) + `"}`

	t.Run("FromTheEnvironment", func(t *testing.T) {
		listen, admin := testproc.FreeAddr(t), testproc.FreeAddr(t)
		a := start(t, env(listen, admin))
		a.serving(t, admin)
		base := "http://" + listen

		// -invoke-tokens, -system-namespace: the activator made the invoke
		// key Secret there.
		var key corev1.Secret
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: "sys-env", Name: invokekey.Name}, &key); err != nil {
			t.Errorf("the invoke key Secret in sys-env: %v", err)
		}
		// -region.
		got := do(t, "POST", base+"/2015-03-31/functions/missing/invocations", "", `{}`)
		if got.code != 404 || !strings.Contains(got.body, "Function not found: arn:aws:lambda:eu-west-1:000000000000:function:missing") {
			t.Errorf("Invoke missing: %d %s, want 404 naming region eu-west-1", got.code, got.body)
		}
		// -namespace: Functions of other namespaces are not watched.
		got = do(t, "GET", base+"/team-b/fn/", "", "")
		if got.code != 404 || !strings.Contains(got.body, `no function \"fn\" in namespace \"team-b\"`) {
			t.Errorf("team-b/fn with -namespace team-a: %d %s, want 404", got.code, got.body)
		}
		// -max-held-bytes: a body over it is refused, with the overflow
		// status, before it is read.
		got = invoke(base, big)
		if got.code != 503 || got.header.Get("X-Amzn-ErrorType") != "ServiceException" || !strings.Contains(got.body, "request bodies at once") {
			t.Errorf("a 5 kB body with -max-held-bytes 4096: %d %s, want 503", got.code, got.body)
		}
		// -default-namespace, -invoke-auth (team-a/fn is RBAC: no
		// credentials asked for), -max-queue, -overflow-status,
		// -retry-after, -activation-timeout.
		held := make(chan answer, 1)
		go func() { held <- invoke(base, `{}`) }()
		waitQueued(t, admin, "team-a", 1)
		got = invoke(base, `{}`)
		if got.code != 503 || got.header.Get("X-Amzn-ErrorType") != "ServiceException" || got.header.Get("Retry-After") != "3" {
			t.Errorf("past -max-queue 1: %d %v %s, want 503 with Retry-After: 3", got.code, got.header, got.body)
		}
		if got := <-held; got.code != 504 || got.header.Get("X-Amzn-ErrorType") != "ServiceException" ||
			!strings.Contains(got.body, "activation timed out: function team-a/fn had no ready pod after 2s") {
			t.Errorf("the held Invoke of fn: %d %v %s, want 504 after the 2s activation timeout", got.code, got.header, got.body)
		}
		// -domain.
		got = do(t, "GET", base+"/", "fn.team-a.fn.example.com", "")
		if got.code != 504 || !strings.Contains(got.body, "function team-a/fn had no ready pod after 2s") {
			t.Errorf("host fn.team-a.fn.example.com: %d %s, want the function's 504", got.code, got.body)
		}
		// -body-timeout: a body that never comes closes the connection.
		// It is told so (not 200 and an empty body, as net/http says for
		// nothing written), on the Invoke API as the sidecar says it.
		if d, answer := bodyTimeout(t, listen, 5*time.Second); d < 300*time.Millisecond || d > 3*time.Second ||
			!strings.HasPrefix(answer, "HTTP/1.1 400 ") || !strings.Contains(answer, "InvalidRequestContentException") ||
			!strings.Contains(answer, "did not arrive within 300ms") {
			t.Errorf("a body that never came: connection closed after %v with %q, want 400 InvalidRequestContentException after 300ms", d, answer)
		}
		// -id, -autoscaler-url, -autoscaler-token-file, -report-interval.
		reports.want(t, "act-env", "Bearer tok-env", 100*time.Millisecond)
		// -log-level: the refused reports are logged at debug.
		if !strings.Contains(a.out.String(), `"level":"DEBUG","msg":"autoscaler report failed"`) {
			t.Errorf("no debug log with -log-level debug")
		}
		// -drain-delay: the listener serves for 3s after SIGTERM.
		stopped := time.Now()
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		waitNotReady(t, admin)
		if got := do(t, "GET", base+"/team-a/nope/", "", ""); got.code != 404 {
			t.Errorf("a request during the 3s drain delay: %d %s", got.code, got.body)
		}
		if code, _ := a.exit(t); code != 0 || time.Since(stopped) < 3*time.Second || time.Since(stopped) > 4800*time.Millisecond {
			t.Errorf("exit %d %v after SIGTERM, want 0 after the 3s drain delay (not the default 5s)", code, time.Since(stopped))
		}
	})

	t.Run("FlagsWin", func(t *testing.T) {
		listen, admin := testproc.FreeAddr(t), testproc.FreeAddr(t)
		envListen, envAdmin := testproc.FreeAddr(t), testproc.FreeAddr(t)
		other := filepath.Join(dir, "other-token")
		if err := os.WriteFile(other, []byte("tok-flag\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := env(envListen, envAdmin)
		env["ACTIVATOR_KUBECONFIG"] = filepath.Join(dir, "no-such-kubeconfig")
		delete(env, "ACTIVATOR_SYSTEM_NAMESPACE") // the environment's invoke tokens would need it
		a := start(t, env, "-listen", listen, "-admin-listen", admin, "-kubeconfig", kubeconfig,
			"-namespace=", "-default-namespace", "team-b", "-domain", "other.example", "-region", "ap-south-1",
			"-activation-timeout", "3s", "-max-queue", "2", "-overflow-status", "429", "-retry-after", "2s",
			"-max-held-bytes", "1048576", "-body-timeout", "10s", "-invoke-auth=true", "-invoke-tokens=false",
			"-id", "act-flag", "-autoscaler-token-file", other, "-report-interval", "1s",
			"-drain-delay", "100ms", "-log-level", "info")
		a.serving(t, admin)
		base := "http://" + listen
		if c, err := net.DialTimeout("tcp", envListen, time.Second); err == nil {
			c.Close()
			t.Errorf("something listens on %s, the ACTIVATOR_LISTEN that -listen overrides", envListen)
		}

		// -invoke-auth=true: team-a/fn asks for credentials; -domain and
		// -namespace= route to it.
		got := do(t, "GET", base+"/", "fn.team-a.other.example", "")
		if got.code != 401 {
			t.Errorf("host fn.team-a.other.example: %d %s, want 401 from team-a/fn", got.code, got.body)
		}
		got = do(t, "GET", base+"/", "fn.team-a.fn.example.com", "")
		if got.code != 404 || !strings.Contains(got.body, "no function in the request") {
			t.Errorf("host fn.team-a.fn.example.com with -domain other.example: %d %s, want 404", got.code, got.body)
		}
		// -region.
		got = do(t, "POST", base+"/2015-03-31/functions/missing/invocations", "", `{}`)
		if got.code != 404 || !strings.Contains(got.body, "arn:aws:lambda:ap-south-1:000000000000:function:missing") {
			t.Errorf("Invoke missing: %d %s, want 404 naming region ap-south-1", got.code, got.body)
		}
		// -default-namespace team-b (public), -max-held-bytes (a 5 kB body
		// is held), -max-queue 2, -overflow-status 429, -retry-after 2s,
		// -activation-timeout 3s.
		held := make(chan answer, 2)
		go func() { held <- invoke(base, big) }()
		go func() { held <- invoke(base, `{}`) }()
		waitQueued(t, admin, "team-b", 2)
		got = invoke(base, `{}`)
		if got.code != 429 || got.header.Get("X-Amzn-ErrorType") != "TooManyRequestsException" || got.header.Get("Retry-After") != "2" ||
			!strings.Contains(got.body, "too many requests are waiting for function team-b/fn") {
			t.Errorf("past -max-queue 2: %d %v %s, want 429 with Retry-After: 2", got.code, got.header, got.body)
		}
		for i := 0; i < 2; i++ {
			if got := <-held; got.code != 504 || !strings.Contains(got.body, "function team-b/fn had no ready pod after 3s") {
				t.Errorf("a held Invoke of fn: %d %s, want 504 after the 3s activation timeout", got.code, got.body)
			}
		}
		// -body-timeout 10s: the connection is still open after a second.
		if d, _ := bodyTimeout(t, listen, time.Second); d < time.Second {
			t.Errorf("a body that never came: connection closed after %v, want -body-timeout 10s", d)
		}
		reports.want(t, "act-flag", "Bearer tok-flag", time.Second)
		if strings.Contains(a.out.String(), `"level":"DEBUG"`) {
			t.Errorf("debug logs with -log-level info")
		}
		stopped := time.Now()
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		if code, _ := a.exit(t); code != 0 || time.Since(stopped) > 2500*time.Millisecond {
			t.Errorf("exit %d %v after SIGTERM, want 0 after -drain-delay 100ms, not the 3s of the environment", code, time.Since(stopped))
		}
	})
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, host, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// waitQueued waits until the activator's metrics show n requests held for
// ns/fn.
func waitQueued(t *testing.T, admin, ns string, n int) {
	t.Helper()
	want := fmt.Sprintf(`lambdapod_activator_queued_requests{function="fn",namespace="%s"} %d`, ns, n)
	waitMetrics(t, admin, func(m string) bool { return strings.Contains(m, want+"\n") }, want)
}

func waitMetrics(t *testing.T, admin string, cond func(string) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if cond(string(b)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNotReady waits until /readyz fails (the activator is stopping).
func waitNotReady(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not fail within 10s of SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bodyTimeout sends an Invoke call's head announcing a body that never
// comes and returns when the activator closed the connection, or limit.
// bodyTimeout sends an Invoke call whose body never comes and returns how
// long the activator took to answer and close the connection, and what it
// answered.
func bodyTimeout(t *testing.T, addr string, limit time.Duration) (time.Duration, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(start.Add(limit))
	answer, _ := io.ReadAll(c)
	return time.Since(start), string(answer)
}

// reportSink is an autoscaler's stats endpoint that records the reports
// and refuses them (so that the activator logs each failure at debug).
type reportSink struct {
	url string
	mu  sync.Mutex
	got []report
}

type report struct {
	at            time.Time
	activator     string
	authorization string
}

func newReportSink(t *testing.T) *reportSink {
	s := &reportSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep stats.Report
		_ = json.NewDecoder(r.Body).Decode(&rep)
		s.mu.Lock()
		s.got = append(s.got, report{time.Now(), rep.Activator, r.Header.Get("Authorization")})
		s.mu.Unlock()
		http.Error(w, "refused by the test", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + stats.Path
	return s
}

// want waits for 4 more reports of activator id, with the bearer token,
// and checks that they come every interval (not every second, the
// default, nor every 100ms, the environment's, when a flag said
// otherwise).
func (s *reportSink) want(t *testing.T, id, authorization string, interval time.Duration) {
	t.Helper()
	since := time.Now()
	deadline := since.Add(15 * time.Second)
	for {
		var mine []report
		s.mu.Lock()
		for _, r := range s.got {
			if r.activator == id && r.at.After(since) {
				mine = append(mine, r)
			}
		}
		s.mu.Unlock()
		if len(mine) >= 4 {
			for _, r := range mine {
				if r.authorization != authorization {
					t.Errorf("a report of %s with Authorization %q, want %q", id, r.authorization, authorization)
				}
			}
			if gap := mine[3].at.Sub(mine[0].at) / 3; gap < interval*7/10 || gap > interval*3 {
				t.Errorf("reports of %s every %v, want every %v", id, gap, interval)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reports of %s within 15s, want 4", len(mine), id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

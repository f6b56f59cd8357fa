// Command activator is lambdapod's HTTP entry point: it routes requests to
// functions, holds them while a function scales from zero, balances them by
// free concurrency, enforces timeouts and speaks the Lambda Invoke API.
//
// Every flag has an environment variable fallback (ACTIVATOR_ + the flag's
// name in upper case with '-' as '_'); a flag given on the command line wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lambdapod/lambdapod/activator/auth"
	"github.com/lambdapod/lambdapod/activator/server"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
	"github.com/lambdapod/lambdapod/internal/invokekey"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "activator:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v
	}
	return def
}

// envErrs holds the environment values that did not parse, by flag name:
// refused after flag.Parse, as a bad flag is, unless the flag was given.
var envErrs = map[string]error{}

func envDuration(name string, def time.Duration) time.Duration {
	if v := env(name, ""); v != "" {
		d, err := time.ParseDuration(v)
		if err == nil {
			return d
		}
		envErrs[name] = fmt.Errorf("%s=%q: not a duration (e.g. 30s, 2m)", envName(name), v)
	}
	return def
}

func envInt(name string, def int) int {
	if v := env(name, ""); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil {
			return n
		}
		envErrs[name] = fmt.Errorf("%s=%q: not a whole number", envName(name), v)
	}
	return def
}

func envBool(name string, def bool) bool {
	if v := env(name, ""); v != "" {
		b, err := strconv.ParseBool(v)
		if err == nil {
			return b
		}
		envErrs[name] = fmt.Errorf("%s=%q: not true or false", envName(name), v)
	}
	return def
}

func envName(flagName string) string {
	return "ACTIVATOR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// checkEnv exits as flag.Parse does on a bad flag (status 2) when an
// environment value did not parse and no flag replaced it.
func checkEnv(fs *flag.FlagSet) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	bad := false
	for name, err := range envErrs {
		if !given[name] {
			fmt.Fprintln(os.Stderr, "activator:", err)
			bad = true
		}
	}
	if bad {
		os.Exit(2)
	}
}

func run() error {
	hostname, _ := os.Hostname()
	if p := os.Getenv("POD_NAME"); p != "" {
		hostname = p
	}
	var (
		cfg        server.Config
		kubeconfig string
		logLevel   string
		overflow   int
		podPort    int
		probe      bool
	)
	fs := flag.CommandLine
	fs.StringVar(&cfg.Listen, "listen", env("listen", ":8080"), "address of the request listener (HTTP routes and the Lambda Invoke API)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", env("admin-listen", ":9090"), "address of /healthz, /readyz and /metrics")
	fs.StringVar(&cfg.Handler.Route.Domain, "domain", env("domain", ""), "enables host routing {function}.{namespace}.<domain> (path routing /{namespace}/{function}/ always works)")
	fs.StringVar(&cfg.Handler.Route.DefaultNamespace, "default-namespace", env("default-namespace", "default"), "namespace of Invoke API function names without a namespace")
	fs.IntVar(&cfg.MaxConnections, "max-connections", envInt("max-connections", 20000), "open client connections at most; more wait to be accepted (0: no cap)")
	fs.Func("trusted-proxies", "comma-separated CIDRs of the proxies in front of the activator (the Ingress) whose X-Forwarded-For/-Proto/-Port are believed; from anyone else sourceIp is the peer's address [trusted-proxies]", func(v string) error {
		return parsePrefixes(v, &cfg.Handler.TrustedProxies)
	})
	if v := env("trusted-proxies", ""); v != "" {
		if err := parsePrefixes(v, &cfg.Handler.TrustedProxies); err != nil {
			envErrs["trusted-proxies"] = fmt.Errorf("%s: %w", envName("trusted-proxies"), err)
		}
	}
	fs.Int64Var(&cfg.Handler.MaxHeldBytes, "max-held-bytes", int64(envInt("max-held-bytes", 128<<20)), "request bodies (and events made of them) held at once, in bytes; a request past it is refused before its body is read, with the -overflow-status")
	fs.DurationVar(&cfg.Handler.BodyTimeout, "body-timeout", envDuration("body-timeout", 30*time.Second), "longest a client may take to send a request's body")
	fs.IntVar(&cfg.MaxQueue, "max-queue", envInt("max-queue", 1000), "requests held per function while it has no free pod slot; more are refused (see -overflow-status)")
	fs.DurationVar(&cfg.Handler.ActivationTimeout, "activation-timeout", envDuration("activation-timeout", 2*time.Minute), "longest a request waits for a free slot on a ready pod (cold start included); then 504")
	fs.DurationVar(&cfg.Handler.TimeoutGrace, "timeout-grace", envDuration("timeout-grace", time.Second), "added to a function's timeout before the activator stops waiting for its pod")
	fs.IntVar(&overflow, "overflow-status", envInt("overflow-status", http.StatusTooManyRequests), "status of a request refused because its function's queue is full: 429 (with Retry-After) or 503")
	fs.DurationVar(&cfg.Handler.RetryAfter, "retry-after", envDuration("retry-after", time.Second), "Retry-After of overflow answers (rounded up to whole seconds)")
	fs.StringVar(&cfg.Handler.Region, "region", env("region", invokeapi.DefaultRegion), "region in the ARNs of Invoke API error messages")
	fs.StringVar(&cfg.AutoscalerURL, "autoscaler-url", env("autoscaler-url", ""), "the autoscaler's stats endpoint, e.g. http://lambdapod-autoscaler.lambdapod-system.svc:8083/v1/stats (empty: no reports)")
	fs.StringVar(&cfg.AutoscalerTokenFile, "autoscaler-token-file", env("autoscaler-token-file", "/var/run/secrets/lambdapod/autoscaler/token"), "the projected ServiceAccount token (audience lambdapod-autoscaler) sent with reports; read again every minute, as the kubelet replaces it (empty: reports carry no token, for a manager run with -autoscaler-auth=false)")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", envDuration("report-interval", time.Second), "interval of concurrency reports to the autoscaler")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", envDuration("drain-delay", 5*time.Second), "how long /readyz fails before the listener closes at a stop")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", envDuration("shutdown-timeout", 15*time.Minute+30*time.Second), "longest wait for in-flight requests at a stop")
	fs.StringVar(&cfg.EndpointSliceSelector, "endpointslice-selector", env("endpointslice-selector", server.DefaultEndpointSliceSelector), "label selector of the EndpointSlices of functions' Services")
	fs.StringVar(&cfg.Namespace, "namespace", env("namespace", ""), "watch only this namespace (default: all)")
	fs.IntVar(&podPort, "pod-port", envInt("pod-port", contract.InvokePort), "sidecar port used when a slice has no port named http")
	fs.BoolVar(&probe, "probe-not-ready", envBool("probe-not-ready", true), "probe not-ready, non-terminating endpoints on GET /readyz and route to them at the first 200, before their EndpointSlice says ready")
	fs.StringVar(&cfg.ActivatorID, "id", env("id", hostname), "this activator's name in autoscaler reports (POD_NAME by default)")
	fs.BoolVar(&cfg.InvokeAuth, "invoke-auth", envBool("invoke-auth", true), "check callers of functions whose spec.authType is RBAC: bearer tokens (TokenReview) or SigV4 with access keys, then RBAC's verb invoke (SubjectAccessReview). false: every function is public (a development cluster only)")
	fs.DurationVar(&cfg.AuthCacheTTL, "auth-cache-ttl", envDuration("auth-cache-ttl", 10*time.Second), "how long a token's identity and an invoke decision are taken without asking the API server again (a revoked binding works this long)")
	fs.StringVar(&cfg.SystemNamespace, "system-namespace", env("system-namespace", os.Getenv("POD_NAMESPACE")), "namespace of the access key Secrets (label "+auth.KeyLabel+"=true) and of the invoke key Secret; POD_NAMESPACE by default; empty: no access keys")
	fs.BoolVar(&cfg.InvokeTokens, "invoke-tokens", envBool("invoke-tokens", true), "sign every invocation for the function pods, which take none without such a token (key in the Secret "+invokekey.Name+" of -system-namespace, made if missing); false for pods run with the manager's -invoke-tokens=false")
	fs.StringVar(&cfg.Events.URL, "event-queue", env("event-queue", ""), "NATS server(s) with JetStream that keep accepted Event invocations until they ran, e.g. nats://lambdapod-nats.lambdapod-system.svc:4222 (empty: Events wait in this activator's memory, and a crash loses them)")
	fs.IntVar(&cfg.Events.Concurrency, "event-concurrency", envInt("event-concurrency", 64), "queued events this activator runs at once")
	fs.DurationVar(&cfg.Events.RetryDelay, "event-retry-delay", envDuration("event-retry-delay", time.Minute), "wait before the first retry of a failed Event invocation; it doubles for the second (Lambda: about 1 and 2 minutes)")
	fs.DurationVar(&cfg.Events.AckWait, "event-ack-wait", envDuration("event-ack-wait", 30*time.Second), "an event whose activator went silent this long is run by another")
	fs.IntVar(&cfg.Events.Replicas, "event-queue-replicas", envInt("event-queue-replicas", 1), "replicas of the event stream (3 on a clustered NATS)")
	fs.Int64Var(&cfg.Events.MaxBytes, "event-queue-max-bytes", int64(envInt("event-queue-max-bytes", 1<<30)), "size of the event stream; past it new Events are refused (429), none accepted is dropped")
	fs.StringVar(&kubeconfig, "kubeconfig", env("kubeconfig", os.Getenv("KUBECONFIG")), "kubeconfig file (default: in-cluster)")
	fs.StringVar(&logLevel, "log-level", env("log-level", "info"), "debug, info, warn or error")
	flag.Parse()
	checkEnv(fs)

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(cfg.Logger)
	if overflow != http.StatusTooManyRequests && overflow != http.StatusServiceUnavailable {
		return fmt.Errorf("-overflow-status must be 429 or 503, not %d", overflow)
	}
	cfg.Handler.OverflowStatus = overflow
	cfg.PodPort = int32(podPort)
	cfg.NoProbeNotReady = !probe

	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	rc.UserAgent = "lambdapod-activator"
	a, err := server.New(cfg, rc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return a.Run(ctx)
}

// parsePrefixes parses comma-separated CIDRs (or single addresses).
func parsePrefixes(v string, into *[]netip.Prefix) error {
	*into = nil
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		*into = append(*into, p.Masked())
	}
	return nil
}

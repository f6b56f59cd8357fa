package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// Each bad spec must be refused by the API server itself, with a message
// that names the field to change. Objects are written as YAML, the way a
// user writes them, so Go's zero values cannot hide a case.
func TestAPIServerRefusesBadSpecs(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()

	cases := []struct {
		name string
		yaml string
		// want are substrings the API server's error must contain.
		want []string
	}{
		{"neither git nor image", `
spec:
  source: {}`, []string{"spec.source", "exactly one of git or image"}},
		{"both git and image", `
spec:
  source:
    image: example/fn:1
    git: {url: https://git.example/org/fn.git}
  build: {image: example/fn}`, []string{"spec.source", "exactly one of git or image"}},
		{"timeout over 15 minutes", `
spec:
  source: {image: example/fn:1}
  runtime: {timeout: 16m}`, []string{"spec.runtime.timeout", "between 1s and 15m"}},
		{"ephemeral storage over 10Gi", `
spec:
  source: {image: example/fn:1}
  runtime: {ephemeralStorage: 11Gi}`, []string{"spec.runtime.ephemeralStorage", "between 512Mi and 10Gi"}},
		{"ephemeral storage under 512Mi", `
spec:
  source: {image: example/fn:1}
  runtime: {ephemeralStorage: 100Mi}`, []string{"spec.runtime.ephemeralStorage", "between 512Mi and 10Gi"}},
		{"runAsUser root", `
spec:
  source: {image: example/fn:1}
  runtime: {runAsUser: 0}`, []string{"spec.runtime.runAsUser"}},
		{"runAsUser with runAsRoot", `
spec:
  source: {image: example/fn:1}
  runtime: {runAsUser: 1000, runAsRoot: true}`, []string{"spec.runtime", "runAsUser and spec.runtime.runAsRoot exclude each other"}},
		{"an unknown authType", `
spec:
  source: {image: example/fn:1}
  authType: AWS_IAM`, []string{"spec.authType", "RBAC", "None"}},
		{"timeout under a second", `
spec:
  source: {image: example/fn:1}
  runtime: {timeout: 500ms}`, []string{"spec.runtime.timeout", "between 1s and 15m"}},
		{"timeout not a duration", `
spec:
  source: {image: example/fn:1}
  runtime: {timeout: thirty}`, []string{"spec.runtime.timeout"}},
		{"three retries of an Event", `
spec:
  source: {image: example/fn:1}
  async: {maximumRetryAttempts: 3}`, []string{"spec.async.maximumRetryAttempts", "less than or equal to 2"}},
		{"an event age under a minute", `
spec:
  source: {image: example/fn:1}
  async: {maximumEventAge: 30s}`, []string{"spec.async.maximumEventAge", "between 60s and 6h"}},
		{"an event age over six hours", `
spec:
  source: {image: example/fn:1}
  async: {maximumEventAge: 7h}`, []string{"spec.async.maximumEventAge", "between 60s and 6h"}},
		{"minReplicas above maxReplicas", `
spec:
  source: {image: example/fn:1}
  scale: {minReplicas: 5, maxReplicas: 2}`, []string{"spec.scale", "minReplicas must not be greater than spec.scale.maxReplicas"}},
		{"minReplicas above the default maxReplicas", `
spec:
  source: {image: example/fn:1}
  scale: {minReplicas: 11}`, []string{"spec.scale", "minReplicas must not be greater than spec.scale.maxReplicas"}},
		{"malformed git URL", `
spec:
  source:
    git: {url: "not a url"}
  build: {image: example/fn}`, []string{"spec.source.git.url", "must be an https://"}},
		{"git URL without a repository path", `
spec:
  source:
    git: {url: "https://git.example"}
  build: {image: example/fn}`, []string{"spec.source.git.url"}},
		{"build section on an image source", `
spec:
  source: {image: example/fn:1}
  build: {image: example/fn}`, []string{"spec", "spec.build applies only to git sources"}},
		{"git source without a build", `
spec:
  source:
    git: {url: https://git.example/org/fn.git}`, []string{"spec", "spec.build is required for a git source"}},
		{"memory under 128Mi", `
spec:
  source: {image: example/fn:1}
  runtime: {memory: 64Mi}`, []string{"spec.runtime.memory", "between 128Mi and 10240Mi"}},
		{"memory over 10240Mi", `
spec:
  source: {image: example/fn:1}
  runtime: {memory: 11Gi}`, []string{"spec.runtime.memory", "between 128Mi and 10240Mi"}},
		{"concurrency zero", `
spec:
  source: {image: example/fn:1}
  runtime: {concurrency: 0}`, []string{"spec.runtime.concurrency", "greater than or equal to 1"}},
		{"targetConcurrency above concurrency", `
spec:
  source: {image: example/fn:1}
  runtime: {concurrency: 2}
  scale: {targetConcurrency: 3}`, []string{"spec", "spec.scale.targetConcurrency may not exceed spec.runtime.concurrency"}},
		{"unknown event format", `
spec:
  source: {image: example/fn:1}
  http: {eventFormat: SOAP}`, []string{"spec.http.eventFormat", "Unsupported value"}},
		{"unknown build strategy", `
spec:
  source:
    git: {url: https://git.example/org/fn.git}
  build: {image: example/fn, strategy: Maven}`, []string{"spec.build.strategy", "Unsupported value"}},
		{"build image with a digest", `
spec:
  source:
    git: {url: https://git.example/org/fn.git}
  build: {image: "example/fn@sha256:abc"}`, []string{"spec.build.image", "without a digest"}},
		{"reserved environment variable", `
spec:
  source: {image: example/fn:1}
  runtime:
    env: [{name: AWS_LAMBDA_RUNTIME_API, value: "1.2.3.4:9001"}]`, []string{"spec.runtime.env", "may not set a variable that lambdapod sets itself"}},
		{"context dir escaping the repository", `
spec:
  source:
    git: {url: https://git.example/org/fn.git, contextDir: ../etc}
  build: {image: example/fn}`, []string{"spec.source.git.contextDir", "relative path"}},
		{"dockerfile escaping the context directory", `
spec:
  source:
    git: {url: https://git.example/org/fn.git, contextDir: fn}
  build: {image: example/fn, dockerfile: ../other/Dockerfile}`, []string{"spec.build.dockerfile", "relative path inside the context directory", "set spec.source.git.contextDir"}},
		{"absolute dockerfile", `
spec:
  source:
    git: {url: https://git.example/org/fn.git}
  build: {image: example/fn, dockerfile: /etc/Dockerfile}`, []string{"spec.build.dockerfile", "relative path"}},
		{"poll interval too short", `
spec:
  source:
    git: {url: https://git.example/org/fn.git, pollInterval: 1s}
  build: {image: example/fn}`, []string{"spec.source.git.pollInterval", "at least 10s"}},
		{"scaleToZeroAfter too short", `
spec:
  source: {image: example/fn:1}
  scale: {scaleToZeroAfter: 1s}`, []string{"spec.scale.scaleToZeroAfter", "between 10s and 24h"}},
		{"negative minReplicas", `
spec:
  source: {image: example/fn:1}
  scale: {minReplicas: -1}`, []string{"spec.scale.minReplicas", "greater than or equal to 0"}},
		{"a destination with both a function and a url", `
spec:
  source: {image: example/fn:1}
  async: {destinations: {onFailure: {function: dlq, url: "https://hooks.example/x"}}}`, []string{"spec.async.destinations.onFailure", "exactly one of function"}},
		{"an empty destination", `
spec:
  source: {image: example/fn:1}
  async: {destinations: {onSuccess: {}}}`, []string{"spec.async.destinations.onSuccess", "exactly one of function"}},
		{"a destination url that is not http", `
spec:
  source: {image: example/fn:1}
  async: {destinations: {onSuccess: {url: "ftp://files.example/x"}}}`, []string{"spec.async.destinations.onSuccess.url", "absolute http:// or https:// URL"}},
		{"a destination function in another namespace", `
spec:
  source: {image: example/fn:1}
  async: {destinations: {onSuccess: {function: other/dlq}}}`, []string{"spec.async.destinations.onSuccess.function"}},
		{"a schedule in cron's five fields", `
spec:
  source: {image: example/fn:1}
  schedules: [{name: nightly, expression: "cron(0 3 * * *)"}]`, []string{"spec.schedules[0].expression", "as in EventBridge"}},
		{"a rate of 5 minute", `
spec:
  source: {image: example/fn:1}
  schedules: [{name: often, expression: "rate(5 minute)"}]`, []string{"spec.schedules[0].expression", "plural otherwise"}},
		{"a rate of 1 minutes", `
spec:
  source: {image: example/fn:1}
  schedules: [{name: often, expression: "rate(1 minutes)"}]`, []string{"spec.schedules[0].expression", "singular unit for 1"}},
		{"multi-value headers on an HTTP API function", `
spec:
  source: {image: example/fn:1}
  http: {multiValueHeaders: true}`, []string{"spec.http", "multiValueHeaders applies to eventFormat ALB only"}},
		{"an application log level with the default Text format", `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {applicationLogLevel: DEBUG}`, []string{"spec.runtime.logging", "apply to the JSON log format only", "set spec.runtime.logging.format to JSON"}},
		{"a system log level with format Text", `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: Text, systemLogLevel: WARN}`, []string{"spec.runtime.logging", "apply to the JSON log format only", "set spec.runtime.logging.format to JSON"}},
		{"a log format in lower case", `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: json}`, []string{"spec.runtime.logging.format", "Unsupported value", `"Text"`, `"JSON"`}},
		{"an unknown application log level", `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: JSON, applicationLogLevel: VERBOSE}`, []string{"spec.runtime.logging.applicationLogLevel", "Unsupported value", `"TRACE"`, `"FATAL"`}},
		{"a system log level of TRACE", `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: JSON, systemLogLevel: TRACE}`, []string{"spec.runtime.logging.systemLogLevel", "Unsupported value", `"DEBUG"`, `"WARN"`}},
		{"the log format in the environment", `
spec:
  source: {image: example/fn:1}
  runtime:
    env: [{name: AWS_LAMBDA_LOG_FORMAT, value: JSON}]`, []string{"spec.runtime.env", "may not set a variable that lambdapod sets itself", "logging"}},
		{"the log level in the environment", `
spec:
  source: {image: example/fn:1}
  runtime:
    env: [{name: AWS_LAMBDA_LOG_LEVEL, value: DEBUG}]`, []string{"spec.runtime.env", "may not set a variable that lambdapod sets itself"}},
		{"two schedules of one name", `
spec:
  source: {image: example/fn:1}
  schedules: [{name: a, expression: "rate(1 hour)"}, {name: a, expression: "rate(2 hours)"}]`, []string{"spec.schedules[1]", "Duplicate value"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := function(t, fmt.Sprintf("bad-%d", i), tc.yaml)
			err := env.Client.Create(ctx, obj)
			if err == nil {
				t.Fatalf("the API server accepted %s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}

	t.Run("destinations and schedules as documented are accepted", func(t *testing.T) {
		obj := function(t, "async", `
spec:
  source: {image: example/fn:1}
  async:
    maximumRetryAttempts: 1
    destinations:
      onSuccess: {url: "https://hooks.example/done"}
      onFailure: {function: dlq}
  schedules:
  - {name: every-minute, expression: "rate(1 minute)"}
  - {name: hourly, expression: "rate(2 hours)"}
  - {name: noon, expression: "cron(0 12 * * ? *)", input: {job: report, items: [1, 2]}}
  - {name: office, expression: "cron(0/15 8-17 ? * MON-FRI *)"}
  http: {eventFormat: ALB, multiValueHeaders: true}`)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("refused: %v", err)
		}
		var fn v1alpha1.Function
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &fn); err != nil {
			t.Fatal(err)
		}
		if in := fn.Spec.Schedules[2].Input; in == nil || string(in.Raw) != `{"items":[1,2],"job":"report"}` {
			t.Errorf("the noon input came back as %v", in)
		}
	})

	t.Run("logging as documented is accepted and defaulted", func(t *testing.T) {
		for name, tc := range map[string]struct {
			yaml      string
			format    v1alpha1.LogFormat
			app       v1alpha1.ApplicationLogLevel
			system    v1alpha1.SystemLogLevel
			keepsNull bool
		}{
			"logging-json-levels": {yaml: `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: JSON, applicationLogLevel: TRACE, systemLogLevel: WARN}`, format: "JSON", app: "TRACE", system: "WARN"},
			"logging-json": {yaml: `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {format: JSON}`, format: "JSON", app: "INFO", system: "INFO"},
			"logging-empty": {yaml: `
spec:
  source: {image: example/fn:1}
  runtime:
    logging: {}`, format: "Text", app: "INFO", system: "INFO"},
			// no logging at all stays so: a Function made before the
			// field existed reads as it was written
			"logging-none": {yaml: `
spec:
  source: {image: example/fn:1}`, format: "Text", app: "INFO", system: "INFO", keepsNull: true},
		} {
			obj := function(t, name, tc.yaml)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("%s refused: %v", name, err)
			}
			_, found, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "runtime", "logging")
			if found == tc.keepsNull {
				t.Errorf("%s: spec.runtime.logging present = %v", name, found)
			}
			var fn v1alpha1.Function
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &fn); err != nil {
				t.Fatal(err)
			}
			rt := &fn.Spec.Runtime
			if f, a, s := rt.LogFormatOrDefault(), rt.ApplicationLogLevelOrDefault(), rt.SystemLogLevelOrDefault(); f != tc.format || a != tc.app || s != tc.system {
				t.Errorf("%s: format, levels = %s, %s, %s, want %s, %s, %s", name, f, a, s, tc.format, tc.app, tc.system)
			}
			if tc.format == "Text" && !tc.keepsNull && rt.Logging.Format != "Text" {
				t.Errorf("%s: the API server defaulted format to %q, want Text", name, rt.Logging.Format)
			}
		}
	})

	t.Run("a name that cannot name a Service", func(t *testing.T) {
		obj := function(t, "9lives", "\nspec:\n  source: {image: example/fn:1}")
		err := env.Client.Create(ctx, obj)
		if err == nil || !strings.Contains(err.Error(), "metadata.name must be a DNS-1035 label") {
			t.Fatalf("want a DNS-1035 refusal, got %v", err)
		}
	})

	t.Run("a good spec is accepted and defaulted", func(t *testing.T) {
		obj := function(t, "good", `
spec:
  source:
    git: {url: "git@git.example:org/fn.git"}
  build: {image: example/fn}`)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("refused a good spec: %v", err)
		}
		got := map[string]any{}
		want := map[string]any{
			"spec.runtime.timeout":          "30s",
			"spec.runtime.memory":           "128Mi",
			"spec.runtime.concurrency":      int64(1),
			"spec.scale.minReplicas":        int64(0),
			"spec.scale.maxReplicas":        int64(10),
			"spec.scale.scaleToZeroAfter":   "5m",
			"spec.http.eventFormat":         "HTTPAPIv2",
			"spec.source.git.revision":      "main",
			"spec.source.git.pollInterval":  "1m",
			"spec.build.strategy":           "Dockerfile",
			"spec.build.dockerfile":         "Dockerfile",
			"spec.build.timeout":            "10m",
			"spec.authType":                 "RBAC",
			"spec.runtime.ephemeralStorage": "512Mi",
			"status.observedGeneration":     int64(-1),
		}
		for path := range want {
			v, _, _ := unstructured.NestedFieldNoCopy(obj.Object, strings.Split(path, ".")...)
			got[path] = v
		}
		for path, w := range want {
			if got[path] != w {
				t.Errorf("%s = %#v, want %#v", path, got[path], w)
			}
		}

		// The Go defaults, for objects that bypassed defaulting, are the
		// ones the API server filled in.
		var served v1alpha1.Function
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &served); err != nil {
			t.Fatal(err)
		}
		empty := v1alpha1.Function{Spec: v1alpha1.FunctionSpec{Source: v1alpha1.Source{Git: &v1alpha1.GitSource{}}, Build: &v1alpha1.BuildSpec{}}}
		if d, s := defaults(&empty), defaults(&served); d != s {
			t.Errorf("the Go defaults differ from the CRD's:\n  Go:  %+v\n  CRD: %+v", d, s)
		}
	})
}

type defaulted struct {
	Revision, Dockerfile                     string
	Strategy                                 v1alpha1.BuildStrategy
	Poll, BuildTimeout, Timeout, ScaleToZero time.Duration
	Memory                                   int64
	Concurrency, Min, Max, Target            int32
	Format                                   v1alpha1.EventFormat
	Auth                                     v1alpha1.AuthType
	EphemeralStorage                         int64
}

func defaults(f *v1alpha1.Function) defaulted {
	s := &f.Spec
	return defaulted{
		Revision: s.Source.Git.RevisionOrDefault(), Dockerfile: s.Build.DockerfileOrDefault(),
		Strategy: s.Build.StrategyOrDefault(), Poll: s.Source.Git.PollIntervalOrDefault(),
		BuildTimeout: s.Build.TimeoutOrDefault(), Timeout: s.Runtime.TimeoutOrDefault(),
		ScaleToZero: s.Scale.ScaleToZeroAfterOrDefault(), Memory: s.Runtime.MemoryMiB(),
		Concurrency: s.Runtime.ConcurrencyOrDefault(), Min: s.Scale.MinReplicas,
		Max: s.Scale.MaxReplicasOrDefault(), Target: s.TargetConcurrency(),
		Format: s.HTTP.EventFormatOrDefault(), Auth: s.AuthTypeOrDefault(),
		EphemeralStorage: s.Runtime.EphemeralStorageMiB(),
	}
}

func TestMemoryMiB(t *testing.T) {
	cases := map[string]int64{"128Mi": 128, "1Gi": 1024, "10240Mi": 10240, "200M": 190, "134217728": 128}
	for in, want := range cases {
		q := resource.MustParse(in)
		r := v1alpha1.RuntimeSpec{Memory: &q}
		if got := r.MemoryMiB(); got != want {
			t.Errorf("MemoryMiB(%s) = %d, want %d", in, got, want)
		}
	}
}

func function(t *testing.T, name, spec string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(spec), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetAPIVersion("lambdapod.io/v1alpha1")
	obj.SetKind("Function")
	obj.SetNamespace(metav1.NamespaceDefault)
	obj.SetName(name)
	return obj
}

package resources_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers/resources"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/golden"
)

var cfg = resources.Config{
	SidecarImage: "lambdapod/runtime-sidecar:v1",
	Region:       "eu-west-1",
	ActivatorURL: "http://activator.example",
	InvokeKey:    "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
	Ingress: &resources.IngressPolicy{ActivatorNamespace: "lambdapod-system",
		ActivatorLabels: map[string]string{"app.kubernetes.io/name": "lambdapod", "app.kubernetes.io/component": "activator"}},
}

// base is a Function as the API server returns it after defaulting.
func base() *lambdapodv1alpha1.Function {
	mem := resource.MustParse("128Mi")
	return &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "team-a", UID: "0b9d5c1e-6f2c-4a41-9d0c-1f1e7b9a2c3d"},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Image: "example/hello:1"},
			Runtime: lambdapodv1alpha1.RuntimeSpec{
				Memory: &mem, Timeout: &metav1.Duration{Duration: 30e9}, Concurrency: 1,
			},
			Scale: lambdapodv1alpha1.ScaleSpec{MaxReplicas: 10},
			HTTP:  lambdapodv1alpha1.HTTPSpec{EventFormat: lambdapodv1alpha1.EventFormatHTTPAPIv2},
		},
	}
}

func TestDeploymentGolden(t *testing.T) {
	zero, three := int32(0), int32(3)
	storage, uid := resource.MustParse("2Gi"), int64(1000)
	cases := []struct {
		golden   string
		fn       func() *lambdapodv1alpha1.Function
		run      resources.ImageRun
		replicas *int32
	}{
		{"deployment-defaults.yaml", base, resources.ImageRun{}, &zero},
		{"deployment-full.yaml", func() *lambdapodv1alpha1.Function {
			fn := base()
			mem := resource.MustParse("1Gi")
			fn.Spec.Runtime = lambdapodv1alpha1.RuntimeSpec{
				Handler: "function.handler",
				Command: []string{"/var/task/bootstrap", "--verbose"},
				Env: []corev1.EnvVar{
					{Name: "GREETING", Value: "hi"},
					{Name: "AWS_REGION", Value: "ap-south-1"},
					{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
				},
				Memory:           &mem,
				Timeout:          &metav1.Duration{Duration: 15 * 60e9},
				Concurrency:      4,
				EphemeralStorage: &storage,
				RunAsUser:        &uid,
				Logging: &lambdapodv1alpha1.LoggingSpec{Format: lambdapodv1alpha1.LogFormatJSON,
					ApplicationLogLevel: "DEBUG", SystemLogLevel: "WARN"},
			}
			return fn
		}, resources.ImageRun{Bootstrap: []string{"/var/task/bootstrap", "--verbose"}, User: "root"}, &three},
		// JSON logs with the default levels: the runtime and the
		// supervisor are told, the sidecar of the format alone
		{"deployment-json-logs.yaml", func() *lambdapodv1alpha1.Function {
			fn := base()
			fn.Spec.Runtime.Logging = &lambdapodv1alpha1.LoggingSpec{Format: lambdapodv1alpha1.LogFormatJSON}
			return fn
		}, resources.ImageRun{}, &zero},
		{"deployment-replicas-claimed.yaml", base, resources.ImageRun{Bootstrap: []string{"/lambda-entrypoint.sh", "app.handler"}}, nil},
		// an image that carries the supervisor (a Go build's): no volume,
		// no postStart hook
		{"deployment-supervisor-in-image.yaml", base, resources.ImageRun{Bootstrap: []string{"/var/task/bootstrap"}, Supervisor: contract.SupervisorPath, User: "65532:65532"}, &zero},
		// opted out of confinement: the function container has no
		// security context, the sidecar keeps its own
		{"deployment-run-as-root.yaml", func() *lambdapodv1alpha1.Function {
			fn := base()
			fn.Spec.Runtime.RunAsRoot = true
			return fn
		}, resources.ImageRun{User: "0"}, &zero},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			golden.Check(t, tc.golden, resources.Deployment(cfg, tc.fn(), "example/hello@sha256:0123", tc.run, tc.replicas))
		})
	}
}

func TestServiceGolden(t *testing.T) {
	golden.Check(t, "service.yaml", resources.Service(base()))
}

func TestNetworkPolicyGolden(t *testing.T) {
	golden.Check(t, "networkpolicy.yaml", resources.NetworkPolicy(cfg, base()))
}

func TestURL(t *testing.T) {
	fn := base()
	cases := []struct {
		cfg  resources.Config
		want string
	}{
		{resources.Config{ActivatorURL: "http://activator.example"}, "http://activator.example/team-a/hello/"},
		{resources.Config{ActivatorURL: "https://fn.example.com/"}, "https://fn.example.com/team-a/hello/"},
		{resources.Config{ActivatorURL: "http://ignored", Domain: "fn.example.com"}, "http://hello.team-a.fn.example.com/"},
		// TLS at the Ingress in front of the activator
		{resources.Config{ActivatorURL: "http://ignored", Domain: "fn.example.com", DomainScheme: "https"}, "https://hello.team-a.fn.example.com/"},
	}
	for _, tc := range cases {
		if got := resources.URL(tc.cfg, fn); got != tc.want {
			t.Errorf("URL(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

// A Function that asks for Text logs, Lambda's default, has the pods of one
// that says nothing of logging: Lambda sets no log variable for Text.
func TestTextLogsChangeNothing(t *testing.T) {
	text := base()
	text.Spec.Runtime.Logging = &lambdapodv1alpha1.LoggingSpec{Format: lambdapodv1alpha1.LogFormatText}
	want, _ := yaml.Marshal(resources.Deployment(cfg, base(), "example/hello@sha256:0123", resources.ImageRun{}, nil))
	got, _ := yaml.Marshal(resources.Deployment(cfg, text, "example/hello@sha256:0123", resources.ImageRun{}, nil))
	if string(got) != string(want) {
		t.Errorf("logging {format: Text} changed the Deployment:\n%s\nwant\n%s", got, want)
	}
}

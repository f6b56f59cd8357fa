// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest) with the Function CRD installed, for integration tests.
//
// The binaries come from hack/envtest-binaries.sh, which builds them from
// their Go modules into bin/k8s/<version>. KUBEBUILDER_ASSETS wins when set
// (make test sets it); otherwise the repository's bin/k8s is searched, so a
// plain `go test ./...` finds them too after one `make envtest`.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/lambdapod/lambdapod/internal/scheme"
)

// Env is a running API server with the Function CRD.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client uses Scheme.
	Client client.Client
	// Scheme knows the built-in and lambdapod types.
	Scheme *runtime.Scheme
	// Root is the repository's root directory.
	Root string

	env    *envtest.Environment
	assets string
}

// Option changes what Start runs.
type Option func(*options)

type options struct {
	controllers []string
	crdPaths    []string
	tekton      bool
}

// WithCRDs also installs the CRDs in these files or directories.
func WithCRDs(paths ...string) Option {
	return func(o *options) { o.crdPaths = append(o.crdPaths, paths...) }
}

// WithTektonCRDs also installs Tekton Pipelines' CRDs (tekton.dev), from
// config/300-crds of the github.com/tektoncd/pipeline module in go.mod.
func WithTektonCRDs() Option {
	return func(o *options) { o.tekton = true }
}

// TektonCRDDir is config/300-crds of the tektoncd/pipeline module that
// go.mod requires, from the module cache.
func TektonCRDDir(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/pipeline")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the tektoncd/pipeline module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "300-crds")
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// WithControllers also runs kube-controller-manager with the named
// controllers (for example "deployment", "replicaset", "garbagecollector"),
// so Deployments get a real status and owned objects are really collected.
// envtest alone runs no controllers.
func WithControllers(names ...string) Option {
	return func(o *options) { o.controllers = append(o.controllers, names...) }
}

// Start starts an API server for the test and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := BinaryDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	crds := append([]string{filepath.Join(root, "config", "crd", "bases")}, o.crdPaths...)
	if o.tekton {
		dir, err := TektonCRDDir(root)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, dir)
	}
	scheme := scheme.New()
	te := &envtest.Environment{
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Config: cfg, Client: c, Scheme: scheme, Root: root, env: te, assets: assets}
	if len(o.controllers) > 0 {
		e.startControllerManager(t, assets, o.controllers)
	}
	return e
}

// startControllerManager runs kube-controller-manager against the test's API
// server until the test ends; its log goes to the test's output on failure.
func (e *Env) startControllerManager(t testing.TB, assets string, controllers []string) {
	t.Helper()
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%v: run `make envtest`, which builds it", err)
	}
	logPath := filepath.Join(t.TempDir(), "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--kubeconfig="+e.Kubeconfig(t),
		"--controllers="+strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		// Tests want status within a second, not the production sync rate.
		"--concurrent-deployment-syncs=5",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (a timeout, a kill), so does this process,
	// rather than outliving it against an API server that is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("kube-controller-manager log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Kubeconfig writes a kubeconfig for an administrator of the API server and
// returns its path, for tests that run kubectl.
func (e *Env) Kubeconfig(t testing.TB) string {
	t.Helper()
	user, err := e.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Kubectl is the kubectl to run: the one hack/envtest-binaries.sh built
// beside the API server, where the machine had none, else the one on PATH.
func (e *Env) Kubectl() string {
	if p := filepath.Join(e.assets, "kubectl"); hasBinaries(e.assets, "kubectl") {
		return p
	}
	return "kubectl"
}

// RepoRoot finds the repository's root: the nearest parent with go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BinaryDir returns where kube-apiserver and etcd are: KUBEBUILDER_ASSETS,
// else bin/k8s/<version matching k8s.io/api>, else any built version.
func BinaryDir(root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	if v := kubeVersion(); v != "" && hasBinaries(filepath.Join(root, "bin", "k8s", v)) {
		return filepath.Join(root, "bin", "k8s", v), nil
	}
	found, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "v*", "kube-apiserver"))
	for i := len(found) - 1; i >= 0; i-- {
		if dir := filepath.Dir(found[i]); hasBinaries(dir) {
			return dir, nil
		}
	}
	hint := filepath.Join(root, "hack", "envtest-binaries.sh")
	if _, err := exec.LookPath("go"); err == nil {
		return "", fmt.Errorf("no kube-apiserver and etcd under %s/bin/k8s: run `make envtest` (or %s) once, or set KUBEBUILDER_ASSETS", root, hint)
	}
	return "", fmt.Errorf("no envtest binaries: set KUBEBUILDER_ASSETS")
}

func hasBinaries(dir string, names ...string) bool {
	if len(names) == 0 {
		names = []string{"kube-apiserver", "etcd"}
	}
	for _, b := range names {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// kubeVersion maps the k8s.io/api this test binary was built with (v0.X.Y)
// to the Kubernetes release (v1.X.Y), as hack/envtest-binaries.sh does.
func kubeVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "k8s.io/api" && strings.HasPrefix(d.Version, "v0.") {
			return "v1." + strings.TrimPrefix(d.Version, "v0.")
		}
	}
	return ""
}

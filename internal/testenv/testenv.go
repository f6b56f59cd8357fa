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
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// Env is a running API server with the Function CRD.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client uses Scheme.
	Client client.Client
	// Scheme knows the core, apps, discovery and lambdapod types.
	Scheme *runtime.Scheme
	// Root is the repository's root directory.
	Root string

	env *envtest.Environment
}

// Scheme returns a scheme with every type the tests and the manager use.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, lambdapodv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// Start starts an API server for the test and stops it when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := BinaryDir(root)
	if err != nil {
		t.Fatal(err)
	}
	scheme := Scheme()
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
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
	return &Env{Config: cfg, Client: c, Scheme: scheme, Root: root, env: te}
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

func hasBinaries(dir string) bool {
	for _, b := range []string{"kube-apiserver", "etcd"} {
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

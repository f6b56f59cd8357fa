package buildstep_test

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lambdapod/lambdapod/internal/buildstep"
	"github.com/lambdapod/lambdapod/internal/git/gittest"
)

// TestClone checks out a commit behind the branch tip of a private
// repository, with credentials from a mounted Secret, and reports it as
// Tekton results.
func TestClone(t *testing.T) {
	repo := gittest.New(t)
	repo.Username, repo.Password = "bot", "s3cret"
	old := repo.Commit(t, map[string]string{"main.go": "package main // old\n", "Dockerfile": "FROM scratch\n"}, "old")
	repo.Commit(t, map[string]string{"main.go": "package main // new\n"}, "new")

	creds := t.TempDir()
	for k, v := range map[string]string{"username": "bot", "password": "s3cret"} {
		if err := os.WriteFile(filepath.Join(creds, k), []byte(v), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	dir, results := filepath.Join(t.TempDir(), "source"), t.TempDir()
	var out, errOut bytes.Buffer
	code := buildstep.Main([]string{"clone",
		"--url=" + repo.URL, "--revision=main", "--commit=" + old, "--dir=" + dir,
		"--credentials=" + creds,
		"--commit-file=" + filepath.Join(results, "COMMIT"),
		"--image=registry.example/hello:" + old, "--image-file=" + filepath.Join(results, "IMAGE_URL"),
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.go")); string(b) != "package main // old\n" {
		t.Errorf("main.go = %q, want the old commit's", b)
	}
	if b, _ := os.ReadFile(filepath.Join(results, "COMMIT")); string(b) != old {
		t.Errorf("COMMIT result %q, want %s", b, old)
	}
	if b, _ := os.ReadFile(filepath.Join(results, "IMAGE_URL")); string(b) != "registry.example/hello:"+old {
		t.Errorf("IMAGE_URL result %q", b)
	}

	// Without the credentials the clone fails, and says so.
	out.Reset()
	errOut.Reset()
	code = buildstep.Main([]string{"clone", "--url=" + repo.URL, "--revision=main", "--commit=" + old, "--dir=" + t.TempDir()}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "authentication required") {
		t.Errorf("anonymous clone: exit %d, stderr %q", code, errOut.String())
	}
}

// TestImage adds a bootstrap to a base image from a registry, pushes it and
// reports the pushed digest; the image runs the bootstrap.
func TestImage(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	base, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, reg+"/base:1"), base); err != nil {
		t.Fatal(err)
	}
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte("#!fake-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	digestFile := filepath.Join(t.TempDir(), "IMAGE_DIGEST")
	var out, errOut bytes.Buffer
	code := buildstep.Main([]string{"image",
		"--base=" + reg + "/base:1", "--bootstrap=" + bootstrap, "--platform=linux/amd64",
		"--destination=" + reg + "/team/hello:abc", "--digest-file=" + digestFile,
		"--label=org.opencontainers.image.revision=abc", "--insecure",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	digest, _ := os.ReadFile(digestFile)
	pushed, err := remote.Image(ref(t, reg+"/team/hello@"+string(digest)))
	if err != nil {
		t.Fatalf("the reported digest %q is not in the registry: %v", digest, err)
	}
	cf, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/var/task/bootstrap" || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q", ep, cf.Config.Cmd)
	}
	if cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	layers, _ := pushed.Layers()
	if len(layers) != 2 {
		t.Fatalf("%d layers, want the base's and the bootstrap's", len(layers))
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
	if h := files["var/task/bootstrap"]; h == nil || h.Mode != 0o755 || h.Size != int64(len("#!fake-binary")) {
		t.Errorf("var/task/bootstrap: %+v", h)
	}
	if h := files["var/runtime/bootstrap"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/var/task/bootstrap" {
		t.Errorf("var/runtime/bootstrap: %+v", h)
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := buildstep.Main([]string{"deploy"}, &out, &errOut); code != 2 {
		t.Errorf("unknown step: exit %d", code)
	}
	if code := buildstep.Main([]string{"clone", "--url=x"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "required") {
		t.Errorf("missing flags: exit %d %q", code, errOut.String())
	}
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The scratch base is the bootstrap alone: one layer, the platform asked
// for, and nothing pulled.
func TestImageOnScratch(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte("#!fake-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	digestFile := filepath.Join(t.TempDir(), "IMAGE_DIGEST")
	var out, errOut bytes.Buffer
	code := buildstep.Main([]string{"image",
		"--base=scratch", "--bootstrap=" + bootstrap, "--platform=linux/arm64",
		"--destination=" + reg + "/team/hello:scratch", "--digest-file=" + digestFile, "--insecure",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	digest, _ := os.ReadFile(digestFile)
	pushed, err := remote.Image(ref(t, reg+"/team/hello@"+string(digest)))
	if err != nil {
		t.Fatalf("the reported digest %q is not in the registry: %v", digest, err)
	}
	cf, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/var/task/bootstrap" {
		t.Errorf("config: os %s arch %s entrypoint %q", cf.OS, cf.Architecture, cf.Config.Entrypoint)
	}
	if layers, _ := pushed.Layers(); len(layers) != 1 {
		t.Errorf("%d layers, want only the bootstrap's", len(layers))
	}
}

package buildstep_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lambdapod/lambdapod/controllers/resources"
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
	files, _ := layerFiles(t, layers[1])
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

// With --supervisor the bootstrap's layer also holds the supervisor at
// /lambdapod/supervisor, the config says so with a label, and the same files
// give the same image.
func TestImageWithSupervisor(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	supervisorBytes := []byte("#!fake-supervisor\x00\x01\x02")

	push := func(tag string) (string, v1.Image) {
		t.Helper()
		dir := t.TempDir()
		bootstrap, supervisor := filepath.Join(dir, "bootstrap"), filepath.Join(dir, "supervisor")
		if err := os.WriteFile(bootstrap, []byte("#!fake-binary"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(supervisor, supervisorBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		digestFile := filepath.Join(dir, "IMAGE_DIGEST")
		var out, errOut bytes.Buffer
		code := buildstep.Main([]string{"image",
			"--base=scratch", "--bootstrap=" + bootstrap, "--supervisor=" + supervisor, "--platform=linux/amd64",
			"--destination=" + reg + "/team/hello:" + tag, "--digest-file=" + digestFile,
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
		return string(digest), pushed
	}
	digest, pushed := push("one")

	cf, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Labels[resources.SupervisorLabel]; got != resources.SupervisorPath || resources.SupervisorPath != "/lambdapod/supervisor" {
		t.Errorf("label %s = %q, want %s", resources.SupervisorLabel, got, resources.SupervisorPath)
	}
	if cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	if ep := cf.Config.Entrypoint; len(ep) != 1 || ep[0] != "/var/task/bootstrap" {
		t.Errorf("entrypoint %q", ep)
	}
	layers, _ := pushed.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want one with the bootstrap and the supervisor", len(layers))
	}
	files, contents := layerFiles(t, layers[0])
	if h := files["lambdapod/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
		t.Errorf("lambdapod/: %+v", h)
	}
	h := files["lambdapod/supervisor"]
	if h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
		t.Errorf("lambdapod/supervisor: %+v", h)
	}
	if got := contents["lambdapod/supervisor"]; !bytes.Equal(got, supervisorBytes) {
		t.Errorf("lambdapod/supervisor holds %q, want %q", got, supervisorBytes)
	}
	if h := files["var/task/bootstrap"]; h == nil || h.Mode != 0o755 || string(contents["var/task/bootstrap"]) != "#!fake-binary" {
		t.Errorf("var/task/bootstrap: %+v", h)
	}

	// The same files, read from elsewhere at another time, give the same
	// image.
	if again, _ := push("two"); again != digest {
		t.Errorf("pushing the same files again gave %s, first %s", again, digest)
	}
}

// Without --supervisor the image has neither the supervisor nor the label;
// with a supervisor built for another architecture than the image's it has
// neither either (its pods get the supervisor through a volume), and with
// one for the image's architecture it has both.
func TestImageSupervisorArchitecture(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	bootstrap, supervisor := filepath.Join(dir, "bootstrap"), filepath.Join(dir, "supervisor")
	if err := os.WriteFile(bootstrap, []byte("#!fake-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(supervisor, elfHeader(elf.EM_AARCH64), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, platform, supervisor string
		want                       bool
	}{
		{"none", "linux/arm64", "", false},
		{"other-arch", "linux/amd64", supervisor, false},
		{"same-arch", "linux/arm64", supervisor, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digestFile := filepath.Join(t.TempDir(), "IMAGE_DIGEST")
			args := []string{"image",
				"--base=scratch", "--bootstrap=" + bootstrap, "--platform=" + tc.platform,
				"--destination=" + reg + "/team/hello:" + tc.name, "--digest-file=" + digestFile, "--insecure",
			}
			if tc.supervisor != "" {
				args = append(args, "--supervisor="+tc.supervisor)
			}
			var out, errOut bytes.Buffer
			if code := buildstep.Main(args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
			}
			digest, _ := os.ReadFile(digestFile)
			pushed, err := remote.Image(ref(t, reg+"/team/hello@"+string(digest)))
			if err != nil {
				t.Fatal(err)
			}
			cf, err := pushed.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			_, labelled := cf.Config.Labels[resources.SupervisorLabel]
			layers, _ := pushed.Layers()
			files, _ := layerFiles(t, layers[len(layers)-1])
			_, has := files["lambdapod/supervisor"]
			if labelled != tc.want || has != tc.want || (files["lambdapod/"] != nil) != tc.want {
				t.Errorf("label %v, file %v, want %v; files %v", labelled, has, tc.want, keys(files))
			}
			if skipped := strings.Contains(out.String(), "not adding the supervisor"); skipped != (tc.name == "other-arch") {
				t.Errorf("log %q", out.String())
			}
		})
	}
}

// An entrypoint where the supervisor goes is refused.
func TestImageSupervisorEntrypointClash(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := buildstep.Main([]string{"image", "--base=scratch", "--bootstrap=" + f, "--supervisor=" + f,
		"--entrypoint=" + resources.SupervisorPath, "--destination=localhost:1/team/x:y"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "where the supervisor goes") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}

// layerFiles reads a layer's headers and regular files' contents by name.
func layerFiles(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files, contents := map[string]*tar.Header{}, map[string][]byte{}
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
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			contents[h.Name] = b
		}
	}
	return files, contents
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// elfHeader is the 64-byte header of a little-endian ELF64 executable for
// machine, with no sections or program headers: enough for debug/elf.
func elfHeader(machine elf.Machine) []byte {
	b := make([]byte, 64)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[58:], 64) // e_shentsize
	return b
}

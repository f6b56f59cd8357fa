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
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lambdapod/lambdapod/internal/buildstep"
	"github.com/lambdapod/lambdapod/internal/contract"
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
	reg := startRegistry(t)
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
	_, pushed, _ := runImage(t, reg+"/team/hello:abc",
		"--base="+reg+"/base:1", "--bootstrap="+bootstrap, "--platform=linux/amd64",
		"--label=org.opencontainers.image.revision=abc")
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
	reg := startRegistry(t)
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte("#!fake-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, pushed, _ := runImage(t, reg+"/team/hello:scratch",
		"--base=scratch", "--bootstrap="+bootstrap, "--platform=linux/arm64")
	cf, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/var/task/bootstrap" {
		t.Errorf("config: os %s arch %s entrypoint %q", cf.OS, cf.Architecture, cf.Config.Entrypoint)
	}
	layers, _ := pushed.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want only the bootstrap's", len(layers))
	}
	// A function that runs as a user other than root (its pods are
	// confined) can write /tmp, as on Lambda.
	files, _ := layerFiles(t, layers[0])
	if h := files["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("/tmp in the layer: %+v, want a directory of mode 1777", h)
	}
}

// With --supervisor the bootstrap's layer also holds the supervisor at
// /lambdapod/supervisor, the config says so with a label, and the same files
// give the same image.
func TestImageWithSupervisor(t *testing.T) {
	reg := startRegistry(t)
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
		digest, pushed, _ := runImage(t, reg+"/team/hello:"+tag,
			"--base=scratch", "--bootstrap="+bootstrap, "--supervisor="+supervisor, "--platform=linux/amd64",
			"--label=org.opencontainers.image.revision=abc")
		return digest, pushed
	}
	digest, pushed := push("one")

	cf, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Labels[contract.SupervisorLabel]; got != contract.SupervisorPath || contract.SupervisorPath != "/lambdapod/supervisor" {
		t.Errorf("label %s = %q, want %s", contract.SupervisorLabel, got, contract.SupervisorPath)
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
	reg := startRegistry(t)
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
			args := []string{"--base=scratch", "--bootstrap=" + bootstrap, "--platform=" + tc.platform}
			if tc.supervisor != "" {
				args = append(args, "--supervisor="+tc.supervisor)
			}
			_, pushed, out := runImage(t, reg+"/team/hello:"+tc.name, args...)
			cf, err := pushed.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			_, labelled := cf.Config.Labels[contract.SupervisorLabel]
			layers, _ := pushed.Layers()
			files, _ := layerFiles(t, layers[len(layers)-1])
			_, has := files["lambdapod/supervisor"]
			if labelled != tc.want || has != tc.want || (files["lambdapod/"] != nil) != tc.want {
				t.Errorf("label %v, file %v, want %v; files %v", labelled, has, tc.want, keys(files))
			}
			if skipped := strings.Contains(out, "not adding the supervisor"); skipped != (tc.name == "other-arch") {
				t.Errorf("log %q", out)
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
		"--entrypoint=" + contract.SupervisorPath, "--destination=localhost:1/team/x:y"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "where the supervisor goes") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}

// startRegistry serves a registry for the test; it returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// runImage runs build-step image with args, pushing to destination over
// plain HTTP, and returns the digest it reported, the image the registry
// serves under that digest, and the step's log.
func runImage(t *testing.T, destination string, args ...string) (string, v1.Image, string) {
	t.Helper()
	digestFile := filepath.Join(t.TempDir(), "IMAGE_DIGEST")
	var out, errOut bytes.Buffer
	args = append([]string{"image", "--destination=" + destination, "--digest-file=" + digestFile, "--insecure"}, args...)
	if code := buildstep.Main(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	digest, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	repo := destination[:strings.LastIndex(destination, ":")]
	pushed, err := remote.Image(ref(t, repo+"@"+string(digest)))
	if err != nil {
		t.Fatalf("the reported digest %q is not in the registry: %v", digest, err)
	}
	return string(digest), pushed, out.String()
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

// pushBuilt pushes a one-layer image for linux/arch, with a config as a
// Dockerfile build leaves it (entrypoint, command, user, working directory,
// environment, a label, and labels besides), to image: by its tag, or by
// digest only if it has none. It returns the image and its digest.
func pushBuilt(t *testing.T, image, arch string, oci bool, labels map[string]string) (v1.Image, string) {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Entrypoint = []string{"/lambda-entrypoint.sh"}
	cf.Config.Cmd = []string{"function.handler"}
	cf.Config.User = "1000:1000"
	cf.Config.WorkingDir = "/var/task"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin", "LAMBDA_TASK_ROOT=/var/task"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.revision": "abc"}
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	to := image
	if !strings.Contains(image[strings.LastIndex(image, "/")+1:], ":") {
		to = image + "@" + d.String()
	}
	if err := remote.Write(ref(t, to), img); err != nil {
		t.Fatal(err)
	}
	return img, d.String()
}

// addSupervisor runs build-step add-supervisor on the image with the
// digest file holding digest as kaniko writes it (and a newline, which is
// trimmed), and returns the digest file's content afterwards and the log.
func addSupervisor(t *testing.T, image, digest string, supervisor []byte) (string, string) {
	t.Helper()
	dir := t.TempDir()
	digestFile, sup := filepath.Join(dir, "IMAGE_DIGEST"), filepath.Join(dir, "supervisor")
	// Read-only, as the file that kaniko or buildah (root) wrote is to the
	// helper (65532): it must be replaced, not written to.
	if err := os.WriteFile(digestFile, []byte(digest+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sup, supervisor, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := buildstep.Main([]string{"add-supervisor",
		"--image=" + image, "--digest-file=" + digestFile, "--supervisor=" + sup, "--insecure",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	b, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), out.String()
}

// add-supervisor appends one layer with the supervisor at
// /lambdapod/supervisor to the image a Dockerfile build pushed, labels it,
// keeps the rest of its config, pushes it to the same tag (kaniko) or by
// digest only (no tag), and replaces the digest in the result file with
// the one the registry now serves.
func TestAddSupervisor(t *testing.T) {
	reg := startRegistry(t)
	supervisorBytes := append(elfHeader(elf.EM_X86_64), "the rest of the supervisor\x00\x01"...)

	for _, tc := range []struct {
		name, image string
		oci         bool
	}{
		{"kaniko", reg + "/team/hello:abc", false},
		{"oci-by-digest", reg + "/team/hello", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			built, old := pushBuilt(t, tc.image, "amd64", tc.oci, nil)
			got, logs := addSupervisor(t, tc.image, old, supervisorBytes)
			if got == old || !strings.HasPrefix(got, "sha256:") || strings.TrimSpace(got) != got {
				t.Fatalf("digest file %q, was %s; log %s", got, old, logs)
			}
			pushed, err := remote.Image(ref(t, reg+"/team/hello@"+got))
			if err != nil {
				t.Fatalf("the new digest %q is not in the registry: %v", got, err)
			}
			if d, _ := pushed.Digest(); d.String() != got {
				t.Errorf("the registry serves %s for %s", d, got)
			}
			if tc.name == "kaniko" {
				if d, err := remote.Head(ref(t, tc.image)); err != nil || d.Digest.String() != got {
					t.Errorf("%s is %v (%v), want the new image %s", tc.image, d, err, got)
				}
			} else if _, err := remote.Head(ref(t, tc.image+":latest")); err == nil {
				t.Errorf("an image pushed by digest only was tagged latest")
			}

			was, _ := built.ConfigFile()
			cf, err := pushed.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := cf.Config.Labels[contract.SupervisorLabel]; got != contract.SupervisorPath {
				t.Errorf("label %s = %q", contract.SupervisorLabel, got)
			}
			if cf.Config.Labels["org.opencontainers.image.revision"] != "abc" || len(cf.Config.Labels) != 2 {
				t.Errorf("labels %v", cf.Config.Labels)
			}
			if !reflect.DeepEqual(cf.Config.Entrypoint, was.Config.Entrypoint) || !reflect.DeepEqual(cf.Config.Cmd, was.Config.Cmd) ||
				cf.Config.User != "1000:1000" || cf.Config.WorkingDir != "/var/task" || !reflect.DeepEqual(cf.Config.Env, was.Config.Env) ||
				cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(was.Created.Time) {
				t.Errorf("config changed: %+v, was %+v", cf.Config, was.Config)
			}

			layers, _ := pushed.Layers()
			wasLayers, _ := built.Layers()
			if len(layers) != len(wasLayers)+1 || len(cf.RootFS.DiffIDs) != len(layers) || len(cf.History) != len(was.History)+1 {
				t.Fatalf("%d layers, %d diff IDs, %d history entries; was %d, %d", len(layers), len(cf.RootFS.DiffIDs), len(cf.History), len(wasLayers), len(was.History))
			}
			for i, l := range wasLayers {
				a, _ := l.Digest()
				b, _ := layers[i].Digest()
				if a != b {
					t.Errorf("layer %d is %s, was %s", i, b, a)
				}
			}
			wantType := types.DockerLayer
			if tc.oci {
				wantType = types.OCILayer
			}
			if mt, _ := layers[len(layers)-1].MediaType(); mt != wantType {
				t.Errorf("the new layer is a %s in a %s", mt, func() types.MediaType { m, _ := pushed.MediaType(); return m }())
			}
			files, contents := layerFiles(t, layers[len(layers)-1])
			if k := keys(files); len(k) != 2 {
				t.Errorf("the layer holds %v, want the supervisor and its directory", k)
			}
			if h := files["lambdapod/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("lambdapod/: %+v", h)
			}
			h := files["lambdapod/supervisor"]
			if h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("lambdapod/supervisor: %+v", h)
			}
			if !bytes.Equal(contents["lambdapod/supervisor"], supervisorBytes) {
				t.Errorf("lambdapod/supervisor holds %q, want %q", contents["lambdapod/supervisor"], supervisorBytes)
			}
		})
	}
}

// add-supervisor leaves an image as it is, with its tag and the digest
// file, when it carries the supervisor already, when the supervisor is for
// another architecture than the image, and when it is a multi-platform
// index.
func TestAddSupervisorLeavesAlone(t *testing.T) {
	reg := startRegistry(t)
	amd64 := elfHeader(elf.EM_X86_64)

	check := func(t *testing.T, image, digest string, supervisor []byte, wantLog string) {
		t.Helper()
		got, logs := addSupervisor(t, image, digest, supervisor)
		if got != digest+"\n" {
			t.Errorf("digest file %q, want it unchanged (%s)", got, digest)
		}
		if !strings.Contains(logs, wantLog) {
			t.Errorf("log %q lacks %q", logs, wantLog)
		}
		if d, err := remote.Head(ref(t, image)); err != nil || d.Digest.String() != digest {
			t.Errorf("%s is %v (%v), want it unchanged (%s)", image, d, err, digest)
		}
	}
	t.Run("labelled", func(t *testing.T) {
		image := reg + "/team/labelled:abc"
		_, digest := pushBuilt(t, image, "amd64", false, map[string]string{contract.SupervisorLabel: "/opt/supervisor"})
		check(t, image, digest, amd64, "carries it already")
	})
	t.Run("other-arch", func(t *testing.T) {
		image := reg + "/team/arm:abc"
		_, digest := pushBuilt(t, image, "arm64", false, nil)
		check(t, image, digest, amd64, "is for EM_X86_64, the image for arm64")
	})
	t.Run("index", func(t *testing.T) {
		image := reg + "/team/multi:abc"
		idx, err := random.Index(128, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref(t, image), idx); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		check(t, image, d.String(), amd64, "multi-platform images are not supported")
	})
}

// add-supervisor refuses missing flags, a digest file that holds no
// digest and an image reference with a digest.
func TestAddSupervisorUsage(t *testing.T) {
	dir := t.TempDir()
	bad, sup := filepath.Join(dir, "IMAGE_DIGEST"), filepath.Join(dir, "supervisor")
	if err := os.WriteFile(bad, []byte("latest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sup, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image=localhost:1/team/x:y", "--supervisor=" + sup}, "required"},
		{[]string{"--image=localhost:1/team/x:y", "--digest-file=" + bad, "--supervisor=" + sup}, `"latest"`},
		{[]string{"--image=localhost:1/team/x:y", "--digest-file=" + filepath.Join(dir, "none"), "--supervisor=" + sup}, "reading the digest"},
		{[]string{"--image=localhost:1/team/x@" + digest, "--digest-file=" + bad, "--supervisor=" + sup}, "without a digest"},
	} {
		var out, errOut bytes.Buffer
		if code := buildstep.Main(append([]string{"add-supervisor"}, tc.args...), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%q: exit %d %q, want 1 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}

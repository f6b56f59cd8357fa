// Command images builds lambdapod's container images without Docker and
// pushes them to a registry (by default the local cluster's, see
// hack/cluster/up.sh):
//
//	lambdapod/manager          /manager           (module root), /supervisor (./runtime-sidecar/supervisor/cmd)
//	lambdapod/activator        /activator         (./activator/cmd)
//	lambdapod/runtime-sidecar  /runtime-sidecar   (./runtime-sidecar/cmd), /supervisor (./runtime-sidecar/supervisor/cmd)
//	lambdapod/pause            /pause             (./hack/images/pause, the pod sandbox image)
//	lambdapod/nats             /nats-server       (github.com/nats-io/nats-server/v2 at the version in go.mod)
//
// The NATS server is the JetStream server the chart runs for durable Event
// invocations (eventQueue, docs/async.md). It builds in the project's own
// module, which requires it already (the integration tests run it in
// process), so it costs a link with a warm build cache and no tools module.
//
// The manager image is also the builds' helper image: the Go strategy's
// image step copies its /supervisor into every image it builds.
//
// Each is one layer on an empty base: static (CGO_ENABLED=0) binaries with
// mode 0755, a distroless-style /etc/passwd and /etc/group, the host's CA
// bundle, user 65532 (65535 for pause). With -tekton it also builds
// Tekton's controller and step helper images from github.com/tektoncd/pipeline
// in a tools module under bin/tekton (never the project's go.mod), laid out
// the way ko lays them out (/ko-app/<name>), since Tekton hard-codes those
// paths.
//
// With -traefik it builds Traefik (github.com/traefik/traefik/v3 at
// traefikVersion, with the replaces of its own go.mod) as traefik/traefik:
// /traefik, user 65532. make dev runs it as the cluster's Ingress
// controller.
//
// With -kaniko it builds kaniko's executor (github.com/GoogleContainerTools/kaniko
// at kanikoVersion) as lambdapod/kaniko-executor, laid out like kaniko's own
// image (/kaniko/executor, /kaniko/ssl/certs, DOCKER_CONFIG=/kaniko/.docker/,
// root), for builds with the Dockerfile strategy.
//
// It prints "<image>@<digest>" per image, and with -tarball also writes all
// of them to one docker-style tarball (for `ctr -n k8s.io images import`).
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lambdapod/lambdapod/hack/internal/ociimage"
)

// binary is one Go main package to put at Path in an image.
type binary struct {
	Pkg  string // package path, relative to Dir
	Path string // absolute path in the image
}

type image struct {
	Name       string   // repository under the registry
	Dir        string   // module directory the packages build in ("" = project root)
	Bins       []binary // the first is the entrypoint
	User       string
	Env        []string
	Entrypoint []string          // default: the first binary
	Files      map[string]string // path in the image -> host file to copy
	Dirs       []string          // empty directories to add (0755, root)
	LDFlags    string            // added to -s -w (e.g. -X for a version)
}

const (
	tektonModule  = "github.com/tektoncd/pipeline"
	tektonVersion = "v1.15.0" // newest whose module zip the proxy serves
	kanikoModule  = "github.com/GoogleContainerTools/kaniko"
	kanikoVersion = "v1.23.2" // the last release; its module zip has no vendor/, so -mod=mod
	// Traefik, the Ingress controller of make dev. v3.7 needs a module of
	// its repository that the proxy does not serve (it replaces
	// github.com/traefik/traefik/dynamic/ext with a local directory), so the
	// newest v3.6.
	traefikModule  = "github.com/traefik/traefik/v3"
	traefikVersion = "v3.6.12"
)

// traefikModEdits repeat what Traefik's own go.mod replaces and excludes
// (a tools module that requires it does not inherit them).
var traefikModEdits = []string{
	"-replace=github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e",
	"-replace=github.com/gorilla/mux=github.com/containous/mux@v0.0.0-20250523120546-41b6ec3aed59",
	"-replace=github.com/mailgun/minheap=github.com/containous/minheap@v0.0.0-20190809180810-6e71eb837595",
	"-exclude=github.com/tencentcloud/tencentcloud-sdk-go@v3.0.83+incompatible",
}

var tektonCommands = []string{"controller", "entrypoint", "nop", "sidecarlogresults", "workingdirinit"}

func projectImages() []image {
	return []image{
		// The build helper image too: Go builds copy /supervisor into the
		// function's image (controllers/build helperSupervisor).
		{Name: "lambdapod/manager", Bins: []binary{
			{".", "/manager"},
			{"./runtime-sidecar/supervisor/cmd", "/supervisor"},
		}, User: "65532:65532"},
		{Name: "lambdapod/activator", Bins: []binary{{"./activator/cmd", "/activator"}}, User: "65532:65532"},
		{Name: "lambdapod/runtime-sidecar", Bins: []binary{
			{"./runtime-sidecar/cmd", "/runtime-sidecar"},
			{"./runtime-sidecar/supervisor/cmd", "/supervisor"},
		}, User: "65532:65532"},
		{Name: "lambdapod/pause", Bins: []binary{{"./hack/images/pause", "/pause"}}, User: "65535:65535"},
		// The event queue's server (charts/lambdapod nats.*): the version
		// the project's go.mod requires, its main package the module root.
		{Name: "lambdapod/nats", Bins: []binary{{"github.com/nats-io/nats-server/v2", "/nats-server"}}, User: "65532:65532"},
	}
}

func tektonImages(dir string) []image {
	var out []image
	for _, c := range tektonCommands {
		out = append(out, image{
			Name: "tekton/" + c,
			Dir:  dir,
			Bins: []binary{{tektonModule + "/cmd/" + c, "/ko-app/" + c}},
			// Tekton's pods run these images as whatever user the step
			// asks for; ko's default base runs as 65532 too.
			User: "65532:65532",
			Env:  []string{"PATH=/ko-app:/usr/local/bin:/usr/bin:/bin", "KO_DATA_PATH=/var/run/ko"},
		})
	}
	return out
}

// kanikoImage is kaniko's executor the way its Dockerfile lays it out: it
// runs as root (it unpacks the base image over its own root filesystem) and
// keeps its own files under /kaniko, which it never overwrites.
func kanikoImage(dir string) image {
	return image{
		Name: "lambdapod/kaniko-executor",
		Dir:  dir,
		Bins: []binary{{kanikoModule + "/cmd/executor", "/kaniko/executor"}},
		User: "0:0",
		Env: []string{"PATH=/usr/local/bin:/kaniko", "HOME=/root", "USER=root",
			"SSL_CERT_DIR=/kaniko/ssl/certs", "DOCKER_CONFIG=/kaniko/.docker/"},
		Files: map[string]string{"/kaniko/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt"},
		Dirs:  []string{"/kaniko/.docker", "/workspace"},
	}
}

// traefikImage is Traefik's binary alone, as its own image has it
// (/traefik as the entrypoint), run as 65532: its entry points listen
// above 1024.
func traefikImage(dir string) image {
	return image{
		Name:    "traefik/traefik",
		Dir:     dir,
		Bins:    []binary{{traefikModule + "/cmd/traefik", "/traefik"}},
		User:    "65532:65532",
		LDFlags: "-X " + traefikModule + "/pkg/version.Version=" + traefikVersion,
	}
}

func main() {
	registry := flag.String("registry", "localhost:5000", "registry to push to (plain HTTP); empty: do not push")
	tag := flag.String("tag", "dev", "tag of every image")
	only := flag.String("images", "", "comma-separated image names to build (e.g. manager,pause); default all")
	tekton := flag.Bool("tekton", false, "also build Tekton "+tektonVersion+"'s controller and helper images")
	kaniko := flag.Bool("kaniko", false, "also build kaniko "+kanikoVersion+"'s executor image (the Dockerfile strategy's builder)")
	traefik := flag.Bool("traefik", false, "also build Traefik "+traefikVersion+" (make dev's Ingress controller)")
	work := flag.String("work", "bin/images", "directory for built binaries and the Tekton tools module")
	tarPath := flag.String("tarball", "", "also write every image to this docker-style tarball")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("images: ")

	root, err := os.Getwd()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		log.Fatal("run from the repository root (go run ./hack/images)")
	}
	work2, err := filepath.Abs(*work)
	if err != nil {
		log.Fatal(err)
	}
	imgs := projectImages()
	if *tekton {
		dir, err := toolsModule(filepath.Join(work2, "tekton-src"), tektonModule, tektonVersion, tektonCommands, nil)
		if err != nil {
			log.Fatalf("tekton tools module: %v", err)
		}
		imgs = append(imgs, tektonImages(dir)...)
	}
	if *kaniko {
		dir, err := toolsModule(filepath.Join(work2, "kaniko-src"), kanikoModule, kanikoVersion, []string{"executor"}, nil)
		if err != nil {
			log.Fatalf("kaniko tools module: %v", err)
		}
		imgs = append(imgs, kanikoImage(dir))
	}
	if *traefik {
		dir, err := toolsModule(filepath.Join(work2, "traefik-src"), traefikModule, traefikVersion, []string{"traefik"}, traefikModEdits)
		if err != nil {
			log.Fatalf("traefik tools module: %v", err)
		}
		imgs = append(imgs, traefikImage(dir))
	}
	if *only != "" {
		want := map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			want[strings.TrimSpace(n)] = true
		}
		var sel []image
		for _, im := range imgs {
			if want[im.Name] || want[filepath.Base(im.Name)] {
				sel = append(sel, im)
			}
		}
		if len(sel) == 0 {
			log.Fatalf("no image matches -images %q", *only)
		}
		imgs = sel
	}

	extra, err := baseFiles()
	if err != nil {
		log.Fatal(err)
	}
	refs := map[name.Reference]v1.Image{}
	var order []name.Reference
	for _, im := range imgs {
		start := time.Now()
		img, err := build(root, work2, im, extra)
		if err != nil {
			log.Fatalf("%s: %v", im.Name, err)
		}
		repo := im.Name
		if *registry != "" {
			repo = *registry + "/" + im.Name
		}
		ref, err := name.NewTag(repo+":"+*tag, name.Insecure)
		if err != nil {
			log.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			log.Fatal(err)
		}
		if *registry != "" {
			if err := remote.Write(ref, img); err != nil {
				log.Fatalf("pushing %s: %v", ref, err)
			}
		}
		log.Printf("%s built in %s", ref, time.Since(start).Round(100*time.Millisecond))
		fmt.Printf("%s@%s\n", ref.Context(), d)
		refs[ref] = img
		order = append(order, ref)
	}
	if *tarPath != "" {
		if err := os.MkdirAll(filepath.Dir(*tarPath), 0o755); err != nil {
			log.Fatal(err)
		}
		tmp := *tarPath + ".tmp"
		if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
			log.Fatalf("writing %s: %v", *tarPath, err)
		}
		if err := os.Rename(tmp, *tarPath); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %d images to %s", len(order), *tarPath)
	}
}

// build compiles im's binaries and makes a one-layer image of them.
func build(root, work string, im image, extra map[string][]byte) (v1.Image, error) {
	files := map[string][]byte{}
	for k, v := range extra {
		files[k] = v
	}
	dir := root
	if im.Dir != "" {
		dir = im.Dir
	}
	for dst, src := range im.Files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files[dst] = data
	}
	for _, b := range im.Bins {
		out := filepath.Join(work, "bin", strings.TrimPrefix(im.Name, "lambdapod/")+"-"+filepath.Base(b.Path))
		log.Printf("go build %s -> %s", b.Pkg, b.Path)
		cmd := exec.Command("go", "build", "-trimpath", strings.TrimSpace("-ldflags=-s -w "+im.LDFlags), "-o", out, b.Pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if im.Dir != "" {
			cmd.Env = append(cmd.Env, "GOWORK=off", "GOFLAGS=-mod=mod")
		}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build %s: %w", b.Pkg, err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		files[b.Path] = data
	}
	layer, err := layerOf(files, im.Dirs)
	if err != nil {
		return nil, err
	}
	return ociimage.FromLayer(layer, time.Unix(0, 0).UTC(), func(c *v1.Config) {
		ep := im.Entrypoint
		if ep == nil {
			ep = []string{im.Bins[0].Path}
		}
		c.Entrypoint = ep
		c.Cmd = nil
		c.User = im.User
		c.WorkingDir = "/"
		c.Env = append([]string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}, im.Env...)
		if !slices.ContainsFunc(im.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
			c.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, c.Env...)
		}
		c.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/lambdapod/lambdapod"}
	})
}

// baseFiles are what a distroless static base would bring: users, groups and
// CA certificates (the manager talks to git hosts over HTTPS).
func baseFiles() (map[string][]byte, error) {
	files := map[string][]byte{
		"/etc/passwd":        []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
		"/etc/group":         []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"),
		"/etc/nsswitch.conf": []byte("hosts: files dns\n"),
	}
	if b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		files["/etc/ssl/certs/ca-certificates.crt"] = b
	}
	return files, nil
}

// layerOf writes files into a tar layer with deterministic headers: parent
// directories 0755, binaries and everything under /ko-app 0755, other files
// 0644, all owned by root, mtime 0, plus /tmp (1777) and /home/nonroot
// (owned by 65532).
func layerOf(files map[string][]byte, emptyDirs []string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	epoch := time.Unix(0, 0)
	mkdir := func(d string, mode int64, uid int) error {
		if d == "/" || d == "." || dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch})
	}
	var parents func(string) error
	parents = func(p string) error {
		d := filepath.Dir(p)
		if d == "/" || dirs[d] {
			return nil
		}
		if err := parents(d); err != nil {
			return err
		}
		return mkdir(d, 0o755, 0)
	}
	if err := mkdir("/tmp", 0o1777, 0); err != nil {
		return nil, err
	}
	if err := parents("/home/nonroot"); err != nil {
		return nil, err
	}
	if err := mkdir("/home/nonroot", 0o755, 65532); err != nil {
		return nil, err
	}
	for _, d := range emptyDirs {
		if err := parents(d); err != nil {
			return nil, err
		}
		if err := mkdir(d, 0o755, 0); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := parents(n); err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if !strings.HasPrefix(n, "/etc/") {
			mode = 0o755
		}
		data := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(n, "/"), Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// toolsModule prepares a tools module under dir that requires module at
// version and imports its commands (cmd/<name>), so they build with that
// module's own dependency versions, independent of the project's go.mod.
// edits are further go mod edit flags (the module's own replaces).
func toolsModule(dir, module, version string, commands []string, edits []string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte(module+" "+version)) {
		if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
			return dir, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tools := "//go:build tools\n\npackage tools\n\nimport (\n"
	for _, c := range commands {
		tools += "\t_ \"" + module + "/cmd/" + c + "\"\n"
	}
	tools += ")\n"
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools), 0o644); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(dir, "go.mod"))
	os.Remove(filepath.Join(dir, "go.sum"))
	for _, args := range [][]string{
		{"mod", "init", "lambdapod.local/" + filepath.Base(dir)},
		append([]string{"mod", "edit", "-require", module + "@" + version}, edits...),
		{"mod", "tidy"},
	} {
		log.Printf("%s: go %s", filepath.Base(dir), strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
	}
	return dir, nil
}

// Command bashimage makes an image-sourced sample function without Docker
// and pushes it to the node registry: the Lambda Developer Guide's bash
// custom runtime (a bootstrap that loops on /next with curl and posts the
// response, and a function.sh whose handler echoes the event), and a
// stream.sh handler (_HANDLER=stream.handler) whose response the bootstrap
// streams as the Runtime API documents it, and make e2e's Event handlers:
// record.sh (record.handler: posts its request id and event to RECORD_URL)
// and fail.sh (fail.handler: records, then fails every time).
//
//	bashimage -registry localhost:5000
//
// One layer: the host's /bin/bash and curl with the shared libraries that
// ldd lists for them, at the same paths (the dynamic loader included),
// /var/task/bootstrap (the entrypoint) and /var/task/function.sh, an empty
// /tmp (1777). It runs as 65532. The layer is reproducible (fixed times), so
// a second run pushes nothing new. It prints "<image>@<digest>".
//
// Then the same image with a second layer, pushed to -extension-repository:
// the external extension in ./extension, compiled static for this machine's
// platform, at /opt/extensions/event-printer, where the supervisor starts
// it before the bootstrap, and env.sh (env.handler: answers with the
// logging variables the bootstrap got). It prints that image's
// "<image>@<digest>" on a second line.
package main

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lambdapod/lambdapod/hack/internal/ociimage"
)

var (
	//go:embed bootstrap
	bootstrap []byte
	//go:embed function.sh
	functionSh []byte
	//go:embed stream.sh
	streamSh []byte
	//go:embed record.sh
	recordSh []byte
	//go:embed fail.sh
	failSh []byte
	//go:embed env.sh
	envSh []byte
)

func main() {
	registry := flag.String("registry", "localhost:5000", "registry to push to (plain HTTP)")
	repo := flag.String("repository", "functions/bash-curl", "repository under the registry")
	tag := flag.String("tag", "dev", "tag")
	extRepo := flag.String("extension-repository", "functions/bash-curl-ext", "repository under the registry of the image with the extension")
	goCmd := flag.String("go", "go", "the go command that compiles the extension")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bashimage: ")

	ref, err := name.NewTag(*registry+"/"+*repo+":"+*tag, name.Insecure)
	if err != nil {
		log.Fatal(err)
	}
	extRef, err := name.NewTag(*registry+"/"+*extRepo+":"+*tag, name.Insecure)
	if err != nil {
		log.Fatal(err)
	}
	files := map[string]string{} // path in the image -> file on the host
	for _, bin := range []struct{ at, host string }{{"/bin/bash", "bash"}, {"/usr/bin/curl", "curl"}} {
		p, err := exec.LookPath(bin.host)
		if err != nil {
			log.Fatalf("%s: %v (install it on the host)", bin.host, err)
		}
		files[bin.at] = p
		libs, err := sharedLibraries(p)
		if err != nil {
			log.Fatal(err)
		}
		for _, l := range libs {
			files[l] = l
		}
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	dir := func(d string, mode int64) {
		var parents []string
		for ; d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(parents[i], "/") + "/", Mode: 0o755, ModTime: mtime}
			if i == 0 && mode != 0 {
				hdr.Mode = mode
			}
			if err := tw.WriteHeader(hdr); err != nil {
				log.Fatal(err)
			}
		}
	}
	file := func(at string, mode int64, b []byte) {
		dir(path.Dir(at), 0)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(at, "/"), Mode: mode, Size: int64(len(b)), ModTime: mtime}); err != nil {
			log.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			log.Fatal(err)
		}
	}
	dir("/tmp", 0o1777)
	paths := make([]string, 0, len(files))
	for at := range files {
		paths = append(paths, at)
	}
	sort.Strings(paths)
	for _, at := range paths {
		// a library path may be a symlink on the host (/lib64/ld-linux...):
		// the image gets the file it points at, under the path ldd named
		b, err := os.ReadFile(files[at])
		if err != nil {
			log.Fatal(err)
		}
		file(at, 0o755, b)
	}
	file("/var/task/bootstrap", 0o755, bootstrap)
	file("/var/task/function.sh", 0o644, functionSh)
	file("/var/task/stream.sh", 0o644, streamSh)
	file("/var/task/record.sh", 0o644, recordSh)
	file("/var/task/fail.sh", 0o644, failSh)
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		log.Fatal(err)
	}
	img, err := ociimage.FromLayer(layer, mtime, func(c *v1.Config) {
		c.Entrypoint = []string{"/var/task/bootstrap"}
		c.User = "65532:65532"
		c.WorkingDir = "/var/task"
		c.Env = []string{"PATH=/usr/bin:/bin", "LAMBDA_TASK_ROOT=/var/task", "_HANDLER=function.handler"}
		c.Labels = map[string]string{"org.opencontainers.image.title": "bash+curl custom runtime (lambdapod make dev)"}
	})
	if err != nil {
		log.Fatal(err)
	}
	digestRef, err := ociimage.Push(ref, img)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %d files, %d bytes uncompressed", ref, len(files)+2, len(layerBytes))
	fmt.Println(digestRef)

	extLayer, err := extensionLayer(*goCmd, mtime)
	if err != nil {
		log.Fatal(err)
	}
	extImg, err := mutate.AppendLayers(img, extLayer)
	if err != nil {
		log.Fatal(err)
	}
	extDigestRef, err := ociimage.Push(extRef, extImg)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %s", extRef, path.Join(extensionsDir, extensionName))
	fmt.Println(extDigestRef)
}

const (
	// extensionsDir is where Lambda (and lambdapod's supervisor) looks for
	// external extensions.
	extensionsDir = "/opt/extensions"
	// extensionName is the extension's file name, which is the name it
	// registers under: make e2e looks for it in the function's log.
	extensionName = "event-printer"
)

// extensionLayer compiles ./extension static and puts it, executable, in
// /opt/extensions, with /var/task/env.sh. -trimpath and no VCS stamp keep
// the binary, so the layer, the same from one run to the next.
func extensionLayer(goCmd string, mtime time.Time) (v1.Layer, error) {
	tmp, err := os.MkdirTemp("", "bashimage-extension")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, extensionName)
	build := exec.Command(goCmd, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin,
		"github.com/lambdapod/lambdapod/hack/dev/bashimage/extension")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("compiling the extension: %v", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		at   string
		mode int64
		b    []byte
	}{
		{"/opt/", 0o755, nil},
		{extensionsDir + "/", 0o755, nil},
		{path.Join(extensionsDir, extensionName), 0o755, b},
		// the first layer has /var/task already
		{"/var/task/env.sh", 0o644, envSh},
	} {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.at, "/"), Mode: f.mode, Size: int64(len(f.b)), ModTime: mtime}
		if strings.HasSuffix(f.at, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// lddPath matches the absolute paths in ldd's output: "libc.so.6 =>
// /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2
// (0x...)"; linux-vdso has none.
var lddPath = regexp.MustCompile(`(?m)(?:=>\s+|^\s+)(/\S+)\s+\(0x`)

func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %v", bin, err)
	}
	var libs []string
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, filepath.Clean(m[1]))
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in %q", bin, out)
	}
	return libs, nil
}

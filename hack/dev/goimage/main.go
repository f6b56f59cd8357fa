// Command goimage makes the Go toolchain image of the Go build strategy
// (the build ConfigMap's goImage) from the host's Go installation, without
// Docker, and pushes it to the node registry:
//
//	goimage -registry localhost:5000 -seed-cache bin/dev/go-cache
//
// One layer: GOROOT at the same path as on the host (bin, pkg/tool for this
// platform, pkg/include and the standard library's sources, without tests),
// a distroless-style /etc/passwd, /tmp (1777). It runs as 65532 with go on
// PATH, HOME, GOCACHE and GOPATH under /tmp, GOFLAGS=-mod=vendor,
// GOPROXY=off and GOTOOLCHAIN=local: a build in a pod reaches nothing
// outside the node, so a function's module must be vendored. With
// -seed-cache, the build cache of the given directory is copied in (as
// GOCACHE, owned by 65532), so a pod's first build does not compile the
// standard library again. The tag is the Go version (go1.26.x); an image
// already in the registry under that tag is left alone unless -force.
package main

import (
	"archive/tar"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lambdapod/lambdapod/hack/internal/ociimage"
)

const (
	user    = 65532
	gocache = "/tmp/go-cache"
)

func main() {
	registry := flag.String("registry", "localhost:5000", "registry to push to (plain HTTP)")
	repo := flag.String("repository", "lambdapod/go", "repository under the registry")
	tag := flag.String("tag", "", "tag (default: the host's Go version, e.g. go1.26.8)")
	seed := flag.String("seed-cache", "", "a GOCACHE directory to copy into the image")
	work := flag.String("work", "bin/dev", "directory for the layer tarball")
	force := flag.Bool("force", false, "push even when the tag exists")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("goimage: ")

	goroot := strings.TrimSpace(run("go", "env", "GOROOT"))
	version := strings.TrimSpace(run("go", "env", "GOVERSION"))
	if *tag == "" {
		*tag = version
	}
	ref, err := name.NewTag(*registry+"/"+*repo+":"+*tag, name.Insecure)
	if err != nil {
		log.Fatal(err)
	}
	if !*force {
		if d, err := remote.Head(ref); err == nil {
			log.Printf("%s exists", ref)
			fmt.Printf("%s@%s\n", ref.Context(), d.Digest)
			return
		}
	}
	start := time.Now()
	if err := os.MkdirAll(*work, 0o755); err != nil {
		log.Fatal(err)
	}
	layerPath := filepath.Join(*work, "go-image-layer.tar")
	n, err := writeLayer(layerPath, goroot, *seed)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("layer: %d files from %s in %s", n, goroot, time.Since(start).Round(100*time.Millisecond))
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		log.Fatal(err)
	}
	img, err := ociimage.FromLayer(layer, time.Unix(0, 0).UTC(), func(c *v1.Config) {
		c.Entrypoint = []string{filepath.Join(goroot, "bin", "go")}
		c.User = fmt.Sprintf("%d:%d", user, user)
		c.WorkingDir = "/tmp"
		c.Env = []string{
			"PATH=" + filepath.Join(goroot, "bin") + ":/usr/local/bin:/usr/bin:/bin",
			"HOME=/tmp",
			"GOCACHE=" + gocache,
			"GOPATH=/tmp/go",
			"GOFLAGS=-mod=vendor",
			"GOPROXY=off",
			"GOTOOLCHAIN=local",
			"GOTELEMETRY=off",
		}
		c.Labels = map[string]string{"org.opencontainers.image.title": "Go " + version + " toolchain (lambdapod make dev)"}
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("pushing %s", ref)
	digestRef, err := ociimage.Push(ref, img)
	if err != nil {
		log.Fatal(err)
	}
	os.Remove(layerPath)
	log.Printf("%s pushed in %s", ref, time.Since(start).Round(100*time.Millisecond))
	fmt.Println(digestRef)
}

func run(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		log.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// keep says which files of GOROOT a build needs: the go command and the
// tools of this platform, the runtime's assembly headers and the standard
// library's sources (not the toolchain's own, not tests).
func keep(rel string, d fs.DirEntry) bool {
	tool := "pkg/tool/" + runtime.GOOS + "_" + runtime.GOARCH
	switch {
	case rel == ".":
		return true
	case rel == "VERSION" || rel == "go.env":
		return true
	case rel == "bin" || strings.HasPrefix(rel, "bin/"):
		return true
	case rel == "pkg" || rel == "pkg/tool" || rel == tool || strings.HasPrefix(rel, tool+"/"):
		return true
	case rel == "pkg/include" || strings.HasPrefix(rel, "pkg/include/"):
		return true
	case rel == "src":
		return true
	case strings.HasPrefix(rel, "src/"):
		if rel == "src/cmd" || strings.HasPrefix(rel, "src/cmd/") {
			// the toolchain's own sources: not needed to build programs
			return false
		}
		base := d.Name()
		if d.IsDir() {
			return base != "testdata"
		}
		return !strings.HasSuffix(base, "_test.go")
	}
	return false
}

func writeLayer(path, goroot, seed string) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0)
	n := 0
	dirs := map[string]bool{}
	dir := func(p string, mode int64, uid int) error {
		if dirs[p] {
			return nil
		}
		dirs[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch})
	}
	file := func(p string, mode int64, uid int, mtime time.Time, r io.Reader, size int64) error {
		n++
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Uid: uid, Gid: uid, Size: size, ModTime: mtime}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	for _, d := range []string{"/etc", "/tmp", "/tmp/go", "/home"} {
		mode := int64(0o755)
		if strings.HasPrefix(d, "/tmp") {
			mode = 0o1777
		}
		if err := dir(d, mode, 0); err != nil {
			return 0, err
		}
	}
	for p, s := range map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n",
		"/etc/group":  "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
	} {
		if err := file(p, 0o644, 0, epoch, strings.NewReader(s), int64(len(s))); err != nil {
			return 0, err
		}
	}
	// parents of GOROOT
	var parts []string
	for p := filepath.Dir(goroot); p != "/"; p = filepath.Dir(p) {
		parts = append([]string{p}, parts...)
	}
	for _, p := range parts {
		if err := dir(p, 0o755, 0); err != nil {
			return 0, err
		}
	}
	err = filepath.WalkDir(goroot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(goroot, p)
		if !keep(filepath.ToSlash(rel), d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return dir(p, 0o755, 0)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		r, err := os.Open(p)
		if err != nil {
			return err
		}
		defer r.Close()
		return file(p, mode, 0, epoch, r, info.Size())
	})
	if err != nil {
		return 0, err
	}
	if err := dir(gocache, 0o755, user); err != nil {
		return 0, err
	}
	if seed != "" {
		err = filepath.WalkDir(seed, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(seed, p)
			if rel == "." {
				return nil
			}
			target := gocache + "/" + filepath.ToSlash(rel)
			if d.IsDir() {
				return dir(target, 0o755, user)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			r, err := os.Open(p)
			if err != nil {
				return err
			}
			defer r.Close()
			// real mtimes: the go command trims entries unused for days
			return file(target, 0o644, user, info.ModTime(), r, info.Size())
		})
		if err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return n, f.Close()
}

package buildstep

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lambdapod/lambdapod/internal/contract"
)

// RuntimeBootstrap is where Lambda's provided runtimes keep the bootstrap;
// the image links it to the entrypoint so either location works.
const RuntimeBootstrap = "/var/runtime/bootstrap"

// ImageOptions say what to add to which base and where to push it.
type ImageOptions struct {
	Base, Platform, Bootstrap, Entrypoint, Destination string
	Labels                                             map[string]string
	// Supervisor, if set, is a file (the supervisor binary in the helper's
	// own image) that the bootstrap's layer also holds at
	// contract.SupervisorPath, announced by the contract.SupervisorLabel
	// label, so the function's pods need no volume to receive it.
	Supervisor string
	Insecure   bool
	Log        io.Writer
	// Remote adds registry options (tests use a transport).
	Remote []remote.Option
}

// logAndNames are a step's log (to w, if not nil) and its options for
// parsing image references (plain HTTP if insecure).
func logAndNames(w io.Writer, insecure bool) (func(string, ...any), []name.Option) {
	logf := func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, format+"\n", args...)
		}
	}
	if insecure {
		return logf, []name.Option{name.Insecure}
	}
	return logf, nil
}

// Image adds the bootstrap to the base image as its ENTRYPOINT (and the
// supervisor, if o.Supervisor is set), pushes the result and returns its
// digest (sha256:...). Registry credentials come from
// $DOCKER_CONFIG/config.json, which Tekton writes from the build's
// ServiceAccount.
func Image(ctx context.Context, o ImageOptions) (string, error) {
	logf, nameOpts := logAndNames(o.Log, o.Insecure)
	platform, err := v1.ParsePlatform(o.Platform)
	if err != nil {
		return "", fmt.Errorf("--platform %q: %w", o.Platform, err)
	}
	opts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(*platform),
	}, o.Remote...)

	dest, err := name.ParseReference(o.Destination, nameOpts...)
	if err != nil {
		return "", fmt.Errorf("destination %q: %w", o.Destination, err)
	}
	base, err := baseImage(o, *platform, nameOpts, opts, logf)
	if err != nil {
		return "", err
	}
	bootstrap, err := os.ReadFile(o.Bootstrap)
	if err != nil {
		return "", fmt.Errorf("reading the bootstrap: %w", err)
	}
	var supervisor []byte
	createdBy := "lambdapod build-step image: COPY bootstrap " + o.Entrypoint
	if o.Supervisor != "" {
		if o.Entrypoint == contract.SupervisorPath || strings.HasPrefix(contract.SupervisorPath, o.Entrypoint+"/") {
			return "", fmt.Errorf("--entrypoint %s is where the supervisor goes", o.Entrypoint)
		}
		// A build pod on a node of another architecture than the
		// bootstrap's gets nil: its pods get the supervisor through a
		// volume instead, from the runtime sidecar's image.
		if supervisor, err = readSupervisor(o.Supervisor, platform.Architecture, logf); err != nil {
			return "", err
		}
		if supervisor != nil {
			createdBy += ", supervisor " + contract.SupervisorPath
		}
	}
	layer, err := bootstrapLayer(bootstrap, o.Entrypoint, supervisor)
	if err != nil {
		return "", err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: createdBy,
		Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
	}})
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{o.Entrypoint}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = path.Dir(o.Entrypoint)
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range o.Labels {
		cf.Config.Labels[k] = v
	}
	if supervisor != nil {
		cf.Config.Labels[contract.SupervisorLabel] = contract.SupervisorPath
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	logf("pushing %s", dest)
	if err := remote.Write(dest, img, opts...); err != nil {
		return "", fmt.Errorf("pushing %s: %w", dest, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	logf("pushed %s@%s", dest.Context(), digest)
	return digest.String(), nil
}

// bootstrapLayer holds the bootstrap at entrypoint, mode 0755, a link to it
// from /var/runtime/bootstrap and, unless supervisor is nil, the supervisor
// at contract.SupervisorPath, mode 0755, all root-owned with fixed times so
// that the same files always give the same layer.
func bootstrapLayer(bootstrap []byte, entrypoint string, supervisor []byte) (v1.Layer, error) {
	files := []layerFile{{Path: entrypoint, Data: bootstrap}}
	if entrypoint != RuntimeBootstrap {
		files = append(files, layerFile{Path: RuntimeBootstrap, Link: entrypoint})
	}
	if supervisor != nil {
		files = append(files, layerFile{Path: contract.SupervisorPath, Data: supervisor})
	}
	// Lambda gives every function a writable /tmp; a scratch base has
	// none, and a confined function (not root) could not make one.
	files = append(files, layerFile{Path: "/tmp", Dir: true})
	return filesLayer(files)
}

// supervisorLayer holds the supervisor alone at contract.SupervisorPath,
// mode 0755, in /lambdapod, mode 0755, root-owned with fixed times.
func supervisorLayer(supervisor []byte) (v1.Layer, error) {
	return filesLayer([]layerFile{{Path: contract.SupervisorPath, Data: supervisor}})
}

// layerFile is an executable file (mode 0755), or, if Link is set, a
// symbolic link to Link, or, if Dir is set, a directory, at the absolute
// Path.
type layerFile struct {
	Path, Link string
	Data       []byte
	// Dir makes it a directory that anyone may write, sticky (mode 1777),
	// as /tmp is.
	Dir bool
}

// filesLayer holds files in their order, each after the directories
// (mode 0755) that lead to it and are not in the layer yet, all root-owned
// with the Unix epoch as their time, so that the same files always give the
// same layer.
func filesLayer(files []layerFile) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(strings.TrimPrefix(f.Path, "/")); d != "." && d != ""; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		name := strings.TrimPrefix(f.Path, "/")
		if f.Dir {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o1777, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		}
		if f.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(f.Data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// readSupervisor reads the supervisor binary at file for an image of arch.
// An empty or unreadable file is an error; an ELF executable for another
// machine than arch gives nil, which logf explains: the image cannot run
// it, so its pods receive the supervisor through a volume instead.
func readSupervisor(file, arch string, logf func(string, ...any)) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the supervisor: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("the supervisor %s is empty", file)
	}
	if machine, ok := elfMachine(b); ok && !fitsArch(machine, arch) {
		logf("not adding the supervisor: %s is for %s, the image for %s", file, machine, arch)
		return nil, nil
	}
	return b, nil
}

// elfMachine is the machine an ELF executable is for; ok is false for a
// file that is not ELF.
func elfMachine(b []byte) (m elf.Machine, ok bool) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return 0, false
	}
	return f.Machine, true
}

// elfMachines are the ELF machines of the GOARCHes Kubernetes nodes run.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"386":     elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
	"loong64": elf.EM_LOONGARCH,
}

// fitsArch reports whether an executable for machine runs on arch; an
// architecture not in elfMachines is given the benefit of the doubt.
func fitsArch(machine elf.Machine, arch string) bool {
	want, known := elfMachines[arch]
	return !known || machine == want
}

// Scratch names the empty base image: the bootstrap alone, which suits a
// static Go binary that needs no CA certificates or time zone data.
const Scratch = "scratch"

func baseImage(o ImageOptions, platform v1.Platform, nameOpts []name.Option, opts []remote.Option, logf func(string, ...any)) (v1.Image, error) {
	if o.Base == Scratch {
		return mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: platform.OS, Architecture: platform.Architecture})
	}
	ref, err := name.ParseReference(o.Base, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", o.Base, err)
	}
	logf("pulling %s for %s", ref, o.Platform)
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pulling base image %s: %w", ref, err)
	}
	return img, nil
}

// Package buildstep is what the manager binary does as a step of a build
// PipelineRun (`manager build-step clone|image|add-supervisor ...`): check
// out the exact commit with the Function's git credentials, add a compiled
// bootstrap (and the supervisor that runs it) to a base image and push it,
// and add the supervisor to an image a Dockerfile build pushed, without a
// shell, git or a Docker daemon.
package buildstep

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lambdapod/lambdapod/internal/contract"
)

// Main runs the build step named by args[0] and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: manager build-step clone|image|add-supervisor [flags]")
		return 2
	}
	var err error
	switch args[0] {
	case "clone":
		err = runClone(ctx, args[1:], stdout, stderr)
	case "image":
		err = runImage(ctx, args[1:], stdout, stderr)
	case "add-supervisor":
		err = runAddSupervisor(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown build step %q: want clone, image or add-supervisor\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func runClone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o CloneOptions
	var commitFile, image, imageFile, credentials string
	fs.StringVar(&o.URL, "url", "", "repository URL")
	fs.StringVar(&o.Revision, "revision", "", "branch, tag or commit the commit was resolved from")
	fs.StringVar(&o.Commit, "commit", "", "the 40-hex commit to check out")
	fs.StringVar(&o.Dir, "dir", "", "where to check it out")
	fs.StringVar(&credentials, "credentials", "", "directory with username/password or ssh-privatekey[/known_hosts] files")
	fs.StringVar(&commitFile, "commit-file", "", "write the checked-out commit here (a Tekton result)")
	fs.StringVar(&image, "image", "", "the image reference the build pushes")
	fs.StringVar(&imageFile, "image-file", "", "write --image here (a Tekton result)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.URL == "" || o.Commit == "" || o.Dir == "" {
		return fmt.Errorf("--url, --commit and --dir are required")
	}
	if credentials != "" {
		creds, err := ReadCredentials(credentials)
		if err != nil {
			return err
		}
		o.Credentials = creds
	}
	o.Log = stdout
	commit, err := Clone(ctx, o)
	if err != nil {
		return err
	}
	if err := writeResult(commitFile, commit); err != nil {
		return err
	}
	return writeResult(imageFile, image)
}

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ImageOptions
	var digestFile string
	var labels stringList
	fs.StringVar(&o.Base, "base", "", "base image")
	fs.StringVar(&o.Platform, "platform", "linux/amd64", "platform of the base image to use, os/arch")
	fs.StringVar(&o.Bootstrap, "bootstrap", "", "the compiled bootstrap")
	fs.StringVar(&o.Entrypoint, "entrypoint", "/var/task/bootstrap", "where the bootstrap goes in the image, its ENTRYPOINT")
	fs.StringVar(&o.Destination, "destination", "", "image reference to push")
	fs.StringVar(&digestFile, "digest-file", "", "write the pushed digest here (a Tekton result)")
	fs.StringVar(&o.Supervisor, "supervisor", "", "also add this file (the supervisor) at "+contract.SupervisorPath+" and label the image "+contract.SupervisorLabel)
	fs.Var(&labels, "label", "key=value image label (repeatable)")
	fs.BoolVar(&o.Insecure, "insecure", false, "reach the registries over plain HTTP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Base == "" || o.Bootstrap == "" || o.Destination == "" {
		return fmt.Errorf("--base, --bootstrap and --destination are required")
	}
	o.Labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q is not key=value", l)
		}
		o.Labels[k] = v
	}
	o.Log = stdout
	digest, err := Image(ctx, o)
	if err != nil {
		return err
	}
	return writeResult(digestFile, digest)
}

func runAddSupervisor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("add-supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o SupervisorOptions
	var digestFile string
	fs.StringVar(&o.Image, "image", "", "the repository[:tag] the image was pushed to; the result is pushed to the same tag, or by digest only")
	fs.StringVar(&digestFile, "digest-file", "", "the pushed image's digest (a Tekton result), replaced by the result's")
	fs.StringVar(&o.Supervisor, "supervisor", "", "the file (the supervisor) to add at "+contract.SupervisorPath+", labelling the image "+contract.SupervisorLabel)
	fs.BoolVar(&o.Insecure, "insecure", false, "reach the registry over plain HTTP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Image == "" || digestFile == "" || o.Supervisor == "" {
		return fmt.Errorf("--image, --digest-file and --supervisor are required")
	}
	var err error
	if o.Digest, err = readDigestFile(digestFile); err != nil {
		return err
	}
	o.Log = stdout
	digest, err := AddSupervisor(ctx, o)
	if err != nil || digest == o.Digest {
		return err
	}
	return replaceResult(digestFile, digest)
}

func writeResult(path, value string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(value), 0o644)
}

// replaceResult replaces the file at path with one holding value. The
// builder that wrote it ran as root (kaniko, buildah), the helper does not,
// so the file cannot be written to; Tekton's results directory is an
// emptyDir, mode 0777, in which a new file can take its place.
func replaceResult(path, value string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing the new digest to %s: %w", path, err)
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

package buildstep

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lambdapod/lambdapod/internal/contract"
)

// SupervisorOptions say which pushed image gets the supervisor.
type SupervisorOptions struct {
	// Image is the repository the image was pushed to, REPO[:TAG]; the
	// result is pushed to the same tag, or by digest only without one.
	Image string
	// Digest is the digest of the pushed image, sha256:...
	Digest string
	// Supervisor is the supervisor binary (in the helper's own image).
	Supervisor string
	Insecure   bool
	Log        io.Writer
	// Remote adds registry options (tests use a transport).
	Remote []remote.Option
}

// AddSupervisor adds the supervisor to an image that a Dockerfile build
// pushed: one layer holding o.Supervisor at contract.SupervisorPath, and
// the contract.SupervisorLabel label, so that the function's pods need no
// volume to receive it. Everything else in the config (entrypoint, command,
// user, environment...) stays. It pushes the result and returns its
// digest, or o.Digest, with nothing pushed, when the image is left as it
// is: it carries the label already, it is a multi-platform index (not
// supported), or the supervisor is for another architecture than the
// image's. Registry credentials come from $DOCKER_CONFIG/config.json, as
// for Image.
func AddSupervisor(ctx context.Context, o SupervisorOptions) (string, error) {
	logf, nameOpts := logAndNames(o.Log, o.Insecure)
	opts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}, o.Remote...)

	if strings.Contains(o.Image, "@") {
		return "", fmt.Errorf("--image %q: want REPO[:TAG], without a digest", o.Image)
	}
	dest, err := name.ParseReference(o.Image, nameOpts...)
	if err != nil {
		return "", fmt.Errorf("--image %q: %w", o.Image, err)
	}
	digest, err := v1.NewHash(o.Digest)
	if err != nil {
		return "", fmt.Errorf("the digest %q of the pushed image: %w", o.Digest, err)
	}
	src := dest.Context().Digest(digest.String())
	if !explicitTag(o.Image) {
		dest = nil // pushed by digest only
	}

	logf("pulling %s", src)
	desc, err := remote.Get(src, opts...)
	if err != nil {
		return "", fmt.Errorf("pulling %s: %w", src, err)
	}
	if desc.MediaType.IsIndex() {
		logf("not adding the supervisor: %s is an index (%s) and multi-platform images are not supported; it is left as it is, and its pods receive the supervisor through a volume", src, desc.MediaType)
		return o.Digest, nil
	}
	img, err := desc.Image()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("reading the config of %s: %w", src, err)
	}
	if at, ok := cf.Config.Labels[contract.SupervisorLabel]; ok {
		logf("not adding the supervisor: %s carries it already (label %s=%s); it is left as it is", src, contract.SupervisorLabel, at)
		return o.Digest, nil
	}
	supervisor, err := readSupervisor(o.Supervisor, cf.Architecture, logf)
	if err != nil || supervisor == nil {
		return o.Digest, err
	}

	layer, err := supervisorLayer(supervisor)
	if err != nil {
		return "", err
	}
	manifestType, err := img.MediaType()
	if err != nil {
		return "", err
	}
	layerType := types.DockerLayer
	if manifestType == types.OCIManifestSchema1 {
		layerType = types.OCILayer
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: layerType, History: v1.History{
		CreatedBy: "lambdapod build-step add-supervisor: COPY supervisor " + contract.SupervisorPath,
		Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
	}})
	if err != nil {
		return "", err
	}
	// The appended image's config: the same, with the new layer's diff ID
	// and history.
	if cf, err = img.ConfigFile(); err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels[contract.SupervisorLabel] = contract.SupervisorPath
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	pushed, err := img.Digest()
	if err != nil {
		return "", err
	}
	if dest == nil {
		dest = src.Context().Digest(pushed.String())
	}
	logf("adding the supervisor at %s: pushing %s", contract.SupervisorPath, dest)
	if err := remote.Write(dest, img, opts...); err != nil {
		return "", fmt.Errorf("pushing %s: %w", dest, err)
	}
	logf("pushed %s@%s", dest.Context(), pushed)
	return pushed.String(), nil
}

// explicitTag reports whether a REPO[:TAG] reference names its tag (rather
// than meaning latest): a colon after the last slash, which a registry's
// port is not.
func explicitTag(ref string) bool {
	return strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":")
}

// readDigestFile reads the digest a build step wrote, sha256:..., without
// the whitespace around it.
func readDigestFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the digest of the pushed image: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

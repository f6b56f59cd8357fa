// Package imageconfig reads an image's ENTRYPOINT, CMD and labels from its
// registry.
//
// A function's container runs the supervisor as its command, which hides
// the image's own; the supervisor must be told what the image would have
// run. That is what Lambda runs too: for AWS's base images it is
// /lambda-entrypoint.sh with the handler as CMD. A label may say that the
// image carries the supervisor itself.
package imageconfig

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Config is what a function's pod needs to know of its image.
type Config struct {
	// Command is the image's ENTRYPOINT followed by its CMD.
	Command []string
	// Labels are the image config's labels.
	Labels map[string]string
}

// Resolver reads and caches image configs. A digest reference never
// changes, so it is cached for good; a tag is read again after TTL, and a
// failure after FailureTTL.
type Resolver struct {
	TTL        time.Duration
	FailureTTL time.Duration
	options    []remote.Option

	mu    sync.Mutex
	cache map[string]entry
}

type entry struct {
	config Config
	err    error
	until  time.Time // zero: forever
}

// New returns a Resolver that reads registries with the default keychain
// (a docker config.json, if there is one; anonymous otherwise), for the
// platform the manager runs on.
func New(opts ...remote.Option) *Resolver {
	base := []remote.Option{
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	}
	return &Resolver{
		TTL: 10 * time.Minute, FailureTTL: time.Minute,
		options: append(base, opts...),
		cache:   map[string]entry{},
	}
}

// Config reads the image's config, from the cache if it is there.
func (r *Resolver) Config(ctx context.Context, image string) (Config, error) {
	now := time.Now()
	r.mu.Lock()
	e, ok := r.cache[image]
	r.mu.Unlock()
	if ok && (e.until.IsZero() || now.Before(e.until)) {
		return e.config, e.err
	}

	ref, err := name.ParseReference(image)
	if err != nil {
		return Config{}, fmt.Errorf("image %q is not a valid reference: %w", image, err)
	}
	config, err := r.read(ctx, ref)
	e = entry{config: config, err: err}
	switch _, isDigest := ref.(name.Digest); {
	case err != nil:
		e.until = now.Add(r.FailureTTL)
	case !isDigest:
		e.until = now.Add(r.TTL)
	}
	r.mu.Lock()
	r.cache[image] = e
	r.mu.Unlock()
	return config, err
}

func (r *Resolver) read(ctx context.Context, ref name.Reference) (Config, error) {
	img, err := remote.Image(ref, append(r.options, remote.WithContext(ctx))...)
	if err != nil {
		return Config{}, fmt.Errorf("reading image %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Config{}, fmt.Errorf("reading the config of image %s: %w", ref, err)
	}
	return Config{
		Command: append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...),
		Labels:  cf.Config.Labels,
	}, nil
}

// Package imageconfig reads an image's ENTRYPOINT, CMD, USER and labels from
// its registry.
//
// A function's container runs the supervisor as its command, which hides
// the image's own; the supervisor must be told what the image would have
// run. That is what Lambda runs too: for AWS's base images it is
// /lambda-entrypoint.sh with the handler as CMD. A label may say that the
// image carries the supervisor itself. The image's user decides the uid a
// confined function runs as.
package imageconfig

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"k8s.io/utils/lru"

	"github.com/lambdapod/lambdapod/internal/httplimit"
)

// An image reference may name any host the manager can reach, an internal
// service included, and what answers there may answer anything: these bound
// what the manager reads and keeps.
const (
	// maxEntries bounds the cache, which gains an entry for every image
	// reference a Function names (a tag per update, say) and would
	// otherwise keep it for good.
	maxEntries = 1024
	// maxBody bounds every answer of a registry: manifests and indexes,
	// which registries are asked to accept up to 4 MiB, configs, tokens.
	// go-containerregistry reads manifests up to 100 MiB, and a config as
	// large as its manifest says.
	maxBody = 4 << 20
	// maxConfig bounds the config blob, checked against the manifest
	// before it is fetched. Configs hold the environment, labels and
	// history: kilobytes.
	maxConfig = maxBody
	// readTimeout bounds reading one image's config: the reconcile waits
	// for it.
	readTimeout = 30 * time.Second
)

// registryTransport is shared by every Resolver, for connection reuse.
var registryTransport = &httplimit.Transport{Base: httplimit.NewBase(), MaxBody: maxBody}

// Config is what a function's pod needs to know of its image.
type Config struct {
	// Command is the image's ENTRYPOINT followed by its CMD.
	Command []string
	// Labels are the image config's labels.
	Labels map[string]string
	// User is the image config's USER as written: empty, a user or uid,
	// or user:group with either a name or a number.
	User string
}

// Resolver reads and caches image configs. A digest reference never
// changes, so it is cached until evicted; a tag is read again after TTL,
// and a failure after FailureTTL. The cache keeps the maxEntries most
// recently used references.
type Resolver struct {
	TTL        time.Duration
	FailureTTL time.Duration
	options    []remote.Option

	cache *lru.Cache // image reference to entry; safe for concurrent use
}

type entry struct {
	config Config
	err    error
	until  time.Time // zero: forever
}

// New returns a Resolver that reads registries with the default keychain
// (a docker config.json, if there is one; anonymous otherwise), for the
// platform the manager runs on, through a transport that bounds what it
// reads (maxBody).
func New(opts ...remote.Option) *Resolver {
	base := []remote.Option{
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithTransport(registryTransport),
	}
	return &Resolver{
		TTL: 10 * time.Minute, FailureTTL: time.Minute,
		options: append(base, opts...),
		cache:   lru.New(maxEntries),
	}
}

// Config reads the image's config, from the cache if it is there.
func (r *Resolver) Config(ctx context.Context, image string) (Config, error) {
	now := time.Now()
	if v, ok := r.cache.Get(image); ok {
		if e := v.(entry); e.until.IsZero() || now.Before(e.until) {
			return e.config, e.err
		}
	}

	ref, err := name.ParseReference(image)
	if err != nil {
		return Config{}, fmt.Errorf("image %q is not a valid reference: %w", image, err)
	}
	config, err := r.read(ctx, ref)
	e := entry{config: config, err: err}
	switch _, isDigest := ref.(name.Digest); {
	case err != nil:
		e.until = now.Add(r.FailureTTL)
	case !isDigest:
		e.until = now.Add(r.TTL)
	}
	r.cache.Add(image, e)
	return config, err
}

// read fetches ref's config. Its errors go into an Event: they say what
// failed in few words and quote nothing the registry answered.
func (r *Resolver) read(ctx context.Context, ref name.Reference) (Config, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	img, err := remote.Image(ref, append(r.options, remote.WithContext(ctx))...)
	if err != nil {
		return Config{}, describe("reading image "+ref.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Config{}, describe("reading the manifest of image "+ref.String(), err)
	}
	if m.Config.Size > maxConfig {
		return Config{}, fmt.Errorf("the config of image %s is %d bytes long, more than the %d bytes read", ref, m.Config.Size, maxConfig)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Config{}, describe("reading the config of image "+ref.String(), err)
	}
	return Config{
		Command: append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...),
		Labels:  cf.Config.Labels,
		User:    cf.Config.User,
	}, nil
}

// maxErrorText bounds what describe quotes of an error it does not know.
const maxErrorText = 256

// describe says that doing failed with err. go-containerregistry's error
// for an answer other than 2xx quotes the body unless it reads as the
// registry protocol's errors, whose messages are the server's words too:
// that error is told by its status and error codes only. Others are cut at
// maxErrorText. The result wraps err.
func describe(doing string, err error) error {
	var te *transport.Error
	text := err.Error()
	switch {
	case errors.As(err, &te):
		text = fmt.Sprintf("the registry answered %d %s", te.StatusCode, http.StatusText(te.StatusCode))
		var codes []string
		for _, d := range te.Errors {
			if _, ok := knownCodes[d.Code]; ok {
				codes = append(codes, string(d.Code))
			}
		}
		if len(codes) > 0 {
			text += " (" + strings.Join(codes, ", ") + ")"
		}
	case len(text) > maxErrorText:
		text = strings.ToValidUTF8(text[:maxErrorText], "") + "…"
	}
	return &described{text: doing + ": " + text, err: err}
}

// knownCodes are the registry protocol's error codes: a code among them
// says something, and nothing of the server's.
var knownCodes = map[transport.ErrorCode]struct{}{}

func init() {
	for _, c := range []transport.ErrorCode{
		transport.BlobUnknownErrorCode, transport.BlobUploadInvalidErrorCode, transport.BlobUploadUnknownErrorCode,
		transport.DigestInvalidErrorCode, transport.ManifestBlobUnknownErrorCode, transport.ManifestInvalidErrorCode,
		transport.ManifestUnknownErrorCode, transport.ManifestUnverifiedErrorCode, transport.NameInvalidErrorCode,
		transport.NameUnknownErrorCode, transport.SizeInvalidErrorCode, transport.TagInvalidErrorCode,
		transport.UnauthorizedErrorCode, transport.DeniedErrorCode, transport.UnsupportedErrorCode,
		transport.TooManyRequestsErrorCode, transport.UnknownErrorCode, transport.UnavailableErrorCode,
	} {
		knownCodes[c] = struct{}{}
	}
}

// described is err told as text.
type described struct {
	text string
	err  error
}

func (d *described) Error() string { return d.text }
func (d *described) Unwrap() error { return d.err }

package imageconfig_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lambdapod/lambdapod/controllers/imageconfig"
	"github.com/lambdapod/lambdapod/internal/memtest"
)

// secret stands for what an internal service answers: it must never reach
// an error, hence an Event.
const secret = `{"internal":"s3cr3t-token-from-an-internal-service"}`

// stream writes secret followed by size bytes of filler as they go, so
// that the test holds none of it, until the client hangs up.
func stream(w http.ResponseWriter, size int64) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := w.Write([]byte(secret)); err != nil {
		return
	}
	for left := size; left > 0; left -= int64(len(chunk)) {
		if _, err := w.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			return
		}
	}
}

// hugeConfig is the config blob's declared size in the manifest below.
const hugeConfig = 300 << 20

// fakeRegistry answers /v2/ with 200 and every manifest and blob as
// manifest and blob say.
func fakeRegistry(t *testing.T, manifest, blob http.HandlerFunc) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.Contains(r.URL.Path, "/manifests/"):
			manifest(w, r)
		case strings.Contains(r.URL.Path, "/blobs/") && blob != nil:
			blob(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// An image reference to a local port: the manager reads whatever answers
// there, and the error it makes goes into an Event. Neither the manager's
// heap nor the message may follow the size of the answer, and the message
// carries none of it.
func TestHostileRegistry(t *testing.T) {
	const manifestType = "application/vnd.oci.image.manifest.v1+json"
	for _, tc := range []struct {
		name           string
		manifest, blob http.HandlerFunc
	}{
		{name: "404 with an internal JSON body", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			stream(w, 0)
		}},
		{name: "401 without a challenge", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			stream(w, 16<<10)
		}},
		{name: "404 with a 300 MiB body", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			stream(w, 300<<20)
		}},
		{name: "a 300 MiB manifest", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", manifestType)
			stream(w, 300<<20)
		}},
		{name: "a 300 MiB config", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", manifestType)
			fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%d,"digest":"sha256:%s"},"layers":[]}`,
				manifestType, hugeConfig, strings.Repeat("ab", 32))
		}, blob: func(w http.ResponseWriter, _ *http.Request) {
			stream(w, hugeConfig)
		}},
		{name: "a config of unknown size", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", manifestType)
			fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":-1,"digest":"sha256:%s"},"layers":[]}`,
				manifestType, strings.Repeat("ab", 32))
		}, blob: func(w http.ResponseWriter, _ *http.Request) {
			stream(w, 300<<20)
		}},
		{name: "a config that is longer than declared", manifest: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", manifestType)
			fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%d,"digest":"sha256:%s"},"layers":[]}`,
				manifestType, 1024, strings.Repeat("ab", 32))
		}, blob: func(w http.ResponseWriter, _ *http.Request) {
			stream(w, 300<<20)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image := fakeRegistry(t, tc.manifest, tc.blob) + "/fn/app:1"
			err, use := memtest.Measure(func() error {
				_, err := imageconfig.New().Config(context.Background(), image)
				return err
			})
			if err == nil {
				t.Fatal("Config succeeded")
			}
			msg := err.Error()
			t.Logf("heap %s; message %d bytes: %.300s", use, len(msg), msg)
			if strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "xxxx") {
				t.Errorf("the message carries the registry's answer: %.300q", msg)
			}
			if len(msg) > 384 {
				t.Errorf("the message is %d bytes long", len(msg))
			}
			if !strings.Contains(msg, image) {
				t.Errorf("the message does not name the image: %.300q", msg)
			}
			if use.Peak > 24<<20 || use.Retained > 4<<20 {
				t.Errorf("heap grew by %s", use)
			}
		})
	}
}

// An image in a registry that follows the protocol is read as before,
// through the limits.
func TestConfig(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/example/hello:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = v1.Config{Entrypoint: []string{"/lambda-entrypoint.sh"}, Cmd: []string{"app.handler"}, Labels: map[string]string{"a": "b"}, User: "1000:1000"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	got, err := imageconfig.New().Config(context.Background(), ref.String())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Command, []string{"/lambda-entrypoint.sh", "app.handler"}) || got.Labels["a"] != "b" || got.User != "1000:1000" {
		t.Errorf("Config = %+v", got)
	}
}

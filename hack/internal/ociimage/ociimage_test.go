package ociimage_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lambdapod/lambdapod/hack/internal/ociimage"
)

// The pushed image is the layer alone, with the config the caller set, and
// the same inputs give the same digest.
func TestFromLayerAndPush(t *testing.T) {
	srv := httptest.NewServer(registryHandler())
	t.Cleanup(srv.Close)
	layer, err := random.Layer(256, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	build := func() v1.Image {
		img, err := ociimage.FromLayer(layer, time.Unix(0, 0).UTC(), func(c *v1.Config) {
			c.Entrypoint = []string{"/bootstrap"}
			c.User = "65532:65532"
		})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/t/img:1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ociimage.Push(ref, build())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ociimage.Push(ref, build())
	if got != again || !strings.HasPrefix(got, ref.Context().String()+"@sha256:") {
		t.Fatalf("digest refs %q and %q", got, again)
	}
	pulled, err := remote.Image(mustRef(t, got))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := pulled.Layers()
	if len(layers) != 1 || cf.OS != "linux" || cf.Config.Entrypoint[0] != "/bootstrap" || cf.Config.User != "65532:65532" {
		t.Errorf("%d layers, config %+v", len(layers), cf)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func registryHandler() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// Package ociimage makes the images of the local cluster's tooling: one
// layer on the empty base, for this machine's platform, without a daemon.
package ociimage

import (
	"fmt"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FromLayer returns an OCI image of layer alone, created at created (a
// fixed time keeps digests reproducible), whose run config edit fills in.
func FromLayer(layer v1.Layer, created time.Time, edit func(*v1.Config)) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: created}
	edit(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

// Push writes img to ref and returns its digest reference, repo@sha256:….
func Push(ref name.Reference, img v1.Image) (string, error) {
	if err := remote.Write(ref, img); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return ref.Context().String() + "@" + d.String(), nil
}

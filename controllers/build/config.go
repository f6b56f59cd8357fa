// Package build turns a git-sourced Function into a Tekton PipelineRun, and
// a finished PipelineRun back into an image or a failure a user can act on.
// The builders are pure: the same Function, commit and Config always give
// the same PipelineRun, so golden files pin them down.
package build

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ConfigMap keys. Every value is a flat string, so a Helm chart can render
// the ConfigMap from a free-form map. Missing keys take the defaults below.
const (
	KeyHelperImage        = "helperImage"
	KeyDockerfileBuilder  = "dockerfileBuilder"
	KeyKanikoImage        = "kanikoImage"
	KeyBuildahImage       = "buildahImage"
	KeyGoImage            = "goImage"
	KeyBaseImage          = "baseImage"
	KeyGoArch             = "goArch"
	KeyInsecureRegistries = "insecureRegistries"
	KeyHistoryLimit       = "historyLimit"
)

// Builders of Dockerfiles.
const (
	BuilderKaniko  = "kaniko"
	BuilderBuildah = "buildah"
)

// Defaults, used only when the ConfigMap (set from the chart's values)
// leaves a key out.
const (
	DefaultHelperImage       = "lambdapod/manager:latest"
	DefaultDockerfileBuilder = BuilderKaniko
	DefaultKanikoImage       = "lambdapod/kaniko-executor:v1.23.2"
	DefaultBuildahImage      = "lambdapod/buildah:v1.41"
	DefaultGoImage           = "golang:1.26"
	DefaultBaseImage         = "scratch"
	DefaultGoArch            = "amd64"
	DefaultHistoryLimit      = 3
)

// Config is the operator-wide build configuration, from the build ConfigMap.
type Config struct {
	// HelperImage holds the manager binary at /manager, whose build-step
	// subcommands clone the repository and assemble Go images, and the
	// supervisor at /supervisor, which the images it builds carry.
	HelperImage string
	// DockerfileBuilder is kaniko or buildah.
	DockerfileBuilder string
	KanikoImage       string
	BuildahImage      string
	// GoImage is the Go toolchain that compiles the bootstrap.
	GoImage string
	// GoBaseImage is the image the bootstrap is added to.
	GoBaseImage string
	// GoArch is the architecture the bootstrap is compiled for.
	GoArch string
	// InsecureRegistries are reached over plain HTTP (host[:port]).
	InsecureRegistries []string
	// HistoryLimit is how many finished PipelineRuns each Function keeps.
	HistoryLimit int
}

// DefaultConfig is the configuration of an empty ConfigMap.
func DefaultConfig() Config {
	c, _ := ConfigFromMap(nil)
	return c
}

// ConfigFromMap reads a ConfigMap's data. A bad value is an error; unknown
// keys are not (UnknownKeys lists them, for a warning).
func ConfigFromMap(data map[string]string) (Config, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(data[key]); v != "" {
			return v
		}
		return def
	}
	c := Config{
		HelperImage:       get(KeyHelperImage, DefaultHelperImage),
		DockerfileBuilder: get(KeyDockerfileBuilder, DefaultDockerfileBuilder),
		KanikoImage:       get(KeyKanikoImage, DefaultKanikoImage),
		BuildahImage:      get(KeyBuildahImage, DefaultBuildahImage),
		GoImage:           get(KeyGoImage, DefaultGoImage),
		GoBaseImage:       get(KeyBaseImage, DefaultBaseImage),
		GoArch:            get(KeyGoArch, DefaultGoArch),
		HistoryLimit:      DefaultHistoryLimit,
	}
	for _, r := range strings.Split(data[KeyInsecureRegistries], ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.InsecureRegistries = append(c.InsecureRegistries, r)
		}
	}
	if c.DockerfileBuilder != BuilderKaniko && c.DockerfileBuilder != BuilderBuildah {
		return c, fmt.Errorf("%s is %q; want %s or %s", KeyDockerfileBuilder, c.DockerfileBuilder, BuilderKaniko, BuilderBuildah)
	}
	if v := strings.TrimSpace(data[KeyHistoryLimit]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%s is %q; want a whole number of at least 1", KeyHistoryLimit, v)
		}
		c.HistoryLimit = n
	}
	return c, nil
}

// Keys are the keys ConfigFromMap reads.
var Keys = []string{KeyHelperImage, KeyDockerfileBuilder, KeyKanikoImage, KeyBuildahImage, KeyGoImage,
	KeyBaseImage, KeyGoArch, KeyInsecureRegistries, KeyHistoryLimit}

// UnknownKeys are the keys of data that ConfigFromMap ignores, sorted.
func UnknownKeys(data map[string]string) []string {
	var unknown []string
	for k := range data {
		if !slices.Contains(Keys, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// insecure reports whether image's registry is reached over plain HTTP.
func (c Config) insecure(image string) bool {
	host, _, _ := strings.Cut(image, "/")
	return slices.Contains(c.InsecureRegistries, host)
}

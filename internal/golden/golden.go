// Package golden compares what a builder makes with a YAML file under the
// test's testdata/, and rewrites the file when the test runs with -update.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files from the builders' output")

// Check marshals obj to YAML and compares it with testdata/name.
func Check(t *testing.T, name string, obj any) {
	t.Helper()
	got, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run this package's tests with -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the builder's output; if the change is intended, run this package's tests with -update and review the diff\n--- got\n%s", path, got)
	}
}

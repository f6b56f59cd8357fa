package layering_test

// The layering of lambdapod's packages: which part may import which. Each
// rule names the packages it applies to (go list patterns, from the
// module's root) and a predicate on every package they depend on,
// directly or not; the test lists the dependencies with `go list -deps`
// and names the import chain of each one that a rule forbids.
//
// Only what the packages build into is checked, not their tests: tests
// wire the parts together on purpose (the activator's integration test
// runs the autoscaler; the API's validation test starts an API server).
//
// docs/architecture.md says why each rule is there.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/lambdapod/lambdapod"

// leaves are the packages every binary may import: they import nothing of
// lambdapod's and no Kubernetes package.
var leaves = []string{"internal/contract", "internal/invokeapi", "internal/invoketoken"}

// ours reports whether path is one of lambdapod's packages.
func ours(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// under reports whether path is lambdapod's package dir or one below it.
func under(path, dir string) bool {
	p := module + "/" + dir
	return path == p || strings.HasPrefix(path, p+"/")
}

// kubernetes reports whether path is a Kubernetes package.
func kubernetes(path string) bool {
	return strings.HasPrefix(path, "k8s.io/") || strings.HasPrefix(path, "sigs.k8s.io/")
}

func leaf(path string) bool {
	return slices.ContainsFunc(leaves, func(dir string) bool { return under(path, dir) })
}

// A rule: none of the packages may depend on a package that forbidden
// refuses.
type rule struct {
	// id names the subtest; name says the rule.
	id   string
	name string
	// packages are go list patterns, relative to the module's root.
	packages []string
	// forbidden says why a dependency is refused, or "" if it is allowed.
	forbidden func(dep string) string
}

var rules = []rule{
	{
		id:       "sidecar",
		name:     "runtime sidecar and supervisor link no Kubernetes package and nothing of ours outside runtime-sidecar/ and the leaf packages",
		packages: []string{"./runtime-sidecar/cmd", "./runtime-sidecar/supervisor/cmd"},
		forbidden: func(dep string) string {
			switch {
			case kubernetes(dep):
				return "a Kubernetes package"
			case ours(dep) && !under(dep, "runtime-sidecar") && !leaf(dep):
				return "ours, outside runtime-sidecar/ and the leaf packages " + strings.Join(leaves, ", ")
			}
			return ""
		},
	},
	{
		id:       "activator",
		name:     "activator imports nothing under controllers/ and not internal/autoscaler",
		packages: []string{"./activator/..."},
		forbidden: func(dep string) string {
			switch {
			case under(dep, "controllers"):
				return "under controllers/"
			case under(dep, "internal/autoscaler"):
				return "the autoscaler; the activator sends its reports through internal/stats"
			}
			return ""
		},
	},
	{
		id:       "internal",
		name:     "nothing under internal/ imports controllers/ or activator/",
		packages: []string{"./internal/..."},
		forbidden: func(dep string) string {
			switch {
			case under(dep, "controllers"):
				return "under controllers/"
			case under(dep, "activator"):
				return "under activator/"
			}
			return ""
		},
	},
	{
		id:       "api",
		name:     "api/ imports nothing of ours but itself",
		packages: []string{"./api/..."},
		forbidden: func(dep string) string {
			if ours(dep) && !under(dep, "api") {
				return "ours, outside api/"
			}
			return ""
		},
	},
	{
		id:       "leaves",
		name:     "leaf packages internal/contract, internal/invokeapi and internal/invoketoken import nothing of ours and no Kubernetes package",
		packages: []string{"./internal/contract", "./internal/invokeapi", "./internal/invoketoken"},
		forbidden: func(dep string) string {
			switch {
			case ours(dep):
				return "ours; a leaf imports only the standard library and small third-party packages"
			case kubernetes(dep):
				return "a Kubernetes package; every binary, the runtime sidecar too, may import a leaf"
			}
			return ""
		},
	},
}

// A violation is a forbidden dependency and the shortest chain of imports
// that reaches it: chain[0] is one of the rule's packages, chain[len-2]
// imports chain[len-1], the forbidden one.
type violation struct {
	chain []string
	why   string
}

func (v violation) String() string {
	n := len(v.chain)
	short := make([]string, n)
	for i, p := range v.chain {
		short[i] = shorten(p)
	}
	return fmt.Sprintf("%s imports %s: %s\n\t\tchain: %s",
		short[n-2], short[n-1], v.why, strings.Join(short, " -> "))
}

// shorten writes lambdapod's packages from the module's root.
func shorten(p string) string {
	if s, ok := strings.CutPrefix(p, module+"/"); ok {
		return s
	}
	return p
}

// violations walks the import graph from each root, breadth first, and
// returns each import of a forbidden package once (by importer and
// imported), with the shortest chain that reaches it from any root. It
// does not walk past a forbidden package: what that one imports is
// reported once it is gone.
func violations(imports map[string][]string, roots []string, forbidden func(string) string) []violation {
	var out []violation
	index := map[[2]string]int{} // importer and imported -> out's index
	for _, root := range slices.Sorted(slices.Values(roots)) {
		parent := map[string]string{root: ""}
		queue := []string{root}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, dep := range imports[p] {
				if _, ok := parent[dep]; ok {
					continue
				}
				parent[dep] = p
				why := forbidden(dep)
				if why == "" {
					queue = append(queue, dep)
					continue
				}
				chain := []string{dep}
				for q := p; q != ""; q = parent[q] {
					chain = append(chain, q)
				}
				slices.Reverse(chain)
				v := violation{chain: chain, why: why}
				if i, ok := index[[2]string{p, dep}]; !ok {
					index[[2]string{p, dep}] = len(out)
					out = append(out, v)
				} else if len(chain) < len(out[i].chain) {
					out[i] = v
				}
			}
		}
	}
	return out
}

// listed is what go list says of one package.
type listed struct {
	ImportPath string
	DepOnly    bool
	Imports    []string
	Match      []string
	Error      *struct{ Err string }
}

// goList runs go list -deps on the patterns in the module's root dir. It
// does not compile anything: a package that does not build still lists
// its imports.
func goList(t *testing.T, dir string, patterns ...string) []listed {
	t.Helper()
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,DepOnly,Imports,Match,Error"}, patterns...)
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = dir
	// The binaries ship as static Linux binaries: list the files they are
	// built from, whatever this machine is.
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("go list: %s", stderr.Bytes())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not in a module")
	}
	return filepath.Dir(gomod)
}

func TestLayering(t *testing.T) {
	dir := moduleRoot(t)
	for _, r := range rules {
		t.Run(r.id, func(t *testing.T) {
			t.Parallel()
			pkgs := goList(t, dir, r.packages...)
			imports := map[string][]string{}
			var roots []string
			matched := map[string]bool{}
			for _, p := range pkgs {
				imports[p.ImportPath] = p.Imports
				if p.Error != nil {
					// Someone's edit in progress, most likely; its
					// imports as listed are still checked.
					t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
				}
				if !p.DepOnly {
					roots = append(roots, p.ImportPath)
					if p.Error == nil || len(p.Imports) > 0 {
						for _, m := range p.Match {
							matched[m] = true
						}
					}
				}
			}
			for _, pattern := range r.packages {
				if !matched[pattern] {
					t.Errorf("rule %q: %s matches no package: has it moved? Update the rule", r.name, pattern)
				}
			}
			vs := violations(imports, roots, r.forbidden)
			if len(vs) == 0 {
				return
			}
			var b strings.Builder
			fmt.Fprintf(&b, "rule %q is broken by %d import(s):", r.name, len(vs))
			for _, v := range vs {
				fmt.Fprintf(&b, "\n\t%s", v)
			}
			t.Error(b.String())
		})
	}
}

// TestPredicates pins what each rule allows, on names that sit close to
// the lines it draws.
func TestPredicates(t *testing.T) {
	ourPkg := func(dir string) string { return module + "/" + dir }
	cases := []struct {
		rule    string
		dep     string
		refused bool
	}{
		{"sidecar", "net/http", false},
		{"sidecar", "github.com/prometheus/client_golang/prometheus", false},
		{"sidecar", ourPkg("runtime-sidecar/runtimeapi"), false},
		{"sidecar", ourPkg("internal/contract"), false},
		{"sidecar", ourPkg("internal/invokeapi"), false},
		{"sidecar", "k8s.io/apimachinery/pkg/types", true},
		{"sidecar", "sigs.k8s.io/yaml", true},
		{"sidecar", ourPkg("internal/stats"), true},
		{"sidecar", ourPkg("internal/contractx"), true},
		{"sidecar", ourPkg("api/v1alpha1"), true},
		{"sidecar", module, true},
		{"sidecar", "github.com/lambdapod/lambdapodx/foo", false},

		{"activator", ourPkg("internal/stats"), false},
		{"activator", ourPkg("internal/invokeapi"), false},
		{"activator", ourPkg("api/v1alpha1"), false},
		{"activator", "k8s.io/client-go/kubernetes", false},
		{"activator", ourPkg("internal/autoscaler"), true},
		{"activator", ourPkg("controllers"), true},
		{"activator", ourPkg("controllers/resources"), true},
		{"activator", ourPkg("controllersx"), false},

		{"internal", ourPkg("api/v1alpha1"), false},
		{"internal", ourPkg("internal/stats"), false},
		{"internal", ourPkg("controllers/build"), true},
		{"internal", ourPkg("activator/route"), true},
		{"internal", ourPkg("activatorx"), false},

		{"api", "k8s.io/apimachinery/pkg/apis/meta/v1", false},
		{"api", ourPkg("api/v1alpha1"), false},
		{"api", ourPkg("internal/contract"), true},

		{"leaves", "github.com/google/uuid", false},
		{"leaves", "encoding/json", false},
		{"leaves", ourPkg("internal/contract"), true},
		{"leaves", ourPkg("runtime-sidecar/app"), true},
		{"leaves", "k8s.io/apimachinery/pkg/types", true},
	}
	byID := map[string]rule{}
	for _, r := range rules {
		byID[r.id] = r
	}
	for _, c := range cases {
		r, ok := byID[c.rule]
		if !ok {
			t.Fatalf("no rule %q", c.rule)
		}
		why := r.forbidden(c.dep)
		if (why != "") != c.refused {
			t.Errorf("rule %q, dependency %s: refused = %v (%q), want %v", r.name, c.dep, why != "", why, c.refused)
		}
	}
}

// TestViolations checks the walk on a made-up graph: one report per
// forbidden import, with the shortest chain from any root, and nothing past
// a forbidden package.
func TestViolations(t *testing.T) {
	imports := map[string][]string{
		"cmd":  {"app", "util"},
		"app":  {"bad", "util"},
		"util": {"deep"},
		"deep": {"bad"},
		"bad":  {"worse"},
	}
	forbidden := func(dep string) string {
		if dep == "bad" || dep == "worse" {
			return "forbidden"
		}
		return ""
	}
	got := violations(imports, []string{"cmd", "util", "deep"}, forbidden)
	var chains []string
	for _, v := range got {
		chains = append(chains, strings.Join(v.chain, " -> "))
	}
	want := []string{"cmd -> app -> bad", "deep -> bad"}
	if !slices.Equal(chains, want) {
		t.Errorf("chains = %q, want %q", chains, want)
	}
	if s := got[0].String(); !strings.Contains(s, "app imports bad: forbidden") {
		t.Errorf("message %q does not name the importer and the import", s)
	}
}

// Package gittest serves an in-memory git repository over smart HTTP on
// loopback, with go-git's own upload-pack, so tests need no git binary.
package gittest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Repo is a repository with a worktree, served read-only at URL.
type Repo struct {
	// URL clones the repository: http://127.0.0.1:port/repo.git
	URL string
	// Username and Password, when set before the first request, are
	// required as HTTP basic auth.
	Username, Password string

	mu   sync.Mutex
	repo *gogit.Repository
	st   *memory.Storage
}

// New starts serving an empty repository whose default branch is main.
func New(t testing.TB) *Repo {
	t.Helper()
	st := memory.NewStorage()
	repo, err := gogit.InitWithOptions(st, memfs.New(), gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")})
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{repo: repo, st: st}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/repo.git"
	return r
}

// Commit writes files (path to content) into the worktree on the current
// branch, commits them and returns the commit hash.
func (r *Repo) Commit(t testing.TB, files map[string]string, message string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	wt, err := r.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		f, err := wt.Filesystem.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	h, err := wt.Commit(message, &gogit.CommitOptions{
		AllowEmptyCommits: true,
		Author:            &object.Signature{Name: "Test", Email: "test@example.com", When: time.Now()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// Branch points branch at the current HEAD commit.
func (r *Repo) Branch(t testing.TB, branch string) {
	t.Helper()
	r.ref(t, plumbing.NewBranchReferenceName(branch))
}

// Tag makes a lightweight tag at the current HEAD commit.
func (r *Repo) Tag(t testing.TB, tag string) {
	t.Helper()
	r.ref(t, plumbing.NewTagReferenceName(tag))
}

// AnnotatedTag makes an annotated tag at the current HEAD commit.
func (r *Repo) AnnotatedTag(t testing.TB, tag string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.repo.CreateTag(tag, head.Hash(), &gogit.CreateTagOptions{
		Message: tag, Tagger: &object.Signature{Name: "Test", Email: "test@example.com", When: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}
}

func (r *Repo) ref(t testing.TB, name plumbing.ReferenceName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.st.SetReference(plumbing.NewHashReference(name, head.Hash())); err != nil {
		t.Fatal(err)
	}
}

// ServeHTTP speaks the smart HTTP protocol's upload-pack side: ls-remote,
// fetch and clone.
func (r *Repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.Username != "" || r.Password != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.Username || p != r.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sess, err := server.NewServer(loader{r.st}).NewUploadPackSession(&transport.Endpoint{Protocol: "http", Host: req.Host, Path: req.URL.Path}, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer sess.Close()
	switch {
	case req.Method == http.MethodGet && req.URL.Query().Get("service") == transport.UploadPackServiceName:
		ar, err := sess.AdvertisedReferencesContext(req.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r.peel(ar)
		ar.Prefix = [][]byte{[]byte("# service=" + transport.UploadPackServiceName), pktline.Flush}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		w.Header().Set("Cache-Control", "no-cache")
		_ = ar.Encode(w)
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack"):
		upr := packp.NewUploadPackRequest()
		if err := upr.Decode(req.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := sess.UploadPack(req.Context(), upr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer resp.Close()
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		_ = resp.Encode(w)
	default:
		http.Error(w, "only upload-pack is served", http.StatusForbidden)
	}
}

// peel adds the commits of annotated tags to an advertisement, as git's
// own upload-pack does (tag^{}).
func (r *Repo) peel(ar *packp.AdvRefs) {
	for name, h := range ar.References {
		if tag, err := object.GetTag(r.st, h); err == nil {
			ar.Peeled[name] = tag.Target
		}
	}
}

type loader struct{ st storer.Storer }

func (l loader) Load(*transport.Endpoint) (storer.Storer, error) { return l.st, nil }

package imageconfig

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every distinct image reference a Function names stays in the cache: one
// that names a new tag on each update must not grow the manager's memory
// without bound.
func TestCacheIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	r := New()
	const refs = maxEntries + 100
	for i := range refs {
		if _, err := r.Config(context.Background(), fmt.Sprintf("%s/fn/app:%d", host, i)); err == nil {
			t.Fatal("Config succeeded")
		}
	}
	t.Logf("%d distinct references leave %d cache entries", refs, r.cached())
	if n := r.cached(); n > maxEntries {
		t.Errorf("the cache holds %d entries, want at most %d", n, maxEntries)
	}
	// The most recent is still cached: the same reference asks nothing.
	srv.Close()
	if _, err := r.Config(context.Background(), fmt.Sprintf("%s/fn/app:%d", host, refs-1)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("the latest reference was not served from the cache: %v", err)
	}
}

// cached is how many references the cache holds.
func (r *Resolver) cached() int { return r.cache.Len() }

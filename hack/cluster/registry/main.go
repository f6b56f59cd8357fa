// Command registry serves an OCI distribution registry for the local
// development cluster (hack/cluster/up.sh), with go-containerregistry's
// pkg/registry: plain HTTP, no auth, no daemon.
//
// Blobs are kept on disk under -dir/blobs. pkg/registry keeps manifests in
// memory only, so every manifest accepted by a PUT is also written under
// -dir/manifests and replayed at start: images pushed before a restart are
// still there after it.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

type saved struct {
	Path        string    `json:"path"`
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	Time        time.Time `json:"time"`
}

func main() {
	var addrs multi
	flag.Var(&addrs, "addr", "address to listen on (repeatable); default 127.0.0.1:5000")
	dir := flag.String("dir", "bin/cluster/registry", "directory for blobs and manifests")
	verbose := flag.Bool("v", false, "log every request")
	flag.Parse()
	if len(addrs) == 0 {
		addrs = multi{"127.0.0.1:5000"}
	}
	blobs := filepath.Join(*dir, "blobs")
	manifests := filepath.Join(*dir, "manifests")
	for _, d := range []string{blobs, manifests} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	opts := []registry.Option{registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs))}
	if !*verbose {
		opts = append(opts, registry.Logger(log.New(io.Discard, "", 0)))
	}
	reg := registry.New(opts...)

	n, err := replay(reg, manifests)
	if err != nil {
		log.Fatalf("replaying manifests: %v", err)
	}
	log.Printf("registry: %d manifests restored from %s", n, manifests)

	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
			reg.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusRecorder{ResponseWriter: w}
		reg.ServeHTTP(rec, r)
		if rec.status/100 != 2 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err := save(manifests, saved{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body, Time: time.Now()}); err != nil {
			log.Printf("registry: saving manifest %s: %v", r.URL.Path, err)
		}
	})

	errc := make(chan error, len(addrs))
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("registry: serving on http://%s", l.Addr())
		go func() { errc <- (&http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}).Serve(l) }()
	}
	log.Fatal(<-errc)
}

func save(dir string, s saved) error {
	sum := sha256.Sum256([]byte(s.Path))
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	name := filepath.Join(dir, hex.EncodeToString(sum[:8])+".json")
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// replay PUTs saved manifests back, oldest first, so that a tag points at the
// last manifest pushed to it. Manifests whose blobs are gone are dropped.
func replay(reg http.Handler, dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var all []saved
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		var s saved
		if err := json.Unmarshal(b, &s); err != nil {
			log.Printf("registry: skipping %s: %v", e.Name(), err)
			continue
		}
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	n := 0
	for _, s := range all {
		req := httptest.NewRequest(http.MethodPut, s.Path, bytes.NewReader(s.Body))
		req.Header.Set("Content-Type", s.ContentType)
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			log.Printf("registry: dropping %s: %d %s", s.Path, rec.Code, strings.TrimSpace(rec.Body.String()))
			continue
		}
		n++
	}
	return n, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

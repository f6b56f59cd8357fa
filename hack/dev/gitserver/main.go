// Command gitserver serves the git repositories under a directory over
// git's smart HTTP protocol (read-only: clone, fetch, ls-remote), by running
// `git http-backend` as a CGI program. `make dev` runs it on the node so that
// the manager's `git ls-remote` and the build's clone step reach a sample
// function's repository without leaving the node:
//
//	gitserver -root bin/dev/git -listen 127.0.0.1:5001,10.244.0.1:5001
//
// serves bin/dev/git/hello-go.git at http://10.244.0.1:5001/hello-go.git.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	root := flag.String("root", "bin/dev/git", "directory holding the bare repositories (<name>.git)")
	listen := flag.String("listen", "127.0.0.1:5001", "comma-separated addresses to listen on")
	flag.Parse()
	log.SetFlags(log.LstdFlags)
	log.SetPrefix("gitserver: ")

	dir, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		log.Fatalf("git --exec-path: %v (is git installed?)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		log.Fatalf("git http-backend: %v", err)
	}
	h := &cgi.Handler{
		Path: backend,
		Dir:  dir,
		Env: []string{
			"GIT_PROJECT_ROOT=" + dir,
			"GIT_HTTP_EXPORT_ALL=1",
			// the repositories belong to root, the server may run as anyone
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
		},
	}
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
			http.Error(w, "read-only: push to the repository on disk", http.StatusForbidden)
			return
		}
		start := time.Now()
		h.ServeHTTP(w, r)
		log.Printf("%s %s %s (%s)", r.RemoteAddr, r.Method, r.URL.RequestURI(), time.Since(start).Round(time.Millisecond))
	})

	addrs := strings.Split(*listen, ",")
	errc := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", strings.TrimSpace(a))
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("serving %s on http://%s/", dir, ln.Addr())
		srv := &http.Server{Handler: logged, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
	}
	log.Fatal(<-errc)
}

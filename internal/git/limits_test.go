package git_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/lambdapod/lambdapod/internal/git"
	"github.com/lambdapod/lambdapod/internal/memtest"
)

// secret stands for what an internal service answers: it must never reach
// an error, hence a condition message.
const secret = `{"internal":"s3cr3t-token-from-an-internal-service"}`

// streamBody answers status with secret followed by size bytes of filler,
// written as they go so that the test holds none of it. It stops when the
// client hangs up.
func streamBody(status int, size int64) http.HandlerFunc {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if _, err := w.Write([]byte(secret)); err != nil {
			return
		}
		for left := size; left > 0; left -= int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				return
			}
		}
	}
}

// A git URL answering 401, 403 or 404 with a huge body: go-git reads all of
// it into its error, which became the GitUnreachable condition's message.
func TestListErrorBodyIsBoundedAndKeptOut(t *testing.T) {
	for _, tc := range []struct {
		status int
		size   int64
		want   string
	}{
		{http.StatusNotFound, 300 << 20, "git server answered 404 Not Found for "},
		{http.StatusUnauthorized, 8 << 10, "git server answered 401 Unauthorized for "},
		{http.StatusForbidden, 8 << 10, "git server answered 403 Forbidden for "},
		{http.StatusInternalServerError, 8 << 10, "git server answered 500 Internal Server Error for "},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(streamBody(tc.status, tc.size))
			defer srv.Close()
			url := srv.URL + "/org/repo.git"
			err, use := memtest.Measure(func() error {
				_, err := git.Resolve(context.Background(), url, "main", git.Credentials{})
				return err
			})
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			msg := err.Error()
			t.Logf("%d with a %s body: heap %s; message %d bytes", tc.status, memtest.Size(tc.size), use, len(msg))
			if strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "xxxx") {
				t.Errorf("the message carries the server's body: %.200q", msg)
			}
			if len(msg) > 256 {
				t.Errorf("the message is %d bytes long", len(msg))
			}
			if !strings.Contains(msg, tc.want+url) {
				t.Errorf("message = %.300q, want it to say %q", msg, tc.want+url)
			}
			if use.Peak > 16<<20 || use.Retained > 4<<20 {
				t.Errorf("heap grew by %s", use)
			}
		})
	}
}

// A git URL that is an internal HTTP service answering 200: its body must
// not be read back into the message, whether it is plain JSON or happens to
// start like a pkt-line, whose content go-git quotes in its error.
func TestListInternalServiceBodyKeptOut(t *testing.T) {
	for name, body := range map[string]string{
		"json":     secret,
		"pkt-line": fmt.Sprintf("%04x%s\n", len(secret)+5, secret),
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(body))
			}))
			defer srv.Close()
			_, err := git.Resolve(context.Background(), srv.URL+"/internal/api", "main", git.Credentials{})
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			msg := err.Error()
			t.Logf("message (%d bytes): %s", len(msg), msg)
			if strings.Contains(msg, "s3cr3t") || len(msg) > 256 {
				t.Errorf("message = %.300q", msg)
			}
		})
	}
}

// A 200 answer that is a valid advertisement going on without end: ls-remote
// stops at its limit, with an error rather than the refs read so far.
func TestListAdvertisementIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		pkt := func(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
		hash := strings.Repeat("a", 40)
		if _, err := fmt.Fprint(w, pkt("# service=git-upload-pack\n"), "0000", pkt(hash+" HEAD\x00symref=HEAD:refs/heads/main\n")); err != nil {
			return
		}
		// Long names make few refs of many bytes: the limit is on bytes,
		// and parsing hundreds of thousands of short refs is slow under
		// the race detector.
		long := strings.Repeat("b", 4000)
		var buf bytes.Buffer
		for i := 0; ; i++ {
			fmt.Fprint(&buf, pkt(fmt.Sprintf("%s refs/heads/%s-%09d\n", hash, long, i)))
			if buf.Len() < 64<<10 {
				continue
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			buf.Reset()
		}
	}))
	defer srv.Close()
	err, use := memtest.Measure(func() error {
		_, err := git.List(context.Background(), srv.URL+"/org/repo.git", git.Credentials{})
		return err
	})
	if err == nil {
		t.Fatal("List of an endless advertisement succeeded")
	}
	msg := err.Error()
	t.Logf("heap %s; message %d bytes: %s", use, len(msg), msg)
	if !strings.Contains(msg, "larger than 32 MiB") || len(msg) > 256 {
		t.Errorf("message = %.300q", msg)
	}
	// Parsing 32 MiB of refs takes about twice that; what matters is that
	// it stops there and keeps nothing.
	if use.Peak > 128<<20 || use.Retained > 4<<20 {
		t.Errorf("heap grew by %s", use)
	}
}

// The URL in a message is the Function's without its password, and the
// error still tells go-git's kind of failure.
func TestListErrorRedactsAndUnwraps(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://bot:hunter2@", 1) + "/org/repo.git"
	_, err := git.List(context.Background(), url, git.Credentials{})
	if err == nil {
		t.Fatal("List succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "bot:xxxxx@") {
		t.Errorf("message = %q", err)
	}
	if !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Errorf("%v is not transport.ErrAuthenticationRequired", err)
	}
	var he *git.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Errorf("%v is no HTTPError of 401", err)
	}
}

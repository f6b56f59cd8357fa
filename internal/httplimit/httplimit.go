// Package httplimit bounds what the manager reads from the HTTP servers a
// Function names: git servers and image registries. Those can be anything
// the manager can reach, an internal service included, and answer anything:
// the manager's heap must not follow the size of their answers, and a slow
// one must not hold a reconcile worker.
// Package git (ls-remote) and the image-config reader use it.
package httplimit

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Bounds the Base transport puts on waiting for a server. The whole of a
// request is bounded by its context, which the callers set.
const (
	DialTimeout           = 10 * time.Second
	TLSHandshakeTimeout   = 10 * time.Second
	ResponseHeaderTimeout = 30 * time.Second
	// MaxResponseHeaderBytes is far below net/http's 1 MiB default: headers
	// are read whole, before any limit on the body applies.
	MaxResponseHeaderBytes = 64 << 10
	// DefaultMaxErrorBody is how much of an answer other than 2xx is
	// passed on: such a body is read only to make an error of it, and no
	// error of ours quotes it.
	DefaultMaxErrorBody = 4 << 10
)

// NewBase returns a transport like http.DefaultTransport (proxies from the
// environment, HTTP/2, connection reuse) whose waits are bounded. Share one
// per kind of server, so connections are reused.
func NewBase() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = TLSHandshakeTimeout
	t.ResponseHeaderTimeout = ResponseHeaderTimeout
	t.MaxResponseHeaderBytes = MaxResponseHeaderBytes
	return t
}

// Transport passes on at most MaxBody bytes of a 2xx answer's body and at
// most MaxErrorBody bytes of any other's.
//
// A 2xx body that goes on fails with a *TooLargeError once past MaxBody
// (at once when its Content-Length says so): cutting it short instead would
// hand the reader a truncated document as if whole, a ref list missing
// refs. Any other body is cut short silently, so that the reader still
// makes its error of the status code.
type Transport struct {
	// Base makes the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// MaxBody bounds 2xx bodies; it must be positive.
	MaxBody int64
	// MaxErrorBody bounds other bodies; 0 means DefaultMaxErrorBody.
	MaxErrorBody int64
}

// TooLargeError is a 2xx answer whose body is longer than the Transport
// passes on.
type TooLargeError struct {
	Host  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the answer of %s is larger than %s", e.Host, bytesString(e.Limit))
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit := t.MaxErrorBody
		if limit <= 0 {
			limit = DefaultMaxErrorBody
		}
		if resp.ContentLength < 0 || resp.ContentLength > limit {
			resp.ContentLength = -1
		}
		resp.Body = &cutBody{r: io.LimitReader(resp.Body, limit), c: resp.Body}
		return resp, nil
	}
	tooLarge := &TooLargeError{Host: req.URL.Host, Limit: t.MaxBody}
	if resp.ContentLength > t.MaxBody {
		_ = resp.Body.Close()
		return nil, tooLarge
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.MaxBody, err: tooLarge}
	return resp, nil
}

// cutBody reads a LimitReader and closes what it limits.
type cutBody struct {
	r io.Reader
	c io.Closer
}

func (b *cutBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *cutBody) Close() error               { return b.c.Close() }

// boundedBody fails with err past left bytes. It reads one byte more than
// it allows, to tell a body of exactly the limit from a longer one.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), b.err
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

func bytesString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

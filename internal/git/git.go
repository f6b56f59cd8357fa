// Package git resolves a Function's git revision to a commit with
// `git ls-remote` (go-git's Remote.List), and turns the Function's
// secretRef into credentials, following Tekton's git secret conventions:
// basic-auth `username`/`password` keys, or `ssh-privatekey` (with an
// optional `known_hosts`).
package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"regexp"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/lambdapod/lambdapod/internal/httplimit"
)

// Secret keys, as Tekton's git credentials use them (kubernetes.io/basic-auth
// and kubernetes.io/ssh-auth Secrets), plus the push webhook's secret.
const (
	KeyUsername      = "username"
	KeyPassword      = "password"
	KeySSHPrivateKey = "ssh-privatekey"
	KeyKnownHosts    = "known_hosts"
	KeyWebhookSecret = "webhook-secret"
)

// Credentials for a private repository. The zero value is anonymous.
type Credentials struct {
	Username      string
	Password      string
	SSHPrivateKey []byte
	// KnownHosts, in OpenSSH's format, pins the SSH server's host key; without
	// it any host key is accepted.
	KnownHosts []byte
}

// CredentialsFromSecret reads the keys of a Secret's data; missing keys
// leave the fields empty.
func CredentialsFromSecret(data map[string][]byte) Credentials {
	return Credentials{
		Username:      string(data[KeyUsername]),
		Password:      string(data[KeyPassword]),
		SSHPrivateKey: data[KeySSHPrivateKey],
		KnownHosts:    data[KeyKnownHosts],
	}
}

// IsSSH reports whether url is reached over SSH: ssh:// or scp-style
// user@host:path.
func IsSSH(url string) bool {
	if strings.HasPrefix(url, "ssh://") {
		return true
	}
	return !strings.Contains(url, "://") && strings.Contains(url, "@") && strings.Contains(url, ":")
}

// Auth is the go-git authentication for url; nil means anonymous.
func (c Credentials) Auth(url string) (transport.AuthMethod, error) {
	if IsSSH(url) {
		if len(c.SSHPrivateKey) == 0 {
			// Without a key go-git would ask an SSH agent, which a pod has
			// not, and say only that SSH_AUTH_SOCK is unset.
			return nil, fmt.Errorf("a git URL over SSH needs a private key: put it under %q in the Secret of spec.source.git.secretRef", KeySSHPrivateKey)
		}
		ep, err := transport.NewEndpoint(url)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", url, err)
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, c.SSHPrivateKey, "")
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", KeySSHPrivateKey, err)
		}
		keys.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // documented: pin with known_hosts
		if len(c.KnownHosts) > 0 {
			cb, err := hostKeyCallback(c.KnownHosts)
			if err != nil {
				return nil, err
			}
			keys.HostKeyCallback = cb
		}
		return keys, nil
	}
	if c.Username == "" && c.Password == "" {
		return nil, nil
	}
	user := c.Username
	if user == "" {
		// A token alone: GitHub, GitLab and Gitea take any user name with it.
		user = "git"
	}
	return &githttp.BasicAuth{Username: user, Password: c.Password}, nil
}

// hostKeyCallback checks host keys against known_hosts content, whose
// host patterns are plain names ("github.com", "[git.example]:2222").
func hostKeyCallback(knownHosts []byte) (ssh.HostKeyCallback, error) {
	want := map[string][]ssh.PublicKey{}
	rest := knownHosts
	for {
		marker, hosts, key, _, r, err := ssh.ParseKnownHosts(rest)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", KeyKnownHosts, err)
		}
		rest = r
		if marker != "" {
			continue
		}
		for _, h := range hosts {
			want[h] = append(want[h], key)
		}
	}
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		for _, name := range []string{knownhosts.Normalize(hostname), hostname} {
			for _, k := range want[name] {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return nil
				}
			}
		}
		return fmt.Errorf("the host key of %s is not in %s", hostname, KeyKnownHosts)
	}, nil
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// IsCommit reports whether revision is a full commit hash.
func IsCommit(revision string) bool { return commitRE.MatchString(revision) }

// Resolved is what a revision points at.
type Resolved struct {
	// Commit is the 40-hex commit.
	Commit string
	// Ref is the full reference name the revision matched (refs/heads/main,
	// refs/tags/v1), or empty for a commit hash.
	Ref string
}

// NotFoundError says the repository has no branch or tag of that name.
type NotFoundError struct{ URL, Revision string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("revision %q is no branch or tag of %s", e.Revision, e.URL)
}

// Resolve finds the commit of revision (a branch, a tag or a commit hash)
// in the repository at url, as `git ls-remote` does. A commit hash resolves
// to itself without asking the server.
func Resolve(ctx context.Context, url, revision string, creds Credentials) (Resolved, error) {
	if IsCommit(revision) {
		return Resolved{Commit: revision}, nil
	}
	refs, err := List(ctx, url, creds)
	if err != nil {
		return Resolved{}, err
	}
	return Match(refs, url, revision)
}

// List returns the repository's references, with annotated tags peeled to
// their commits. Its errors name the URL without its password and carry
// nothing of what the server answered: they become condition messages.
func List(ctx context.Context, url string, creds Credentials) ([]*plumbing.Reference, error) {
	auth, err := creds.Auth(url)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, listError(url, err)
	}
	if ep.Protocol != "http" && ep.Protocol != "https" {
		remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
		refs, err := remote.ListContext(ctx, &gogit.ListOptions{Auth: auth, PeelingOption: gogit.AppendPeeled})
		if err != nil {
			return nil, listError(url, err)
		}
		return refs, nil
	}
	return listHTTP(ctx, url, ep, auth)
}

// Limits on what ls-remote reads from a git server over HTTP. go-git reads
// the whole body of a 401, 403 or 404 into its error, and the whole
// advertisement of a 200; a git URL may point at anything. An advertisement
// lists every branch and tag (and, on GitHub, every pull request's refs):
// a few MiB for the largest repositories.
const (
	maxAdvertisement = 32 << 20
	maxErrorBody     = 4 << 10
	// httpTimeout bounds one ls-remote over HTTP, redirects included, even
	// when the caller's context allows more.
	httpTimeout = time.Minute
)

// httpTransport is shared by every ls-remote over HTTP, for connection
// reuse. It is given to go-git per call (see listHTTP) rather than
// installed as go-git's http and https protocols, which would also bound
// the packfiles of clones and fetches in this process.
var httpTransport = &httplimit.Transport{Base: httplimit.NewBase(), MaxBody: maxAdvertisement, MaxErrorBody: maxErrorBody}

// listHTTP is what go-git's Remote.List does, with an HTTP client of ours:
// Remote takes no client, only the one installed for the protocol.
func listHTTP(ctx context.Context, url string, ep *transport.Endpoint, auth transport.AuthMethod) (refs []*plumbing.Reference, err error) {
	rec := &statusRecorder{next: httpTransport}
	sess, err := githttp.NewClient(&http.Client{Transport: rec, Timeout: httpTimeout}).NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, listError(url, err)
	}
	defer func() {
		if cerr := sess.Close(); err == nil && cerr != nil {
			err = listError(url, cerr)
		}
	}()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		if rec.status != 0 && (rec.status < 200 || rec.status > 299) {
			return nil, &HTTPError{URL: redact(url), StatusCode: rec.status}
		}
		return nil, listError(url, err)
	}
	all, err := ar.AllReferences()
	if err != nil {
		return nil, listError(url, err)
	}
	iter, err := all.IterReferences()
	if err != nil {
		return nil, listError(url, err)
	}
	if err := iter.ForEach(func(r *plumbing.Reference) error {
		refs = append(refs, r)
		return nil
	}); err != nil {
		return nil, listError(url, err)
	}
	for name, hash := range ar.Peeled {
		refs = append(refs, plumbing.NewReferenceFromStrings(name+"^{}", hash.String()))
	}
	return refs, nil
}

// statusRecorder keeps the status of the last answer it passed on: the
// final one, after redirects. go-git's error for it quotes the body, and
// the one for a status other than 401, 403 and 404 hides the code.
type statusRecorder struct {
	next   http.RoundTripper
	status int
}

func (s *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err == nil {
		s.status = resp.StatusCode
	}
	return resp, err
}

// HTTPError is a git server's answer other than 2xx to ls-remote. It says
// nothing of the body, which could be anything of any size, an internal
// service's data included.
type HTTPError struct {
	// URL is the repository's, without its password.
	URL        string
	StatusCode int
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("git server answered %d %s for %s", e.StatusCode, http.StatusText(e.StatusCode), e.URL)
}

// Unwrap is go-git's error for the status, if it has one, so that
// errors.Is(err, transport.ErrAuthenticationRequired) holds as it does for
// go-git's own errors.
func (e *HTTPError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return transport.ErrAuthenticationRequired
	case http.StatusForbidden:
		return transport.ErrAuthorizationFailed
	case http.StatusNotFound:
		return transport.ErrRepositoryNotFound
	}
	return nil
}

// maxErrorText bounds what listError quotes of an error it does not know:
// the caller's messages must stay short whatever a library put in them.
const maxErrorText = 256

// listError says that ls-remote of url failed with err, in few words:
// go-git's error for an answer that is no git advertisement quotes the
// answer, so it is replaced; others are cut at maxErrorText. It wraps err.
func listError(url string, err error) error {
	var data *packp.ErrUnexpectedData
	text := err.Error()
	switch {
	case errors.As(err, &data), errors.Is(err, pktline.ErrInvalidPktLen):
		text = "the answer is not a git reference advertisement"
	case len(text) > maxErrorText:
		text = strings.ToValidUTF8(text[:maxErrorText], "") + "…"
	}
	return &wrapped{text: fmt.Sprintf("git ls-remote %s: %s", redact(url), text), err: err}
}

// wrapped is err told as text.
type wrapped struct {
	text string
	err  error
}

func (w *wrapped) Error() string { return w.text }
func (w *wrapped) Unwrap() error { return w.err }

// redact is url without the password it may carry, which would otherwise be
// shown in the Function's status.
func redact(url string) string {
	u, err := neturl.Parse(url)
	if err != nil || u.User == nil {
		return url
	}
	return u.Redacted()
}

// Match picks revision among refs: a full reference name, then a branch,
// then a tag (peeled to its commit).
func Match(refs []*plumbing.Reference, url, revision string) (Resolved, error) {
	byName := map[string]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name().String()] = r
	}
	candidates := []string{revision, "refs/heads/" + revision, "refs/tags/" + revision}
	if revision == "HEAD" {
		candidates = []string{"HEAD"}
	}
	for _, name := range candidates {
		r, ok := byName[name]
		if !ok {
			continue
		}
		if peeled, ok := byName[name+"^{}"]; ok {
			r = peeled
		}
		if r.Type() == plumbing.SymbolicReference {
			target, ok := byName[r.Target().String()]
			if !ok {
				continue
			}
			r = target
		}
		return Resolved{Commit: r.Hash().String(), Ref: name}, nil
	}
	return Resolved{}, &NotFoundError{URL: url, Revision: revision}
}

// RefMatches reports whether a pushed reference (refs/heads/x, refs/tags/y)
// is the one revision names.
func RefMatches(pushed, revision string) bool {
	if IsCommit(revision) {
		return false
	}
	return pushed == revision || pushed == "refs/heads/"+revision || pushed == "refs/tags/"+revision
}

// Package webhook receives git push events from GitHub, GitLab and Gitea
// (or Forgejo) for one Function each, at POST /hooks/{namespace}/{name},
// verifies them against the Function's webhook secret, and asks the
// reconciler to resolve the Function's revision at once when the push is
// for the Function's repository and on the branch or tag it builds.
// Nothing is written to the Function.
//
// The webhook secret is the key webhook-secret of the Secret named by the
// Function's spec.source.git.secretRef. Verification, per provider:
//
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//   - GitLab: X-Gitlab-Token: <the secret>
//   - Gitea/Forgejo: X-Gitea-Signature: <hex HMAC-SHA256 of the body>
//
// The receiver is reachable by anyone who can reach the manager, so until
// a delivery is authenticated it costs little and tells nothing: a
// delivery without a well-formed signature header, for a path that names
// no Function, for a Function without a webhook secret, or with a wrong
// signature or token, gets one and the same answer (403, Refused), and
// only the manager's log says which it was. (How long the answer takes
// can still differ: a delivery for a Function with a webhook secret costs
// a read of its Secret.) The body, up to MaxBody, is read only once the
// headers have passed every check that needs no body, and at most
// maxBuffered bytes of bodies are held at once over all deliveries.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/git"
)

// MaxBody is the largest payload read, as GitHub caps its payloads at
// 25 MB; a delivery that declares a larger Content-Length is refused with
// 413 before its Function is looked up.
const MaxBody = 25 << 20

// maxBuffered is how many bytes of bodies are held at once, over all
// deliveries being read: room for one body of MaxBody and the small
// pushes of other Functions beside it. A sender who knows a hook with a
// webhook secret can make the receiver read bodies with wrong
// signatures; this keeps the memory that costs well inside the manager's
// limit however many it sends at once.
const maxBuffered = 32 << 20

// bufferWait is how long a delivery waits for room to read its body
// before it is answered 503: long enough for a few deliveries of MaxBody
// before it to be read, and short of the 10 s GitHub waits for an answer.
const bufferWait = 8 * time.Second

// PathPrefix is where push events are received.
const PathPrefix = "/hooks/"

// Answers that say nothing about what exists in the cluster, so that
// callers who are not yet authenticated learn nothing from them.
const (
	// Refused is the body of the 403 that answers every delivery that is
	// not authenticated, whatever the reason.
	Refused = "refused: this hook takes push events signed with its Function's webhook secret " +
		"(GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token, Gitea X-Gitea-Signature); " +
		"the manager's log says why this delivery was refused"
	// NotLeader is the body of the 503 of a manager replica that does not
	// lead: only the leader's reconciler acts on a push.
	NotLeader = "not the leader: push webhooks are taken by the leading manager replica; deliver again"
	// Unavailable is the body of the 503 of a delivery that could not be
	// checked for now; the manager's log says why.
	Unavailable = "the manager cannot check this delivery now; deliver again later"
)

// Trigger asks for the Function's revision to be resolved now.
type Trigger interface {
	Resolve(ctx context.Context, key types.NamespacedName) error
}

// Handler serves push webhooks.
type Handler struct {
	// Functions reads Functions (the manager's cache will do).
	Functions client.Reader
	// Secrets reads Secrets (the API server directly: the manager caches
	// no Secrets).
	Secrets client.Reader
	Trigger Trigger
	// Leader reports whether this manager replica leads. Every replica
	// serves the hook, but only the leader runs the reconciler that acts
	// on a push, so the others answer 503 (NotLeader) rather than accept
	// a push that nothing would act on. nil means always, as in a manager
	// without leader election; see Elected.
	Leader func() bool

	once   sync.Once
	budget *budget
}

// Elected is a Handler.Leader for a channel that is closed once this
// replica leads, such as the controller-runtime manager's Elected().
func Elected(elected <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-elected:
			return true
		default:
			return false
		}
	}
}

// push is what the handler needs of a push event; GitHub, GitLab and Gitea
// all send ref and after, and name the repository in the fields of
// repository (GitHub, Gitea, and GitLab's older ones) or project (GitLab).
type push struct {
	Ref        string   `json:"ref"`
	After      string   `json:"after"`
	Repository repoURLs `json:"repository"`
	Project    repoURLs `json:"project"`
}

// repoURLs are the fields of the push events' repository and project
// objects that hold a URL of the repository.
type repoURLs struct {
	// GitHub and Gitea.
	CloneURL string `json:"clone_url"`
	SSHURL   string `json:"ssh_url"`
	HTMLURL  string `json:"html_url"`
	GitURL   string `json:"git_url"`
	// GitLab.
	GitHTTPURL string `json:"git_http_url"`
	GitSSHURL  string `json:"git_ssh_url"`
	WebURL     string `json:"web_url"`
	HTTPURL    string `json:"http_url"`
	Homepage   string `json:"homepage"`
	// GitHub's is the web page in push events; GitLab's the SSH URL.
	URL string `json:"url"`
}

func (r repoURLs) all() []string {
	return []string{r.CloneURL, r.SSHURL, r.HTMLURL, r.GitURL, r.GitHTTPURL, r.GitSSHURL, r.WebURL, r.HTTPURL, r.Homepage, r.URL}
}

// repositories are the URLs the push gives for its repository, the most
// usual first.
func (p push) repositories() []string {
	var urls []string
	for _, u := range append(p.Repository.all(), p.Project.all()...) {
		if u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// ServeHTTP verifies and acts on one delivery.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	logger := log.FromContext(ctx).WithName("webhook").WithValues("path", r.URL.Path)
	answer := func(code int, msg string) {
		if code >= 400 {
			// The body may be unread: closing the connection stops the
			// sender from sending the rest to a receiver that discards
			// it, and makes a retry open a new connection, which the
			// Service may send to another replica (the leader).
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, msg+"\n")
	}
	reply := func(code int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if code >= 400 {
			logger.Info("refused a webhook delivery", "status", code, "reason", msg)
		}
		answer(code, msg)
	}
	// refuse answers a delivery that is not authenticated: the same answer
	// whatever the reason, which only the log tells.
	refuse := func(reason string) {
		logger.Info("refused a webhook delivery", "status", http.StatusForbidden, "reason", reason)
		answer(http.StatusForbidden, Refused)
	}
	unavailable := func(reason string, err error) {
		logger.Error(err, "could not check a webhook delivery", "reason", reason)
		answer(http.StatusServiceUnavailable, Unavailable)
	}

	// Checks on the request alone, which tell nothing about the cluster.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(http.StatusMethodNotAllowed, "push webhooks are POSTed to %s{namespace}/{function}", PathPrefix)
		return
	}
	if h.Leader != nil && !h.Leader() {
		logger.Info("refused a webhook delivery", "status", http.StatusServiceUnavailable, "reason", "not the leader")
		answer(http.StatusServiceUnavailable, NotLeader)
		return
	}
	provider, event := detect(r.Header)
	if provider == "" {
		reply(http.StatusBadRequest, "not a GitHub, GitLab or Gitea webhook: no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header")
		return
	}
	key, ok := hook(r.URL.Path)
	if !ok {
		refuse("no such hook: not " + PathPrefix + "{namespace}/{function}")
		return
	}
	logger = logger.WithValues("function", key.String(), "provider", provider)
	sig, err := signature(provider, r.Header)
	if err != nil {
		refuse(err.Error())
		return
	}
	if r.ContentLength > MaxBody {
		reply(http.StatusRequestEntityTooLarge, "the body is %d bytes, over the limit of %d", r.ContentLength, MaxBody)
		return
	}

	// Checks against the cluster, all answered alike while the sender is
	// not authenticated.
	fn := &lambdapodv1alpha1.Function{}
	if err := h.Functions.Get(ctx, key, fn); err != nil {
		if apierrors.IsNotFound(err) {
			refuse("no such Function")
			return
		}
		unavailable("reading the Function", err)
		return
	}
	g := fn.Spec.Source.Git
	if g == nil {
		refuse("the Function has no git source")
		return
	}
	secret, reason, err := h.secret(ctx, fn)
	if err != nil {
		unavailable("reading the webhook secret", err)
		return
	}
	if secret == nil {
		refuse(reason)
		return
	}
	if provider == GitLab && subtle.ConstantTimeCompare(sig, secret) != 1 {
		refuse("X-Gitlab-Token does not match the webhook secret")
		return
	}
	body, release, ok, err := h.read(ctx, w, r)
	if !ok {
		unavailable("waiting to read the body", fmt.Errorf("over %d bytes of bodies are being read", maxBuffered))
		return
	}
	defer release()
	if err != nil {
		// Nothing is known of the sender until the whole body matches
		// its signature.
		refuse(fmt.Sprintf("reading the body: %v", err))
		return
	}
	if provider != GitLab {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		if !hmac.Equal(sig, mac.Sum(nil)) {
			refuse(fmt.Sprintf("%s does not match the body signed with the webhook secret", signatureHeader[provider]))
			return
		}
	}

	// The sender is authenticated: answers may say why.
	if !isPush(provider, event) {
		// A valid delivery of another event, such as GitHub's ping on
		// creation: acknowledged, so the provider shows it green.
		reply(http.StatusOK, "ignored %s event %q: only pushes trigger builds", provider, event)
		return
	}
	var p push
	if err := json.Unmarshal(body, &p); err != nil {
		reply(http.StatusBadRequest, "the push event is not the JSON of a push: %v", err)
		return
	}
	if !strings.HasPrefix(p.Ref, "refs/") {
		reply(http.StatusBadRequest, "the push event has no ref")
		return
	}
	// A webhook secret may be shared by the hooks of several repositories
	// (an organisation's hook, say): only a push to the repository the
	// Function builds may trigger it.
	urls := p.repositories()
	if len(urls) == 0 {
		reply(http.StatusBadRequest, "the push event names no repository (clone_url, ssh_url, html_url, git_http_url, ...)")
		return
	}
	if !sameRepository(g.URL, urls...) {
		reply(http.StatusUnprocessableEntity, "the push is to repository %s, but Function %s builds %s (spec.source.git.url)",
			repositoryName(urls[0]), key, repositoryName(g.URL))
		return
	}
	revision := g.RevisionOrDefault()
	if !git.RefMatches(p.Ref, revision) {
		reply(http.StatusOK, "ignored push to %s: Function %s builds revision %q", p.Ref, key, revision)
		return
	}
	if err := h.Trigger.Resolve(ctx, key); err != nil {
		reply(http.StatusServiceUnavailable, "queueing Function %s: %v", key, err)
		return
	}
	logger.Info("push received", "ref", p.Ref, "after", p.After)
	reply(http.StatusAccepted, "resolving %s for Function %s", p.Ref, key)
}

// hook is the Function a path names, if it is one that can exist.
func hook(path string) (types.NamespacedName, bool) {
	rest, ok := strings.CutPrefix(path, PathPrefix)
	if !ok {
		return types.NamespacedName{}, false
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: ns, Name: name}, true
}

// secret is the Function's webhook secret; nil with the reason, for the
// log only, when it has none; an error only when it could not be read.
func (h *Handler) secret(ctx context.Context, fn *lambdapodv1alpha1.Function) ([]byte, string, error) {
	ref := fn.Spec.Source.Git.SecretRef
	if ref == nil {
		return nil, "the Function has no spec.source.git.secretRef", nil
	}
	s := &corev1.Secret{}
	if err := h.Secrets.Get(ctx, client.ObjectKey{Namespace: fn.Namespace, Name: ref.Name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("the Function's Secret %s does not exist", ref.Name), nil
		}
		return nil, "", err
	}
	v := s.Data[git.KeyWebhookSecret]
	if len(v) == 0 {
		return nil, fmt.Sprintf("the Function's Secret %s has no %s key", ref.Name, git.KeyWebhookSecret), nil
	}
	return v, "", nil
}

// read reads the body once there is room for it among the bodies being
// read: ok is false when there was none in time. release gives the room
// back, once the body is no longer used.
func (h *Handler) read(ctx context.Context, w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool, err error) {
	h.once.Do(func() { h.budget = newBudget(maxBuffered) })
	n := r.ContentLength
	if n < 0 {
		// Of unknown length (chunked): it may be as long as allowed.
		n = MaxBody
	}
	if !h.budget.take(ctx, n, bufferWait) {
		return nil, nil, false, nil
	}
	release = func() { h.budget.give(n) }
	if r.ContentLength >= 0 {
		// The server ends the body at its Content-Length, checked above
		// to be at most MaxBody: read into a buffer of that size, which
		// leaves no garbage behind as growing one would.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
		return body, release, true, err
	}
	body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	return body, release, true, err
}

// budget is a number of bytes shared by deliveries.
type budget struct {
	mu   sync.Mutex
	free int64
	// given is closed, and replaced, whenever bytes are given back.
	given chan struct{}
}

func newBudget(n int64) *budget {
	return &budget{free: n, given: make(chan struct{})}
}

// take takes n bytes, waiting at most wait for them; false if they were
// not there in time or ctx ended.
func (b *budget) take(ctx context.Context, n int64, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		given := b.given
		b.mu.Unlock()
		select {
		case <-given:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// give gives back n bytes taken.
func (b *budget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	close(b.given)
	b.given = make(chan struct{})
}

// Providers.
const (
	GitHub = "GitHub"
	GitLab = "GitLab"
	Gitea  = "Gitea"
)

// detect names the provider from its event header. Gitea and Forgejo also
// send X-GitHub-Event, so they are recognised first.
func detect(h http.Header) (provider, event string) {
	switch {
	case h.Get("X-Gitea-Event") != "":
		return Gitea, h.Get("X-Gitea-Event")
	case h.Get("X-Gitlab-Event") != "":
		return GitLab, h.Get("X-Gitlab-Event")
	case h.Get("X-GitHub-Event") != "":
		return GitHub, h.Get("X-GitHub-Event")
	}
	return "", ""
}

func isPush(provider, event string) bool {
	switch provider {
	case GitLab:
		return event == "Push Hook" || event == "Tag Push Hook"
	default:
		return event == "push"
	}
}

// signatureHeader is the header each provider signs or authenticates
// its deliveries with.
var signatureHeader = map[string]string{
	GitHub: "X-Hub-Signature-256",
	GitLab: "X-Gitlab-Token",
	Gitea:  "X-Gitea-Signature",
}

// signature is a delivery's HMAC-SHA256 (GitHub, Gitea) or token
// (GitLab), from its header alone, so that a delivery without a
// well-formed one is refused before anything else is done for it.
func signature(provider string, h http.Header) ([]byte, error) {
	header := signatureHeader[provider]
	v := strings.TrimSpace(h.Get(header))
	if v == "" {
		return nil, fmt.Errorf("unsigned: no %s header", header)
	}
	if provider == GitLab {
		return []byte(v), nil
	}
	if provider == GitHub {
		hexSig, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return nil, fmt.Errorf("%s does not start with sha256=", header)
		}
		v = hexSig
	}
	sig, err := hex.DecodeString(v)
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("%s is not the hex of an HMAC-SHA256", header)
	}
	return sig, nil
}

// Sign is the hex HMAC-SHA256 of body, as GitHub (after "sha256=") and
// Gitea send it.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// defaultPorts are left out of repositoryName, so that a URL that spells
// the port out names the same repository as one that does not.
var defaultPorts = map[string]string{"http": "80", "https": "443", "ssh": "22", "git+ssh": "22", "ssh+git": "22", "git": "9418"}

// repositoryName is what names the repository in a git URL, as
// host[:port]/path in lower case, without the scheme, user, default port,
// trailing slash or .git: the clone, SSH and web URLs of a repository all
// have the same one. Paths are compared without case too, since GitHub,
// GitLab and Gitea match owners and repositories without it and send
// their own spelling in push events. It is "" for what is not a git URL.
func repositoryName(raw string) string {
	s := strings.TrimSpace(raw)
	var host, path string
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		host = u.Hostname()
		if port := u.Port(); port != "" && port != defaultPorts[strings.ToLower(u.Scheme)] {
			host = net.JoinHostPort(host, port)
		}
		path = u.Path
	} else {
		// scp-like, as git reads it: [user@]host:path, with no slash
		// before the colon.
		before, after, ok := strings.Cut(s, ":")
		if !ok || strings.Contains(before, "/") {
			return ""
		}
		if i := strings.LastIndex(before, "@"); i >= 0 {
			before = before[i+1:]
		}
		host, path = before, after
	}
	path = strings.TrimRight(path, "/")
	path = strings.TrimSuffix(path, ".git")
	path = strings.Trim(path, "/")
	if path == "" {
		return ""
	}
	return strings.ToLower(host + "/" + path)
}

// sameRepository reports whether any of urls names the repository of
// want, by repositoryName.
func sameRepository(want string, urls ...string) bool {
	name := repositoryName(want)
	if name == "" {
		return false
	}
	for _, u := range urls {
		if repositoryName(u) == name {
			return true
		}
	}
	return false
}

// Server serves the Handler on addr as a manager Runnable. It runs on
// every replica, not only the leader, so that a delivery that reaches
// another replica is answered (503 by the Handler, see Handler.Leader)
// rather than left to time out.
type Server struct {
	Addr    string
	Handler http.Handler
}

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle(PathPrefix, s.Handler)
	srv := &http.Server{Addr: s.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listening for webhooks on %s: %w", s.Addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	case err := <-errc:
		return err
	}
}

// NeedLeaderElection is false: every replica answers webhooks.
func (s *Server) NeedLeaderElection() bool { return false }

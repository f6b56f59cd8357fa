// Package webhook receives git push events from GitHub, GitLab and Gitea
// (or Forgejo) for one Function each, at POST /hooks/{namespace}/{name},
// verifies them against the Function's webhook secret, and asks the
// reconciler to resolve the Function's revision at once when the push is
// on the branch or tag it builds. Nothing is written to the Function.
//
// The webhook secret is the key webhook-secret of the Secret named by the
// Function's spec.source.git.secretRef. Verification, per provider:
//
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//   - GitLab: X-Gitlab-Token: <the secret>
//   - Gitea/Forgejo: X-Gitea-Signature: <hex HMAC-SHA256 of the body>
//
// Anything else, unsigned, badly signed or malformed is refused with a 4xx
// status and a body that says why, and changes nothing.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/git"
)

// MaxBody is the largest payload read; GitHub caps its payloads at 25 MB.
const MaxBody = 25 << 20

// PathPrefix is where push events are received.
const PathPrefix = "/hooks/"

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
}

// push is what the handler needs of a push event; GitHub, GitLab and Gitea
// all send these fields.
type push struct {
	Ref   string `json:"ref"`
	After string `json:"after"`
}

// ServeHTTP verifies and acts on one delivery.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	logger := log.FromContext(ctx).WithName("webhook")
	reply := func(code int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if code >= 400 {
			logger.Info("refused a webhook delivery", "path", r.URL.Path, "status", code, "reason", msg)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(http.StatusMethodNotAllowed, "push webhooks are POSTed to %s{namespace}/{function}", PathPrefix)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, PathPrefix)
	ns, name, ok := strings.Cut(rest, "/")
	if !strings.HasPrefix(r.URL.Path, PathPrefix) || !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		reply(http.StatusNotFound, "no such hook: POST to %s{namespace}/{function}", PathPrefix)
		return
	}
	provider, event := detect(r.Header)
	if provider == "" {
		reply(http.StatusBadRequest, "not a GitHub, GitLab or Gitea webhook: no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		reply(http.StatusRequestEntityTooLarge, "reading the body: %v", err)
		return
	}

	key := types.NamespacedName{Namespace: ns, Name: name}
	fn := &lambdapodv1alpha1.Function{}
	if err := h.Functions.Get(ctx, key, fn); err != nil {
		if apierrors.IsNotFound(err) {
			reply(http.StatusNotFound, "no Function %s", key)
			return
		}
		reply(http.StatusServiceUnavailable, "reading Function %s: %v", key, err)
		return
	}
	g := fn.Spec.Source.Git
	if g == nil {
		reply(http.StatusNotFound, "Function %s has no git source", key)
		return
	}
	secret, status, err := h.secret(ctx, fn)
	if err != nil {
		reply(status, "%v", err)
		return
	}
	if status, err := verify(provider, r.Header, body, secret); err != nil {
		reply(status, "%s webhook for %s: %v", provider, key, err)
		return
	}

	if !isPush(provider, event) {
		// A valid delivery of another event, such as GitHub's ping on
		// creation: acknowledged, so the provider shows it green.
		reply(http.StatusOK, "ignored %s event %q: only pushes trigger builds", provider, event)
		return
	}
	var p push
	if err := json.Unmarshal(body, &p); err != nil {
		reply(http.StatusBadRequest, "the push event is not JSON: %v", err)
		return
	}
	if !strings.HasPrefix(p.Ref, "refs/") {
		reply(http.StatusBadRequest, "the push event has no ref")
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
	logger.Info("push received", "function", key.String(), "provider", provider, "ref", p.Ref, "after", p.After)
	reply(http.StatusAccepted, "resolving %s for Function %s", p.Ref, key)
}

// secret is the Function's webhook secret.
func (h *Handler) secret(ctx context.Context, fn *lambdapodv1alpha1.Function) ([]byte, int, error) {
	ref := fn.Spec.Source.Git.SecretRef
	if ref == nil {
		return nil, http.StatusForbidden, fmt.Errorf("Function %s/%s accepts no webhooks: it has no spec.source.git.secretRef with a %s key", fn.Namespace, fn.Name, git.KeyWebhookSecret)
	}
	s := &corev1.Secret{}
	if err := h.Secrets.Get(ctx, client.ObjectKey{Namespace: fn.Namespace, Name: ref.Name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, http.StatusForbidden, fmt.Errorf("Function %s/%s accepts no webhooks: its Secret %s does not exist", fn.Namespace, fn.Name, ref.Name)
		}
		return nil, http.StatusServiceUnavailable, fmt.Errorf("reading Secret %s/%s: %w", fn.Namespace, ref.Name, err)
	}
	v := s.Data[git.KeyWebhookSecret]
	if len(v) == 0 {
		return nil, http.StatusForbidden, fmt.Errorf("Function %s/%s accepts no webhooks: its Secret %s has no %s key", fn.Namespace, fn.Name, ref.Name, git.KeyWebhookSecret)
	}
	return v, 0, nil
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

var (
	errUnsigned = errors.New("unsigned")
	errBadSig   = errors.New("bad signature")
)

// verify checks a delivery's signature or token: 401 when there is none,
// 403 when it is wrong.
func verify(provider string, h http.Header, body, secret []byte) (int, error) {
	switch provider {
	case GitLab:
		token := h.Get("X-Gitlab-Token")
		if token == "" {
			return http.StatusUnauthorized, fmt.Errorf("%w: no X-Gitlab-Token header; set the webhook's secret token", errUnsigned)
		}
		if subtle.ConstantTimeCompare([]byte(token), secret) != 1 {
			return http.StatusForbidden, fmt.Errorf("%w: X-Gitlab-Token does not match the webhook secret", errBadSig)
		}
		return 0, nil
	case Gitea:
		sig := h.Get("X-Gitea-Signature")
		if sig == "" {
			return http.StatusUnauthorized, fmt.Errorf("%w: no X-Gitea-Signature header; set the webhook's secret", errUnsigned)
		}
		return checkHMAC(sig, "X-Gitea-Signature", body, secret)
	default:
		sig := h.Get("X-Hub-Signature-256")
		if sig == "" {
			return http.StatusUnauthorized, fmt.Errorf("%w: no X-Hub-Signature-256 header; set the webhook's secret", errUnsigned)
		}
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		if !ok {
			return http.StatusForbidden, fmt.Errorf("%w: X-Hub-Signature-256 does not start with sha256=", errBadSig)
		}
		return checkHMAC(hexSig, "X-Hub-Signature-256", body, secret)
	}
}

func checkHMAC(hexSig, header string, body, secret []byte) (int, error) {
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return http.StatusForbidden, fmt.Errorf("%w: %s is not hex", errBadSig, header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return http.StatusForbidden, fmt.Errorf("%w: %s does not match the body signed with the webhook secret", errBadSig, header)
	}
	return 0, nil
}

// Sign is the hex HMAC-SHA256 of body, as GitHub (after "sha256=") and
// Gitea send it.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Server serves the Handler on addr as a manager Runnable; it runs on
// every replica, not only the leader, since it only enqueues.
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

// NeedLeaderElection is false: every replica takes webhooks.
func (s *Server) NeedLeaderElection() bool { return false }

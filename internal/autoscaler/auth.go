package autoscaler

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lambdapod/lambdapod/internal/stats"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// How reporters' tokens are checked. A report's token is looked up by its
// SHA-256 in a cache of decisions; a token not in it costs a TokenReview.
const (
	// authTTL is how long an admitted token is taken without a new
	// TokenReview: an activator reports every second, so a review a
	// minute a token. A deleted ServiceAccount or pod keeps reporting for
	// at most this long.
	authTTL = time.Minute
	// authNegativeTTL is how long a refused token stays refused without a
	// new review: a caller repeating a bad token costs a review every 10 s,
	// and a refusal that was the API server's passing state (a pod just
	// created) does not hold an activator off for long.
	authNegativeTTL = 10 * time.Second
	// authCacheEntries bounds the cache. When it is full, expired
	// decisions go first, then refusals (anyone can make one), and an
	// admission (only an activator's token makes one) last.
	authCacheEntries = 256
	// maxConcurrentReviews bounds the TokenReviews in flight, so that
	// callers sending ever new tokens cannot spend more than a few of the
	// manager's API requests at a time (its Deployment writes share them).
	maxConcurrentReviews = 4
	// reviewTimeout bounds a report's wait for a review, a free slot
	// included; then it is answered 503 and the activator tries again.
	reviewTimeout = 5 * time.Second
)

// TokenReviewer creates TokenReviews: client-go's
// AuthenticationV1().TokenReviews().
type TokenReviewer interface {
	Create(ctx context.Context, tr *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// ReporterAuth admits reports that carry the token of an allowed
// ServiceAccount for the audience stats.TokenAudience: the API server
// checks the token (TokenReview), and decisions are cached for a while, so
// that an activator reporting every second costs a review a minute.
type ReporterAuth struct {
	reviewer  TokenReviewer
	reporters []string
	now       func() time.Time
	slots     chan struct{}

	mu      sync.Mutex
	cache   map[[sha256.Size]byte]decision
	pending map[[sha256.Size]byte]*pendingReview
}

// decision is what a token gets: code 0 (admitted), 401 or 403, until
// when.
type decision struct {
	code  int
	msg   string
	until time.Time
}

// pendingReview lets reports with the same token wait for one review.
type pendingReview struct {
	done chan struct{}
	d    decision
	err  error
}

// ServiceAccountUser is the user name of a ServiceAccount's tokens.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// NewReporterAuth admits the tokens of the ServiceAccounts named by
// reporters, as user names (ServiceAccountUser), checked through reviewer.
func NewReporterAuth(reviewer TokenReviewer, reporters []string) (*ReporterAuth, error) {
	var users []string
	for _, r := range reporters {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		rest, ok := strings.CutPrefix(r, "system:serviceaccount:")
		ns, name, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return nil, fmt.Errorf("reporter %q: want a ServiceAccount as system:serviceaccount:<namespace>:<name>", r)
		}
		users = append(users, r)
	}
	if len(users) == 0 {
		return nil, errors.New("no reporters: name the activators' ServiceAccounts")
	}
	if reviewer == nil {
		return nil, errors.New("no TokenReview client")
	}
	return &ReporterAuth{reviewer: reviewer, reporters: users, now: time.Now,
		slots: make(chan struct{}, maxConcurrentReviews),
		cache: map[[sha256.Size]byte]decision{}, pending: map[[sha256.Size]byte]*pendingReview{}}, nil
}

// Reporters are the user names admitted.
func (ra *ReporterAuth) Reporters() []string { return slices.Clone(ra.reporters) }

var errReview = errors.New("the token could not be checked")

// check decides on a request from its Authorization header alone: 0 to
// go on, else the status and a short message to answer. A failed review
// (the API server's error, not a refusal) answers 503 with err set, and is
// not cached.
func (ra *ReporterAuth) check(r *http.Request) (code int, msg string, err error) {
	token, ok := bearerToken(r.Header.Get("Authorization"))
	switch {
	case !ok:
		return http.StatusUnauthorized, "no token: send the activator's ServiceAccount token as Authorization: Bearer", nil
	case len(token) > stats.MaxTokenBytes:
		return http.StatusUnauthorized, "invalid token", nil
	}
	d, err := ra.decide(r.Context(), token)
	if err != nil {
		return http.StatusServiceUnavailable, "the token could not be checked now: try again", err
	}
	return d.code, d.msg, nil
}

// bearerToken is the token of an "Authorization: Bearer <token>" header.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// decide is the cached decision on token, else a review's, which reports
// with the same token wait for rather than each making their own.
func (ra *ReporterAuth) decide(ctx context.Context, token string) (decision, error) {
	key := sha256.Sum256([]byte(token))
	ra.mu.Lock()
	if d, ok := ra.cache[key]; ok && ra.now().Before(d.until) {
		ra.mu.Unlock()
		return d, nil
	}
	if p, ok := ra.pending[key]; ok {
		ra.mu.Unlock()
		select {
		case <-p.done:
			return p.d, p.err
		case <-ctx.Done():
			return decision{}, ctx.Err()
		}
	}
	p := &pendingReview{done: make(chan struct{})}
	ra.pending[key] = p
	ra.mu.Unlock()

	p.d, p.err = ra.review(ctx, token)
	ra.mu.Lock()
	delete(ra.pending, key)
	if p.err == nil {
		ttl := authTTL
		if p.d.code != 0 {
			ttl = authNegativeTTL
		}
		p.d.until = ra.now().Add(ttl)
		ra.storeLocked(key, p.d)
	}
	ra.mu.Unlock()
	close(p.done)
	return p.d, p.err
}

// review asks the API server who token is, within reviewTimeout, and
// decides (decide sets until).
func (ra *ReporterAuth) review(ctx context.Context, token string) (decision, error) {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	select {
	case ra.slots <- struct{}{}:
		defer func() { <-ra.slots }()
	case <-ctx.Done():
		return decision{}, fmt.Errorf("%w: waiting for a TokenReview slot: %w", errReview, ctx.Err())
	}
	tr, err := ra.reviewer.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
		Token: token, Audiences: []string{stats.TokenAudience},
	}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("%w: TokenReview: %w", errReview, err)
	}
	st := tr.Status
	// An authenticator that ignores audiences returns none: the token may
	// then be one for the API server, and is not taken.
	if !st.Authenticated || !slices.Contains(st.Audiences, stats.TokenAudience) {
		return decision{code: http.StatusUnauthorized, msg: "invalid token"}, nil
	}
	if !slices.Contains(ra.reporters, st.User.Username) {
		return decision{code: http.StatusForbidden, msg: "not an activator: this identity may not report load"}, nil
	}
	return decision{}, nil
}

// storeLocked caches d, making room first if the cache is full.
func (ra *ReporterAuth) storeLocked(key [sha256.Size]byte, d decision) {
	if _, ok := ra.cache[key]; !ok && len(ra.cache) >= authCacheEntries {
		ra.evictLocked()
	}
	ra.cache[key] = d
}

// evictLocked drops the expired decisions, else a refusal, else the
// admission that expires first.
func (ra *ReporterAuth) evictLocked() {
	now := ra.now()
	for k, d := range ra.cache {
		if !now.Before(d.until) {
			delete(ra.cache, k)
		}
	}
	if len(ra.cache) < authCacheEntries {
		return
	}
	var first [sha256.Size]byte
	var firstUntil time.Time
	for k, d := range ra.cache {
		if d.code != 0 {
			delete(ra.cache, k)
			return
		}
		if firstUntil.IsZero() || d.until.Before(firstUntil) {
			first, firstUntil = k, d.until
		}
	}
	delete(ra.cache, first)
}

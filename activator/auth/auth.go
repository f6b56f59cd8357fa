// Package auth decides who may invoke a function: it authenticates the
// caller's credentials and asks Kubernetes RBAC whether that identity may
// invoke the Function, so that `kubectl auth can-i invoke
// functions.lambdapod.io/<name> -n <namespace> --as <user>` answers the
// same question.
//
// Credentials come in the Authorization header, two ways:
//   - "Bearer <token>": a token the API server accepts (a ServiceAccount
//     token from `kubectl create token`, an OIDC token), checked with a
//     TokenReview;
//   - AWS Signature Version 4, made with a lambdapod access key (a Secret
//     in the system namespace holding the key id, the secret key and the
//     Kubernetes user the key acts as; see keys.go), recomputed with the
//     AWS SDK's signer once the body is read (sigv4.go).
//
// The decision is a SubjectAccessReview for the verb invoke on
// functions.lambdapod.io. Identities of tokens and decisions are cached for
// a short, configurable time, bounded in entries, and the reviews in
// flight are bounded too, so that callers with ever new tokens cost the
// API server a few requests at a time, not one each.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// The RBAC question asked for every invocation.
const (
	Verb     = "invoke"
	Group    = "lambdapod.io"
	Resource = "functions"
)

// TokenReviewer creates TokenReviews (client-go's TokenReviews()).
type TokenReviewer interface {
	Create(ctx context.Context, tr *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// AccessReviewer creates SubjectAccessReviews (client-go's
// SubjectAccessReviews()).
type AccessReviewer interface {
	Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

// Identity is who a caller is, as Kubernetes RBAC knows them.
type Identity struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string][]string
	// AccessKey is the access key id the caller signed with (SigV4).
	AccessKey string
}

// Options configure an Authorizer.
type Options struct {
	// TTL is how long an identity of a token and a decision are taken
	// without asking the API server again (10s if zero): a revoked
	// RoleBinding or token still works for at most this long.
	TTL time.Duration
	// Entries bounds each cache (10,000 if zero).
	Entries int
	// MaxReviews bounds the reviews in flight (8 if zero); a caller that
	// finds none free within ReviewWait (2s if zero) gets 503.
	MaxReviews int
	ReviewWait time.Duration
	// Region is the region of the ARNs in messages.
	Region string
}

// Authorizer authenticates callers and authorises invocations.
type Authorizer struct {
	tokens    TokenReviewer
	access    AccessReviewer
	keys      Keys
	opts      Options
	slots     chan struct{}
	identity  *cache.LRUExpireCache // sha256(token) -> tokenResult
	decisions *cache.LRUExpireCache // decisionKey -> *Error (nil: allowed)
	flight    singleflight.Group
	now       func() time.Time
}

type tokenResult struct {
	id  Identity
	err *Error
}

// New returns an Authorizer. keys may be nil (no access keys: SigV4 is
// refused as an unknown key).
func New(tokens TokenReviewer, access AccessReviewer, keys Keys, o Options) *Authorizer {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.Entries <= 0 {
		o.Entries = 10000
	}
	if o.MaxReviews <= 0 {
		o.MaxReviews = 8
	}
	if o.ReviewWait <= 0 {
		o.ReviewWait = 2 * time.Second
	}
	if o.Region == "" {
		o.Region = invokeapi.DefaultRegion
	}
	return &Authorizer{tokens: tokens, access: access, keys: keys, opts: o,
		slots:    make(chan struct{}, o.MaxReviews),
		identity: cache.NewLRUExpireCache(o.Entries), decisions: cache.NewLRUExpireCache(o.Entries),
		now: time.Now}
}

// Error is a refusal: its Lambda error (status, type, message) is the
// Invoke API's answer; on HTTP routes the status and message are.
type Error = invokeapi.Error

// Missing is the refusal of a request without credentials.
func Missing() *Error { return missing() }

// The refusals, with Lambda's types and statuses.
func missing() *Error {
	return &Error{Status: http.StatusUnauthorized, Type: "MissingAuthenticationTokenException",
		Message: "Missing Authentication Token: send a bearer token (Authorization: Bearer <token>) or sign the request with a lambdapod access key (AWS Signature Version 4)"}
}

func unrecognized() *Error {
	return &Error{Status: http.StatusForbidden, Type: "UnrecognizedClientException",
		Message: "The security token included in the request is invalid."}
}

func invalidSignature(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Type: "InvalidSignatureException", Message: msg}
}

func unavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: "ServiceException",
		Message: "the caller's credentials could not be checked now; retry: " + err.Error()}
}

// Credentials are what a request presents.
type Credentials struct {
	token string
	sig   *signature
}

// Present reports whether the request carries credentials at all.
func (c Credentials) Present() bool { return c.token != "" || c.sig != nil }

// Signed reports whether they are a SigV4 signature, to be verified once
// the body is read (Verify).
func (c Credentials) Signed() bool { return c.sig != nil }

// Parse reads the request's credentials: an error for a malformed
// Authorization header, none (Present false) without one.
func Parse(r *http.Request) (Credentials, *Error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Credentials{}, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		token := strings.TrimSpace(rest)
		if token == "" || len(token) > maxTokenBytes {
			return Credentials{}, unrecognized()
		}
		return Credentials{token: token}, nil
	case scheme == sigV4Algorithm:
		sig, err := parseSignature(r, rest)
		if err != nil {
			return Credentials{}, err
		}
		return Credentials{sig: sig}, nil
	}
	return Credentials{}, unrecognized()
}

// maxTokenBytes bounds a bearer token (a ServiceAccount token is about
// 1 KiB, OIDC tokens a few).
const maxTokenBytes = 16 << 10

// Authenticate says who presented c: a token's identity from a (cached)
// TokenReview, a signature's from its access key. A signature still has
// to be verified with Verify once the body is read.
func (a *Authorizer) Authenticate(ctx context.Context, c Credentials) (Identity, *Error) {
	if c.sig != nil {
		k, ok := a.lookupKey(c.sig.keyID)
		if !ok {
			return Identity{}, unrecognized()
		}
		c.sig.key = k
		return k.Identity, nil
	}
	if c.token == "" {
		return Identity{}, missing()
	}
	key := sha256.Sum256([]byte(c.token))
	if v, ok := a.identity.Get(key); ok {
		r := v.(tokenResult)
		return r.id, r.err
	}
	v, err, _ := a.flight.Do("t"+string(key[:]), func() (any, error) {
		id, rerr, err := a.reviewToken(ctx, c.token)
		if err != nil {
			return nil, err
		}
		r := tokenResult{id: id, err: rerr}
		a.identity.Add(key, r, a.opts.TTL)
		return r, nil
	})
	if err != nil {
		return Identity{}, unavailable(err)
	}
	r := v.(tokenResult)
	return r.id, r.err
}

func (a *Authorizer) lookupKey(id string) (Key, bool) {
	if a.keys == nil {
		return Key{}, false
	}
	return a.keys.Lookup(id)
}

func (a *Authorizer) reviewToken(ctx context.Context, token string) (Identity, *Error, error) {
	release, err := a.slot(ctx)
	if err != nil {
		return Identity{}, nil, err
	}
	defer release()
	tr, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, nil, fmt.Errorf("TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		return Identity{}, unrecognized(), nil
	}
	u := tr.Status.User
	id := Identity{User: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		id.Extra = map[string][]string{}
		for k, v := range u.Extra {
			id.Extra[k] = v
		}
	}
	return id, nil, nil
}

// Authorize asks RBAC whether id may invoke the function (cached).
func (a *Authorizer) Authorize(ctx context.Context, id Identity, namespace, name string) *Error {
	key := decisionKey(id, namespace, name)
	if v, ok := a.decisions.Get(key); ok {
		e, _ := v.(*Error)
		return e
	}
	v, err, _ := a.flight.Do("d"+key, func() (any, error) {
		e, err := a.reviewAccess(ctx, id, namespace, name)
		if err != nil {
			return nil, err
		}
		a.decisions.Add(key, e, a.opts.TTL)
		return e, nil
	})
	if err != nil {
		return unavailable(err)
	}
	e, _ := v.(*Error)
	return e
}

func decisionKey(id Identity, namespace, name string) string {
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	return strings.Join([]string{id.User, id.UID, strings.Join(groups, ","), namespace, name}, "\x00")
}

func (a *Authorizer) reviewAccess(ctx context.Context, id Identity, namespace, name string) (*Error, error) {
	release, err := a.slot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	spec := authorizationv1.SubjectAccessReviewSpec{
		User: id.User, UID: id.UID, Groups: id.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: Verb, Group: Group, Resource: Resource, Name: name,
		},
	}
	if len(id.Extra) > 0 {
		spec.Extra = map[string]authorizationv1.ExtraValue{}
		for k, v := range id.Extra {
			spec.Extra[k] = v
		}
	}
	sar, err := a.access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("SubjectAccessReview: %w", err)
	}
	if sar.Status.Allowed && !sar.Status.Denied {
		return nil, nil
	}
	arn := invokeapi.FunctionARN(a.opts.Region, namespace+"."+name)
	return &Error{Status: http.StatusForbidden, Type: "AccessDeniedException", Message: fmt.Sprintf(
		"User: %s is not authorized to perform: lambda:InvokeFunction on resource: %s because no RBAC rule allows the verb %s on %s.%s %q in namespace %q",
		id.User, arn, Verb, Resource, Group, name, namespace)}, nil
}

var errNoSlot = errors.New("too many credential checks in flight")

// slot takes one of the reviews in flight, waiting at most ReviewWait.
func (a *Authorizer) slot(ctx context.Context) (func(), error) {
	t := time.NewTimer(a.opts.ReviewWait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-t.C:
		return nil, errNoSlot
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Verify checks a signed request's signature against its body; nil for
// credentials that are no signature.
func (a *Authorizer) Verify(r *http.Request, c Credentials, body []byte) *Error {
	if c.sig == nil {
		return nil
	}
	return c.sig.verify(r, body, a.now())
}

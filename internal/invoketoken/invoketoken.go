// Package invoketoken lets a function pod's runtime sidecar tell an
// invocation sent by an activator from one sent by anyone else who can
// reach the pod.
//
// The activators hold an Ed25519 private key (a Secret in the system
// namespace); each function pod is given the public key as a plain
// environment variable, which is no secret: it cannot make a token. An
// activator signs, per function, a token naming the function and an
// expiry, and sends it with every invocation; the sidecar checks the
// signature, the function and the expiry. A token taken from one function's
// traffic opens no other function, and stops working when it expires.
//
// Signatures, not a shared secret per function: a shared secret would
// need a Secret in every function namespace (the manager writing Secrets
// cluster-wide) and a volume or secret reference in every pod, and anyone
// who may read the pod's Secret could invoke it directly.
//
// The package is plain Go: the sidecar imports it, and imports no
// Kubernetes package.
package invoketoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// Lifetime is how long a token is valid after it is signed.
	Lifetime = 15 * time.Minute
	// refreshBefore: a signer makes a new token once the one it holds has
	// less than this left, so that a token in flight never expires on the
	// way (an invocation is at most 15 minutes, but the token is checked
	// when it arrives).
	refreshBefore = 5 * time.Minute
	// Skew is how far the clocks of an activator's node and a pod's node may
	// disagree.
	Skew = time.Minute
	// domain separates these signatures from any other use of the key.
	domain = "lambdapod-invoke-token-v1\x00"
)

// Errors of Verify; each says what is wrong with the token.
var (
	ErrMissing   = errors.New("no invoke token: this pod takes invocations only from lambdapod's activators")
	ErrMalformed = errors.New("malformed invoke token")
	ErrSignature = errors.New("invoke token not signed by this cluster's activators")
	ErrExpired   = errors.New("expired invoke token")
	ErrFunction  = errors.New("invoke token for another function")
)

// GenerateKey makes a new key pair.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// EncodePublicKey is the public key as the pods' environment carries it.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads what EncodePublicKey wrote.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("invalid invoke public key: want %d bytes in base64", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// Function names the function a token is for.
func Function(namespace, name string) string { return namespace + "/" + name }

// Signer makes the tokens of one activator, one per function, each reused
// until it is near its expiry: the hot path is a map lookup.
type Signer struct {
	key ed25519.PrivateKey
	now func() time.Time

	mu     sync.RWMutex
	tokens map[fnKey]signed
}

// fnKey keys the cache without making the "namespace/name" string on
// every request.
type fnKey struct{ namespace, name string }

type signed struct {
	token     string
	refreshAt time.Time
}

// maxTokens bounds a signer's cache; past it the cache starts over (a
// token costs one signature, about 20 µs, to make again).
const maxTokens = 10000

// NewSigner returns a signer with key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, now: time.Now, tokens: map[fnKey]signed{}}
}

// Token is the token for the function namespace/name.
func (s *Signer) Token(namespace, name string) string {
	k := fnKey{namespace, name}
	now := s.now()
	s.mu.RLock()
	t, ok := s.tokens[k]
	s.mu.RUnlock()
	if ok && now.Before(t.refreshAt) {
		return t.token
	}
	exp := now.Add(Lifetime)
	t = signed{token: sign(s.key, Function(namespace, name), exp), refreshAt: exp.Add(-refreshBefore)}
	s.mu.Lock()
	if len(s.tokens) >= maxTokens {
		clear(s.tokens)
	}
	s.tokens[k] = t
	s.mu.Unlock()
	return t.token
}

// sign makes base64url(function "\n" expiry) "." base64url(signature).
func sign(key ed25519.PrivateKey, fn string, exp time.Time) string {
	claims := fn + "\n" + strconv.FormatInt(exp.Unix(), 10)
	sig := ed25519.Sign(key, []byte(domain+claims))
	return base64.RawURLEncoding.EncodeToString([]byte(claims)) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Verifier checks the tokens sent to one function's pod. Tokens it has
// accepted are remembered until they expire, so that a signature is
// checked once per token, not per invocation.
type Verifier struct {
	key      ed25519.PublicKey
	function string
	now      func() time.Time

	mu       sync.Mutex
	accepted map[string]time.Time // token -> expiry (with Skew)
}

// maxAccepted bounds the remembered tokens: each activator sends one at a
// time, renewed every ten minutes.
const maxAccepted = 64

// NewVerifier returns a verifier for the function namespace/name.
func NewVerifier(key ed25519.PublicKey, namespace, name string) *Verifier {
	return &Verifier{key: key, function: Function(namespace, name), now: time.Now, accepted: map[string]time.Time{}}
}

// Verify accepts a token an activator signed for this function that has
// not expired.
func (v *Verifier) Verify(token string) error {
	if token == "" {
		return ErrMissing
	}
	now := v.now()
	v.mu.Lock()
	exp, ok := v.accepted[token]
	v.mu.Unlock()
	if ok {
		if now.After(exp) {
			return ErrExpired
		}
		return nil
	}
	exp, err := v.check(token, now)
	if err != nil {
		return err
	}
	v.mu.Lock()
	if len(v.accepted) >= maxAccepted {
		clear(v.accepted)
	}
	v.accepted[token] = exp
	v.mu.Unlock()
	return nil
}

func (v *Verifier) check(token string, now time.Time) (time.Time, error) {
	c, s, ok := strings.Cut(token, ".")
	if !ok {
		return time.Time{}, ErrMalformed
	}
	claims, err1 := base64.RawURLEncoding.DecodeString(c)
	sig, err2 := base64.RawURLEncoding.DecodeString(s)
	if err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize {
		return time.Time{}, ErrMalformed
	}
	if !ed25519.Verify(v.key, append([]byte(domain), claims...), sig) {
		return time.Time{}, ErrSignature
	}
	fn, expText, ok := strings.Cut(string(claims), "\n")
	if !ok {
		return time.Time{}, ErrMalformed
	}
	secs, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return time.Time{}, ErrMalformed
	}
	if fn != v.function {
		return time.Time{}, fmt.Errorf("%w: %s, not %s", ErrFunction, fn, v.function)
	}
	exp := time.Unix(secs, 0).Add(Skew)
	if now.After(exp) {
		return time.Time{}, ErrExpired
	}
	return exp, nil
}

// Package invokekey keeps the activators' invoke-token key in a Secret of
// the system namespace. The manager (which gives function pods the public
// key) and the activators (which sign with the private key) each ensure it
// exists when they start: whichever comes first creates it, the others
// read it, so neither depends on the other starting first.
//
// The manager may create Secrets in its own namespace (it reads Secrets
// already, for git webhooks; the activator's grants are in activator/rbac).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create,namespace=system
package invokekey

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
)

const (
	// Name is the Secret's name in the system namespace.
	Name = "lambdapod-invoke-key"
	// SeedKey holds the Ed25519 seed (32 bytes) in the Secret's data.
	SeedKey = "ed25519-seed"
)

// Ensure returns the key in the Secret, creating the Secret with a new key
// if there is none.
func Ensure(ctx context.Context, secrets corev1client.SecretInterface) (ed25519.PrivateKey, error) {
	for range 3 {
		s, err := secrets.Get(ctx, Name, metav1.GetOptions{})
		if err == nil {
			return parse(s)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the invoke key Secret %s: %w", Name, err)
		}
		key, err := invoketoken.GenerateKey()
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: map[string]string{contract.LabelManagedBy: contract.ManagedByValue}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{SeedKey: key.Seed()},
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			return key, nil
		case apierrors.IsAlreadyExists(err):
			continue // another replica made it first: read theirs
		default:
			return nil, fmt.Errorf("creating the invoke key Secret %s: %w", Name, err)
		}
	}
	return nil, fmt.Errorf("the invoke key Secret %s keeps appearing and disappearing", Name)
}

// Wait calls Ensure until it succeeds or timeout passes, telling onError
// of each failure: the API server may not answer at once when a component
// starts.
func Wait(ctx context.Context, secrets corev1client.SecretInterface, timeout time.Duration, onError func(error)) (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if key, last = Ensure(ctx, secrets); last != nil && onError != nil {
			onError(last)
		}
		return last == nil, nil
	})
	if err != nil && last != nil {
		return nil, fmt.Errorf("%w (last: %v)", err, last)
	}
	return key, err
}

func parse(s *corev1.Secret) (ed25519.PrivateKey, error) {
	seed := s.Data[SeedKey]
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("the invoke key Secret %s/%s has no %d-byte %q: delete it and restart the manager and the activators to make a new one",
			s.Namespace, s.Name, ed25519.SeedSize, SeedKey)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

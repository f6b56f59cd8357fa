package auth

import (
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,namespace=system

// An access key is a Secret in the system namespace with this label and
// these keys. The activator watches only such Secrets there.
const (
	KeyLabel       = "lambdapod.io/access-key"
	KeyIDField     = "accessKeyId"
	KeySecretField = "secretAccessKey"
	// KeyUserField is the Kubernetes user the key acts as, e.g.
	// system:serviceaccount:team-a:invoker or alice@example.com.
	KeyUserField = "username"
	// KeyGroupsField, optional, lists the user's groups, comma-separated.
	KeyGroupsField = "groups"
)

// Key is an access key and the identity it acts as.
type Key struct {
	ID, Secret string
	Identity   Identity
}

// Keys looks access keys up by id.
type Keys interface {
	Lookup(id string) (Key, bool)
}

// KeyStore holds the access keys, fed by a Secret informer.
type KeyStore struct {
	mu     sync.RWMutex
	byID   map[string]Key
	bySecr map[string]string // namespace/name -> id
}

// NewKeyStore returns an empty store.
func NewKeyStore() *KeyStore {
	return &KeyStore{byID: map[string]Key{}, bySecr: map[string]string{}}
}

// Lookup implements Keys.
func (s *KeyStore) Lookup(id string) (Key, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.byID[id]
	return k, ok
}

// Upsert records the key a Secret holds (a Secret without a key id, a
// secret key and a user holds none).
func (s *KeyStore) Upsert(sec *corev1.Secret) {
	ref := sec.Namespace + "/" + sec.Name
	k, ok := KeyFromSecret(sec)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, had := s.bySecr[ref]; had {
		delete(s.byID, old)
		delete(s.bySecr, ref)
	}
	if ok {
		s.byID[k.ID] = k
		s.bySecr[ref] = k.ID
	}
}

// Delete forgets a Secret's key.
func (s *KeyStore) Delete(namespace, name string) {
	ref := namespace + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.bySecr[ref]; ok {
		delete(s.byID, id)
		delete(s.bySecr, ref)
	}
}

// KeyFromSecret reads an access key Secret.
func KeyFromSecret(sec *corev1.Secret) (Key, bool) {
	id := strings.TrimSpace(string(sec.Data[KeyIDField]))
	secret := strings.TrimSpace(string(sec.Data[KeySecretField]))
	user := strings.TrimSpace(string(sec.Data[KeyUserField]))
	if id == "" || secret == "" || user == "" {
		return Key{}, false
	}
	var groups []string
	for _, g := range strings.Split(string(sec.Data[KeyGroupsField]), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	return Key{ID: id, Secret: secret, Identity: Identity{User: user, Groups: implicitGroups(user, groups), AccessKey: id}}, true
}

// implicitGroups adds the groups the API server's authenticators give
// every user of that kind, so that RBAC bindings to them hold for keys too.
func implicitGroups(user string, groups []string) []string {
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		if ns, _, ok := strings.Cut(rest, ":"); ok {
			groups = append(groups, "system:serviceaccounts", "system:serviceaccounts:"+ns)
		}
	}
	return append(groups, "system:authenticated")
}

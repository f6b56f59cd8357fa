package build

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// ConfigMapSource reads the build configuration from a ConfigMap each time
// a build is about to be made (rarely), so a change applies to the next
// build without a restart. A missing ConfigMap means the defaults.
type ConfigMapSource struct {
	Reader          client.Reader
	Namespace, Name string
}

// Load reads and parses the ConfigMap.
func (s ConfigMapSource) Load(ctx context.Context) (Config, error) {
	cm := &corev1.ConfigMap{}
	err := s.Reader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: s.Name}, cm)
	if apierrors.IsNotFound(err) {
		return DefaultConfig(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading the build ConfigMap %s/%s: %w", s.Namespace, s.Name, err)
	}
	if u := UnknownKeys(cm.Data); len(u) > 0 {
		log.FromContext(ctx).Info("the build ConfigMap has keys lambdapod does not read", "configmap", s.Namespace+"/"+s.Name, "keys", u, "known", Keys)
	}
	c, err := ConfigFromMap(cm.Data)
	if err != nil {
		return Config{}, fmt.Errorf("the build ConfigMap %s/%s: %w", s.Namespace, s.Name, err)
	}
	return c, nil
}

package invokekey_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lambdapod/lambdapod/internal/invokekey"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// The manager and the activators start in any order, several at once;
// they must all end up with the one key.
func TestEnsureAgreesAcrossReplicas(t *testing.T) {
	env := testenv.Start(t)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keys"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secrets := cs.CoreV1().Secrets("keys")

	const replicas = 8
	seeds := make([]string, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			key, err := invokekey.Ensure(ctx, secrets)
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			seeds[i] = string(key.Seed())
		})
	}
	wg.Wait()
	for i := 1; i < replicas; i++ {
		if seeds[i] != seeds[0] {
			t.Fatalf("replica %d holds another key than replica 0", i)
		}
	}
	s, err := secrets.Get(ctx, invokekey.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data[invokekey.SeedKey]) != seeds[0] {
		t.Errorf("the Secret holds another key than the replicas")
	}

	// A Secret someone broke is an error that says what to do.
	s.Data[invokekey.SeedKey] = []byte("short")
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = invokekey.Ensure(ctx, secrets)
	if err == nil || !strings.Contains(err.Error(), "delete it and restart") {
		t.Errorf("broken Secret: got %v, want an error saying how to mend it", err)
	}
}

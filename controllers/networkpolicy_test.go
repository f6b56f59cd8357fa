package controllers_test

import (
	"context"
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// A manager started with -network-policies=false removes the policies it
// made before, so that turning them off opens the pods again.
func TestNetworkPoliciesTurnedOff(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client

	mine := newFunction("was-confined", func(fn *lambdapodv1alpha1.Function) { fn.Spec.Source.Image = "example/hello:1" })
	create(t, c, mine)
	mine = getFunction(t, c, mine)
	yes := true
	made := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: mine.Name, Namespace: mine.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: lambdapodv1alpha1.GroupVersion.String(), Kind: "Function",
				Name: mine.Name, UID: mine.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	create(t, c, made)

	startManager(t, env, func(r *controllers.FunctionReconciler) { r.Config.Ingress = nil })
	eventually(t, func() error {
		err := c.Get(ctx, key(made), &networkingv1.NetworkPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("the Function's NetworkPolicy is still there (err %v)", err)
	})
}

package functions

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lambdapod/lambdapod/activator/handler"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
)

// What the activator reads in a Function's status: its pods cannot run
// when Ready says so about the current generation, in the manager's words.
func TestCannotRun(t *testing.T) {
	const says = `Deployment f cannot create pods (FailedCreate): pods "f-1" is forbidden: violates PodSecurity "restricted:latest"`
	fn := func(generation int64, status metav1.ConditionStatus, reason string, observed int64) *lambdapodv1alpha1.Function {
		return &lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "f", Generation: generation},
			Status: lambdapodv1alpha1.FunctionStatus{Conditions: []metav1.Condition{{
				Type: lambdapodv1alpha1.ConditionReady, Status: status, Reason: reason, Message: says, ObservedGeneration: observed,
			}}},
		}
	}
	for _, tc := range []struct {
		name string
		fn   *lambdapodv1alpha1.Function
		want bool
	}{
		{"the manager's reason", fn(2, metav1.ConditionFalse, controllers.ReasonPodsCannotRun, 2), true},
		{"a rollout past its deadline", fn(2, metav1.ConditionFalse, "ProgressDeadlineExceeded", 2), true},
		{"a rollout in progress", fn(2, metav1.ConditionFalse, "Progressing", 2), false},
		{"ready", fn(2, metav1.ConditionTrue, "Ready", 2), false},
		{"about an earlier generation: the spec may have fixed it", fn(3, metav1.ConditionFalse, controllers.ReasonPodsCannotRun, 2), false},
		{"no status yet", &lambdapodv1alpha1.Function{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CannotRun(tc.fn)
			var cannot *handler.PodsCannotRun
			switch {
			case !tc.want && err != nil:
				t.Errorf("CannotRun = %v, want nil", err)
			case tc.want && (!errors.As(err, &cannot) || cannot.Message != says):
				t.Errorf("CannotRun = %v, want the condition's message", err)
			}
		})
	}
}

package conformance

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"

	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/invoketoken"
)

// A pod given the activators' public key (as the manager renders every
// pod) takes invocations only with a token the activators signed for this
// function. Anyone else who reaches the pod, with the AWS SDK or plain
// HTTP, is refused before the function runs; the kubelet's probes and
// Prometheus need no token.
func TestOnlyTheActivatorsInvoke(t *testing.T) {
	key, err := invoketoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := invoketoken.GenerateKey()
	s := startSidecar(t, sidecarOpts{bootstrap: goBootstrap(), env: []string{
		contract.EnvInvokeKey + "=" + invoketoken.EncodePublicKey(key.Public().(ed25519.PublicKey)),
		contract.EnvFunctionNamespace + "=team-a",
	}})
	activator := invoketoken.NewSigner(key)

	// A bystander with the AWS SDK.
	_, err = s.client().Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("function"), Payload: []byte(`{"action":"echo"}`)})
	var denied smithy.APIError
	if !errors.As(err, &denied) || denied.ErrorCode() != "AccessDeniedException" {
		t.Errorf("SDK invoke without a token: got %v, want AccessDeniedException", err)
	}

	refused := []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"a token for another function", activator.Token("team-a", "other")},
		{"a token for the same name in another namespace", activator.Token("team-b", "function")},
		{"a token signed with another key", invoketoken.NewSigner(other).Token("team-a", "function")},
		{"garbage", "abc.def"},
	}
	for _, c := range refused {
		hdr := map[string]string{}
		if c.token != "" {
			hdr[contract.HeaderInvokeToken] = c.token
		}
		resp, body := s.post(invokePath, `{"action":"echo"}`, hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403; body %s", c.name, resp.StatusCode, body)
		}
		assertHeader(t, resp.Header, "X-Amzn-Errortype", "AccessDeniedException")
		// Marked not-run, so an activator whose key is out of date
		// knows the function did not see it.
		assertHeader(t, resp.Header, contract.HeaderNotRun, contract.NotRunRefused)
	}
	if got := s.metric(`lambdapod_sidecar_invocations_total{outcome="success"}`); got != "0" {
		t.Errorf("the function ran %s times for callers without a valid token, want 0", got)
	}
	if got := s.metric(`lambdapod_sidecar_invocations_rejected_total{reason="refused"}`); got != "6" {
		t.Errorf("refused count %s, want 6", got)
	}

	// The activator's token for this function.
	resp, body := s.post(invokePath, `{"action":"echo","n":1}`, map[string]string{contract.HeaderInvokeToken: activator.Token("team-a", "function")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with the activator's token: status %d, body %s", resp.StatusCode, body)
	}
	assertBody(t, body, `{"action":"echo","n":1}`)
	if got := s.metric(`lambdapod_sidecar_invocations_total{outcome="success"}`); got != "1" {
		t.Errorf("success count %s, want 1", got)
	}

	for _, path := range []string{"/readyz", "/healthz", "/metrics"} {
		if resp, _ := s.get(path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, resp.StatusCode)
		}
	}
}

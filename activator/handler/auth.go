package handler

import (
	"net/http"

	"github.com/lambdapod/lambdapod/activator/auth"
)

// SetAuthorizer makes the chain check, for every Function that is not
// public (spec.authType None), that the caller's credentials are of an
// identity RBAC lets invoke it, before the body is read (a signature is
// verified once it is). Without an authorizer every function is public.
func (ch *Chain) SetAuthorizer(a *auth.Authorizer) { ch.auth = a }

// authenticate is the chain's door: it answers 401 or 403 (the Invoke
// API: Lambda's MissingAuthenticationTokenException,
// UnrecognizedClientException, AccessDeniedException) before the function
// is woken or the body read.
func (ch *Chain) authenticate(r *http.Request, c *call) *Failure {
	if ch.auth == nil || c.fn.Public {
		return nil
	}
	creds, err := auth.Parse(r)
	if err == nil && !creds.Present() {
		err = auth.Missing()
	}
	if err == nil {
		var id auth.Identity
		if id, err = ch.auth.Authenticate(r.Context(), creds); err == nil {
			err = ch.auth.Authorize(r.Context(), id, c.key.Namespace, c.key.Name)
		}
	}
	if err != nil {
		return authFailure(err)
	}
	if creds.Signed() {
		c.verify = func(body []byte) *Failure {
			if err := ch.auth.Verify(r, creds, body); err != nil {
				return authFailure(err)
			}
			return nil
		}
	}
	if !c.invoke {
		// The credentials were for the activator: the function's event
		// does not carry them (a bearer token is worth something to the
		// API server).
		r.Header.Del("Authorization")
	}
	return nil
}

func authFailure(e *auth.Error) *Failure {
	k := Forbidden
	switch e.Status {
	case http.StatusUnauthorized:
		k = Unauthenticated
	case http.StatusServiceUnavailable:
		return &Failure{Kind: Overloaded, Message: e.Message}
	}
	return &Failure{Kind: k, Message: e.Message, Lambda: e}
}

package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	sigV4Service   = "lambda"
	amzDateFormat  = "20060102T150405Z"
	// maxSkew is how far a signature's time may be from the activator's
	// clock, as AWS allows.
	maxSkew = 5 * time.Minute
)

// signature is a parsed AWS Signature Version 4 Authorization header.
type signature struct {
	keyID, date, region, service string
	signedHeaders                string
	sig                          string
	at                           time.Time
	key                          Key
}

func parseSignature(r *http.Request, params string) (*signature, *Error) {
	s := &signature{}
	for _, p := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			continue
		}
		switch k {
		case "Credential":
			parts := strings.Split(v, "/")
			if len(parts) != 5 || parts[4] != "aws4_request" {
				return nil, invalidSignature("Authorization header's Credential is malformed: want <access key id>/<yyyymmdd>/<region>/lambda/aws4_request")
			}
			s.keyID, s.date, s.region, s.service = parts[0], parts[1], parts[2], parts[3]
		case "SignedHeaders":
			s.signedHeaders = v
		case "Signature":
			s.sig = v
		}
	}
	if s.keyID == "" || s.signedHeaders == "" || s.sig == "" {
		return nil, invalidSignature("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.")
	}
	if s.service != sigV4Service {
		return nil, invalidSignature("Credential should be scoped to correct service: 'lambda'.")
	}
	if r.Header.Get("X-Amz-Security-Token") != "" {
		// lambdapod issues no session credentials.
		return nil, unrecognized()
	}
	at, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, invalidSignature("the request has no valid X-Amz-Date header (yyyymmddThhmmssZ), which Signature Version 4 needs")
	}
	if at.Format("20060102") != s.date {
		return nil, invalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + s.date + "' != '" + at.Format("20060102") + "'")
	}
	s.at = at
	return s, nil
}

// verify recomputes the signature of the request as its client made it,
// with the AWS SDK's signer and the key's secret, and compares.
func (s *signature) verify(r *http.Request, body []byte, now time.Time) *Error {
	if d := now.Sub(s.at); d > maxSkew || d < -maxSkew {
		return invalidSignature("Signature expired: " + s.at.Format(amzDateFormat) + " is now earlier than " +
			now.Add(-maxSkew).UTC().Format(amzDateFormat) + " (" + now.UTC().Format(amzDateFormat) + " - 5 min.)")
	}
	// The request as the client signed it: its method, URL, and only the
	// headers it signed (host and content-length are the signer's own).
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	req := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: http.Header{}}
	for _, h := range strings.Split(s.signedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			req.ContentLength = int64(len(body))
		default:
			if v, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
				req.Header[http.CanonicalHeaderKey(h)] = v
			}
		}
	}
	sum := sha256.Sum256(body)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: s.key.ID, SecretAccessKey: s.key.Secret}
	if err := signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), s.service, s.region, s.at); err != nil {
		return invalidSignature("the signature could not be computed: " + err.Error())
	}
	want := req.Header.Get("Authorization")
	i := strings.Index(want, "Signature=")
	if i < 0 || subtle.ConstantTimeCompare([]byte(want[i+len("Signature="):]), []byte(s.sig)) != 1 {
		return invalidSignature("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

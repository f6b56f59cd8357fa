// Package event turns HTTP requests into Lambda events and Lambda results
// back into HTTP responses, in the shapes of API Gateway's HTTP API (payload
// 2.0, also Lambda function URLs), API Gateway's REST API (payload 1.0), an
// Application Load Balancer target, or the raw body, using the types of
// github.com/aws/aws-lambda-go/events.
package event

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Format is the shape of an event; the values are those of
// spec.http.eventFormat.
type Format string

// The formats of spec.http.eventFormat.
const (
	HTTPAPIv2 Format = "HTTPAPIv2"
	RESTv1    Format = "RESTv1"
	ALB       Format = "ALB"
	Raw       Format = "Raw"
	// ALBMultiValue is ALB with the target group's
	// lambda.multi_value_headers.enabled (spec.http.multiValueHeaders):
	// every value of a repeated header or query parameter, in
	// multiValueHeaders and multiValueQueryStringParameters.
	ALBMultiValue Format = "ALBMultiValue"
)

// Request is what the event is made from.
type Request struct {
	HTTP *http.Request
	// Body is the request's whole body.
	Body []byte
	// Path is the escaped path the function sees (the routing prefix
	// stripped) and Prefix what was stripped.
	Path, Prefix string
	// RequestID is the id of this request (requestContext.requestId).
	RequestID string
	// Namespace and Function name the function, for ARNs and ids.
	Namespace, Function string
	// Time is when the request arrived.
	Time time.Time
	// Trusted reports whether an address is a proxy in front of the
	// activator (an Ingress) whose X-Forwarded-* headers are believed; nil
	// trusts none, and sourceIp is the peer's address.
	Trusted func(netip.Addr) bool
}

// Build returns the event for r in format f.
func Build(f Format, r *Request) ([]byte, error) {
	switch f {
	case Raw:
		return r.Body, nil
	case RESTv1:
		return json.Marshal(buildV1(r))
	case ALB:
		return json.Marshal(buildALB(r, false))
	case ALBMultiValue:
		return json.Marshal(buildALB(r, true))
	default:
		return json.Marshal(buildV2(r))
	}
}

func buildV2(r *Request) *events.APIGatewayV2HTTPRequest {
	hr := r.HTTP
	headers := make(map[string]string, len(hr.Header)+1)
	var cookies []string
	for k, vs := range hr.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		}
		headers[lk] = strings.Join(vs, ",")
	}
	if _, ok := headers["host"]; !ok && hr.Host != "" {
		headers["host"] = hr.Host
	}
	forwarded(r, func(k, v string) { headers[k] = v }, func(k string) string { return headers[k] })
	if hr.ContentLength > 0 {
		if _, ok := headers["content-length"]; !ok {
			headers["content-length"] = strconv.FormatInt(hr.ContentLength, 10)
		}
	}
	var qsp map[string]string
	if q := hr.URL.Query(); len(q) > 0 {
		qsp = make(map[string]string, len(q))
		for k, vs := range q {
			qsp[k] = strings.Join(vs, ",")
		}
	}
	body, b64 := encodeBody(hr.Header.Get("Content-Type"), r.Body)
	domain := hostOnly(hr.Host)
	ev := &events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              "$default",
		RawPath:               r.Path,
		RawQueryString:        hr.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: qsp,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    "anonymous",
			Stage:        "$default",
			RequestID:    r.RequestID,
			APIID:        r.Namespace,
			DomainName:   domain,
			DomainPrefix: domainPrefix(domain),
			Time:         r.Time.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    r.Time.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    hr.Method,
				Path:      unescape(r.Path),
				Protocol:  hr.Proto,
				SourceIP:  sourceIP(r),
				UserAgent: hr.UserAgent(),
			},
		},
		Body:            body,
		IsBase64Encoded: b64,
	}
	return ev
}

func buildV1(r *Request) *events.APIGatewayProxyRequest {
	hr := r.HTTP
	headers := make(map[string]string, len(hr.Header)+1)
	mvh := make(map[string][]string, len(hr.Header)+1)
	for k, vs := range hr.Header {
		if len(vs) == 0 {
			continue
		}
		headers[k] = vs[len(vs)-1]
		mvh[k] = vs
	}
	if _, ok := headers["Host"]; !ok && hr.Host != "" {
		headers["Host"] = hr.Host
		mvh["Host"] = []string{hr.Host}
	}
	forwarded(r, func(k, v string) {
		k = http.CanonicalHeaderKey(k)
		headers[k] = v
		mvh[k] = []string{v}
	}, func(k string) string { return headers[http.CanonicalHeaderKey(k)] })
	var qsp map[string]string
	var mvq map[string][]string
	if q := hr.URL.Query(); len(q) > 0 {
		qsp = make(map[string]string, len(q))
		mvq = make(map[string][]string, len(q))
		for k, vs := range q {
			qsp[k] = vs[len(vs)-1]
			mvq[k] = vs
		}
	}
	body, b64 := encodeBody(hr.Header.Get("Content-Type"), r.Body)
	domain := hostOnly(hr.Host)
	path := unescape(r.Path)
	return &events.APIGatewayProxyRequest{
		Resource:                        "/{proxy+}",
		Path:                            path,
		HTTPMethod:                      hr.Method,
		Headers:                         headers,
		MultiValueHeaders:               mvh,
		QueryStringParameters:           qsp,
		MultiValueQueryStringParameters: mvq,
		PathParameters:                  map[string]string{"proxy": strings.TrimPrefix(path, "/")},
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:    "anonymous",
			ResourceID:   "proxy",
			Stage:        "$default",
			DomainName:   domain,
			DomainPrefix: domainPrefix(domain),
			RequestID:    r.RequestID,
			Protocol:     hr.Proto,
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  sourceIP(r),
				UserAgent: hr.UserAgent(),
			},
			ResourcePath:     "/{proxy+}",
			Path:             path,
			HTTPMethod:       hr.Method,
			RequestTime:      r.Time.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			RequestTimeEpoch: r.Time.UnixMilli(),
			APIID:            r.Namespace,
		},
		Body:            body,
		IsBase64Encoded: b64,
	}
}

func buildALB(r *Request, multi bool) *events.ALBTargetGroupRequest {
	hr := r.HTTP
	// Header names lowercased; without multi-value mode the last value of
	// a repeated header or query parameter wins.
	mvh := make(map[string][]string, len(hr.Header)+4)
	for k, vs := range hr.Header {
		if len(vs) > 0 {
			lk := strings.ToLower(k)
			mvh[lk] = append(mvh[lk], vs...)
		}
	}
	if _, ok := mvh["host"]; !ok && hr.Host != "" {
		mvh["host"] = []string{hr.Host}
	}
	forwarded(r, func(k, v string) { mvh[k] = []string{v} }, func(k string) string {
		if vs := mvh[k]; len(vs) > 0 {
			return strings.Join(vs, ", ")
		}
		return ""
	})
	body, b64 := encodeBody(hr.Header.Get("Content-Type"), r.Body)
	ev := &events.ALBTargetGroupRequest{
		HTTPMethod: hr.Method,
		Path:       unescape(r.Path),
		RequestContext: events.ALBTargetGroupRequestContext{ELB: events.ELBContext{
			TargetGroupArn: "arn:aws:elasticloadbalancing:local:" + invokeapi.AccountID + ":targetgroup/" + r.Namespace + "-" + r.Function + "/lambdapod",
		}},
		IsBase64Encoded: b64,
		Body:            body,
	}
	mvq := rawQuery(hr.URL.RawQuery)
	if multi {
		ev.MultiValueHeaders, ev.MultiValueQueryStringParameters = mvh, mvq
		return ev
	}
	ev.Headers = make(map[string]string, len(mvh))
	for k, vs := range mvh {
		ev.Headers[k] = vs[len(vs)-1]
	}
	ev.QueryStringParameters = make(map[string]string, len(mvq))
	for k, vs := range mvq {
		ev.QueryStringParameters[k] = vs[len(vs)-1]
	}
	return ev
}

// rawQuery splits a query string into its parameters exactly as the
// client sent them: "If the query parameters are URL-encoded, the load
// balancer does not decode them" (ALB), so a %20 stays %20 and a + stays
// +.
func rawQuery(q string) map[string][]string {
	out := map[string][]string{}
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out[k] = append(out[k], v)
	}
	return out
}

// forwarded sets x-forwarded-for (the client appended, as a proxy does),
// x-forwarded-proto and x-forwarded-port, as API Gateway, function URLs and
// ALB put them in events. get reads the header as set so far.
func forwarded(r *Request, set func(k, v string), get func(k string) string) {
	hr := r.HTTP
	ip := remoteIP(hr)
	// What a client says of its own protocol and port is believed only
	// from a trusted proxy.
	if !r.trusted(ip) {
		set("x-forwarded-proto", "")
		set("x-forwarded-port", "")
	}
	if xff := get("x-forwarded-for"); xff != "" {
		set("x-forwarded-for", xff+", "+ip)
	} else {
		set("x-forwarded-for", ip)
	}
	proto := "http"
	if hr.TLS != nil {
		proto = "https"
	}
	if get("x-forwarded-proto") == "" {
		set("x-forwarded-proto", proto)
	}
	if get("x-forwarded-port") == "" {
		_, port, err := net.SplitHostPort(hr.Host)
		if err != nil || port == "" {
			port = "80"
			if hr.TLS != nil {
				port = "443"
			}
		}
		set("x-forwarded-port", port)
	}
}

// encodeBody returns the body as event text: as is for textual content,
// base64 otherwise (as function URLs and API Gateway do for binary media).
func encodeBody(contentType string, b []byte) (string, bool) {
	if len(b) == 0 {
		return "", false
	}
	if isText(contentType) && utf8.Valid(b) {
		return string(b), false
	}
	return base64.StdEncoding.EncodeToString(b), true
}

// isText reports whether a content type is text: text/*, JSON, XML, form
// data, JavaScript, or unset.
func isText(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		strings.HasSuffix(mt, "/json"), strings.HasSuffix(mt, "+json"),
		strings.HasSuffix(mt, "/xml"), strings.HasSuffix(mt, "+xml"),
		mt == "application/x-www-form-urlencoded",
		mt == "application/javascript", mt == "application/graphql":
		return true
	}
	return false
}

// sourceIP is the client's address: the peer's, unless the peer is a
// trusted proxy; then the last address in X-Forwarded-For that is not a
// trusted proxy (the ones before it are the client's own claims, which
// anyone can forge).
func sourceIP(r *Request) string {
	peer := remoteIP(r.HTTP)
	if !r.trusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.HTTP.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !r.trusted(hop) {
			return hop
		}
	}
	return peer
}

func (r *Request) trusted(ip string) bool {
	if r.Trusted == nil {
		return false
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && r.Trusted(a.Unmap())
}

func remoteIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func domainPrefix(d string) string {
	p, _, _ := strings.Cut(d, ".")
	return p
}

func unescape(p string) string {
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}

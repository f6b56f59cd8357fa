// Package route maps a request to the function it is for.
//
// Three forms, tried in this order:
//
//  1. The Lambda Invoke API: POST /2015-03-31/functions/{FunctionName}/invocations.
//     FunctionName (path-unescaped first) is one of
//     name, name:qualifier, 123456789012:function:name[:qualifier] or
//     arn:aws:lambda:region:123456789012:function:name[:qualifier],
//     where name is either "function" (in the default namespace) or
//     "namespace.function". Function names and namespaces are DNS labels
//     without dots, so the split is unambiguous, and "ns.fn" fits the
//     SDK's FunctionName pattern [a-zA-Z0-9-_.]+. A "namespace/function"
//     name (escaped as %2F by the SDK) is accepted as well. Region and
//     account are ignored. The only qualifier is $LATEST (Qualifier query
//     parameter or suffix); any other qualifier names an unknown version.
//  2. Host routing, when a domain is configured: {function}.{namespace}.{domain}.
//     The whole path goes to the function.
//  3. Path routing: /{namespace}/{function}/rest. The prefix is stripped, as
//     API Gateway strips a stage: /ns/fn/hello?x=1 reaches the function as
//     rawPath /hello with rawQueryString x=1; /ns/fn and /ns/fn/ reach it as /.
package route

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Kind says which form a request used.
type Kind int

const (
	// HTTP is a plain HTTP request that becomes an event.
	HTTP Kind = iota
	// Invoke is a Lambda Invoke API call whose body is the event.
	Invoke
)

// Target is where a request goes.
type Target struct {
	Kind      Kind
	Namespace string
	Name      string
	// Qualifier is the version or alias asked for on the Invoke API, if any.
	Qualifier string
	// FunctionName is the FunctionName of an Invoke call as the caller
	// wrote it (unescaped), for error messages.
	FunctionName string
	// Path is the escaped path the function sees (HTTP only).
	Path string
	// Prefix is the escaped path prefix that routing consumed (HTTP only).
	Prefix string
}

// Config configures routing.
type Config struct {
	// DefaultNamespace is where plain Invoke API function names live.
	DefaultNamespace string
	// Domain enables {function}.{namespace}.{Domain} host routing.
	Domain string
}

// ErrNoRoute means the request names no function.
var ErrNoRoute = errors.New("no function in the request: use /{namespace}/{function}/..., {function}.{namespace}.{domain} or POST /2015-03-31/functions/{name}/invocations")

// ErrBadFunctionName is returned for an Invoke API FunctionName that cannot
// name a function.
type ErrBadFunctionName struct{ Name, Why string }

func (e *ErrBadFunctionName) Error() string {
	return fmt.Sprintf("invalid FunctionName %q: %s", e.Name, e.Why)
}

const invokePrefix = "/2015-03-31/functions/"

// IsInvokePath reports whether the path is under the Invoke API.
func IsInvokePath(p string) bool { return strings.HasPrefix(p, invokePrefix) }

// Parse finds the target of r.
func Parse(r *http.Request, c Config) (Target, error) {
	ep := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(ep, invokePrefix); ok {
		name, ok := strings.CutSuffix(rest, "/invocations")
		if ok && !strings.Contains(name, "/") {
			fn, err := url.PathUnescape(name)
			if err != nil {
				return Target{}, &ErrBadFunctionName{Name: name, Why: "bad percent-encoding"}
			}
			t, err := ParseFunctionName(fn, c.DefaultNamespace)
			if err != nil {
				return Target{}, err
			}
			if q := r.URL.Query().Get("Qualifier"); q != "" {
				t.Qualifier = q
			}
			return t, nil
		}
	}
	if c.Domain != "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		if sub, ok := strings.CutSuffix(host, "."+strings.ToLower(c.Domain)); ok {
			fn, ns, ok := strings.Cut(sub, ".")
			if ok && isLabel(fn) && isLabel(ns) {
				p := ep
				if p == "" {
					p = "/"
				}
				return Target{Kind: HTTP, Namespace: ns, Name: fn, Path: p}, nil
			}
		}
	}
	rest := strings.TrimPrefix(ep, "/")
	ns, rest, _ := strings.Cut(rest, "/")
	fn, rest, _ := strings.Cut(rest, "/")
	if !isLabel(ns) || !isLabel(fn) {
		return Target{}, ErrNoRoute
	}
	p := "/" + rest
	prefix := "/" + ns + "/" + fn
	return Target{Kind: HTTP, Namespace: ns, Name: fn, Path: p, Prefix: prefix}, nil
}

// ParseFunctionName maps an Invoke API FunctionName to a namespace and name.
func ParseFunctionName(fn, defaultNamespace string) (Target, error) {
	t := Target{Kind: Invoke, FunctionName: fn}
	s := fn
	if strings.HasPrefix(s, "arn:") {
		// arn:partition:lambda:region:account:function:name[:qualifier]
		parts := strings.Split(s, ":")
		if len(parts) < 7 || len(parts) > 8 || parts[2] != "lambda" || parts[5] != "function" {
			return t, &ErrBadFunctionName{Name: fn, Why: "an ARN must look like arn:aws:lambda:region:account:function:name[:qualifier]"}
		}
		s = parts[6]
		if len(parts) == 8 {
			t.Qualifier = parts[7]
		}
	} else {
		parts := strings.Split(s, ":")
		switch {
		case len(parts) == 1:
		case len(parts) == 2:
			s, t.Qualifier = parts[0], parts[1]
		case (len(parts) == 3 || len(parts) == 4) && parts[1] == "function":
			// account:function:name[:qualifier]
			s = parts[2]
			if len(parts) == 4 {
				t.Qualifier = parts[3]
			}
		default:
			return t, &ErrBadFunctionName{Name: fn, Why: "expected name, name:qualifier, account:function:name or a function ARN"}
		}
	}
	ns, name := defaultNamespace, s
	if a, b, ok := strings.Cut(s, "."); ok {
		ns, name = a, b
	} else if a, b, ok := strings.Cut(s, "/"); ok {
		ns, name = a, b
	}
	if !isLabel(ns) || !isLabel(name) {
		return t, &ErrBadFunctionName{Name: fn, Why: "the name must be function or namespace.function, each a DNS label (lowercase letters, digits and '-')"}
	}
	if t.Qualifier == "" && strings.HasSuffix(fn, ":") {
		return t, &ErrBadFunctionName{Name: fn, Why: "empty qualifier"}
	}
	t.Namespace, t.Name = ns, name
	return t, nil
}

// isLabel reports whether s is a DNS-1123 label.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// Package route maps a request to the function it is for.
//
// Three forms, tried in this order:
//
//  1. The Lambda Invoke API: POST /2015-03-31/functions/{FunctionName}/invocations,
//     and InvokeWithResponseStream,
//     POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations.
//     FunctionName is parsed as Lambda does (package invokeapi); its name
//     part is either "function" (in the default namespace) or
//     "namespace.function". Function names and namespaces are DNS labels
//     without dots, so the split is unambiguous, and "ns.fn" fits the
//     SDK's FunctionName pattern. A "namespace/function" name (escaped as
//     %2F by the SDK) is accepted as well. Region and account are ignored.
//  2. Host routing, when a domain is configured: {function}.{namespace}.{domain}.
//     The whole path goes to the function.
//  3. Path routing: /{namespace}/{function}/rest. The prefix is stripped, as
//     API Gateway strips a stage: /ns/fn/hello?x=1 reaches the function as
//     rawPath /hello with rawQueryString x=1; /ns/fn and /ns/fn/ reach it as /.
package route

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
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
	// Function is the Invoke call's FunctionName (Invoke only).
	Function invokeapi.FunctionName
	// Stream: the call is InvokeWithResponseStream (Invoke only).
	Stream bool
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
	// Region is the region of ARNs in messages.
	Region string
}

// slashToDot turns an escaped "/" of an Invoke FunctionName into ".".
var slashToDot = strings.NewReplacer("%2F", ".", "%2f", ".")

// ErrNoRoute means the request names no function.
var ErrNoRoute = errors.New("no function in the request: use /{namespace}/{function}/..., {function}.{namespace}.{domain} or POST /2015-03-31/functions/{name}/invocations")

// Parse finds the target of r. An Invoke API request that cannot reach a
// function gets Lambda's answer as an *invokeapi.Error: 400 for a
// malformed FunctionName, 404 for an unknown operation or for a name that
// no Function can have. Any other request that names no function gets
// ErrNoRoute.
func Parse(r *http.Request, c Config) (Target, error) {
	ep := r.URL.EscapedPath()
	if stream := invokeapi.IsStreamPath(ep); stream || invokeapi.IsInvokePath(ep) {
		split := invokeapi.SplitPath
		if stream {
			split = invokeapi.SplitStreamPath
		}
		escaped, ok := split(ep)
		if !ok || r.Method != http.MethodPost {
			return Target{}, invokeapi.UnknownOperation(r.Method, r.URL.Path)
		}
		// namespace/function, which no Lambda name can be, stands for
		// namespace.function. (Replace copies even when nothing matches.)
		if strings.Contains(escaped, "%") {
			escaped = slashToDot.Replace(escaped)
		}
		// Most calls have no query: no map to make for them.
		var query url.Values
		if r.URL.RawQuery != "" {
			query = r.URL.Query()
		}
		fn, err := invokeapi.ParseFunctionName(escaped, query)
		if err != nil {
			return Target{}, err
		}
		ns, name := c.DefaultNamespace, fn.Name
		if a, b, ok := strings.Cut(fn.Name, "."); ok {
			ns, name = a, b
		}
		if !isLabel(ns) || !isLabel(name) {
			return Target{}, invokeapi.NotFound(fn.ARN(c.Region))
		}
		return Target{Kind: Invoke, Namespace: ns, Name: name, Function: fn, Stream: stream}, nil
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
	if invokeapi.IsAPIPath(ep) {
		// Another operation of Lambda's API (ListFunctions, GetFunction
		// ...): the SDKs understand this answer. The price: path routing
		// never reaches a namespace named 2015-03-31 (host routing does).
		return Target{}, invokeapi.UnknownOperation(r.Method, r.URL.Path)
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

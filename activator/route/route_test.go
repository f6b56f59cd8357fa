package route

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

func TestParse(t *testing.T) {
	cfg := Config{DefaultNamespace: "default", Domain: "fn.example.com"}
	tests := []struct {
		method, target, host string
		want                 Target
		err                  bool
	}{
		{"POST", "/2015-03-31/functions/hello/invocations", "", Target{Kind: Invoke, Namespace: "default", Name: "hello", Function: fn("hello", "hello", "")}, false},
		{"POST", "/2015-03-31/functions/team-a.hello/invocations", "", Target{Kind: Invoke, Namespace: "team-a", Name: "hello", Function: fn("team-a.hello", "team-a.hello", "")}, false},
		{"POST", "/2015-03-31/functions/team-a%2Fhello/invocations", "", Target{Kind: Invoke, Namespace: "team-a", Name: "hello", Function: fn("team-a.hello", "team-a.hello", "")}, false},
		{"POST", "/2015-03-31/functions/hello%3A%24LATEST/invocations", "", Target{Kind: Invoke, Namespace: "default", Name: "hello", Function: fn("hello:$LATEST", "hello", "$LATEST")}, false},
		{"POST", "/2015-03-31/functions/hello/invocations?Qualifier=prod", "", Target{Kind: Invoke, Namespace: "default", Name: "hello", Function: fn("hello", "hello", "prod")}, false},
		{"POST", "/2015-03-31/functions/123456789012:function:ns1.hello/invocations", "", Target{Kind: Invoke, Namespace: "ns1", Name: "hello", Function: fn("123456789012:function:ns1.hello", "ns1.hello", "")}, false},
		{"POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ans1.hello%3A%24LATEST/invocations", "", Target{Kind: Invoke, Namespace: "ns1", Name: "hello", Function: fn("arn:aws:lambda:us-east-1:123456789012:function:ns1.hello:$LATEST", "ns1.hello", "$LATEST")}, false},
		{"POST", "/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:hello/invocations", "", Target{Kind: Invoke, Namespace: "default", Name: "hello", Function: fn("arn:aws:lambda:eu-west-1:1:function:hello", "hello", "")}, false},
		{"POST", "/2015-03-31/functions/arn:aws:s3:::bucket/invocations", "", Target{}, true},
		{"POST", "/2021-11-15/functions/team-a%2Fhello/response-streaming-invocations", "", Target{Kind: Invoke, Namespace: "team-a", Name: "hello", Function: fn("team-a.hello", "team-a.hello", ""), Stream: true}, false},
		{"POST", "/2021-11-15/functions/arn:aws:lambda:eu-west-1:1:function:hello:$LATEST/response-streaming-invocations?Qualifier=$LATEST", "", Target{Kind: Invoke, Namespace: "default", Name: "hello", Function: fn("arn:aws:lambda:eu-west-1:1:function:hello:$LATEST", "hello", "$LATEST"), Stream: true}, false},
		{"POST", "/2021-11-15/functions/hello:", "", Target{}, true},
		{"GET", "/ns/fn/hello?x=1", "example.org", Target{Kind: HTTP, Namespace: "ns", Name: "fn", Path: "/hello", Prefix: "/ns/fn"}, false},
		{"GET", "/ns/fn", "example.org", Target{Kind: HTTP, Namespace: "ns", Name: "fn", Path: "/", Prefix: "/ns/fn"}, false},
		{"GET", "/ns/fn/", "example.org", Target{Kind: HTTP, Namespace: "ns", Name: "fn", Path: "/", Prefix: "/ns/fn"}, false},
		{"GET", "/ns/fn/a%2Fb/c", "example.org", Target{Kind: HTTP, Namespace: "ns", Name: "fn", Path: "/a%2Fb/c", Prefix: "/ns/fn"}, false},
		{"GET", "/a/b/c", "hello.team-a.fn.example.com:8080", Target{Kind: HTTP, Namespace: "team-a", Name: "hello", Path: "/a/b/c"}, false},
		{"GET", "/", "hello.team-a.FN.example.com", Target{Kind: HTTP, Namespace: "team-a", Name: "hello", Path: "/"}, false},
		// Host routing gives the function the whole path, even one under
		// Lambda's API version.
		{"GET", "/2015-03-31/tags", "hello.team-a.fn.example.com", Target{Kind: HTTP, Namespace: "team-a", Name: "hello", Path: "/2015-03-31/tags"}, false},
		{"GET", "/", "example.org", Target{}, true},
		{"GET", "/Upper/fn", "example.org", Target{}, true},
		{"GET", "/ns", "example.org", Target{}, true},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.host != "" {
			r.Host = tc.host
		}
		got, err := Parse(r, cfg)
		if tc.err {
			if err == nil {
				t.Errorf("%s %s: got %+v, want an error", tc.host, tc.target, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.host, tc.target, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s %s:\n got %+v\nwant %+v", tc.host, tc.target, got, tc.want)
		}
	}
}

func fn(raw, name, qualifier string) invokeapi.FunctionName {
	return invokeapi.FunctionName{Raw: raw, Name: name, Qualifier: qualifier}
}

// Invoke API calls that reach no function get Lambda's answers: 400 for a
// malformed name, 404 for a name no Function can have and for other
// operations; other requests ErrNoRoute.
func TestParseErrors(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if _, err := Parse(r, Config{}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("got %v, want ErrNoRoute", err)
	}
	for _, tc := range []struct {
		method, target string
		status         int
		errType, msg   string
	}{
		{"POST", "/2015-03-31/functions/a.b.c/invocations", 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:eu-west-1:000000000000:function:a.b.c"},
		{"POST", "/2015-03-31/functions/Hello_World/invocations", 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:eu-west-1:000000000000:function:Hello_World"},
		{"POST", "/2015-03-31/functions/arn:aws:s3:::bucket/invocations", 400, "InvalidParameterValueException", "an ARN must look like"},
		{"POST", "/2015-03-31/functions/hello:/invocations", 400, "InvalidParameterValueException", "the qualifier after ':' is empty"},
		{"POST", "/2015-03-31/functions/hello:1/invocations?Qualifier=2", 400, "InvalidParameterValueException", "does not match the specified qualifier"},
		{"GET", "/2015-03-31/functions/hello/invocations", 404, "UnknownOperationException", "Unknown operation GET"},
		{"POST", "/2015-03-31/functions/hello", 404, "UnknownOperationException", "Unknown operation POST"},
		// Lambda's other operations under the same API version:
		// ListFunctions, ListEventSourceMappings.
		{"GET", "/2015-03-31/functions", 404, "UnknownOperationException", "Unknown operation GET"},
		{"GET", "/2015-03-31/event-source-mappings/", 404, "UnknownOperationException", "Unknown operation GET"},
		{"GET", "/2015-03-31", 404, "UnknownOperationException", "Unknown operation GET"},
		{"GET", "/2021-11-15/functions/hello/response-streaming-invocations", 404, "UnknownOperationException", "InvokeWithResponseStream (POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations)"},
		{"POST", "/2021-11-15/functions/hello/invocations", 404, "UnknownOperationException", "Unknown operation POST"},
		{"POST", "/2021-11-15/functions/hello%3A/response-streaming-invocations", 400, "InvalidParameterValueException", "the qualifier after ':' is empty"},
	} {
		_, err := Parse(httptest.NewRequest(tc.method, tc.target, nil), Config{DefaultNamespace: "default", Region: "eu-west-1"})
		var ie *invokeapi.Error
		if !errors.As(err, &ie) || ie.Status != tc.status || ie.Type != tc.errType || !strings.Contains(ie.Message, tc.msg) {
			t.Errorf("%s %s: got %v, want %d %s %q", tc.method, tc.target, err, tc.status, tc.errType, tc.msg)
		}
	}
}

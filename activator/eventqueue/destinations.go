package eventqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Destination is where the record of an ended event goes: another
// function of the same namespace (queued as an Event), or an HTTP URL.
type Destination struct {
	Function string
	URL      string
}

// Outcome is how an event's invocation ended, with what the function
// answered, for the destinations' record.
type Outcome struct {
	Result
	// StatusCode is the Invoke API's status (200 when the function ran,
	// also when it failed: FunctionError says so).
	StatusCode int
	// FunctionError is X-Amz-Function-Error (Unhandled), if any.
	FunctionError string
	// Response is the function's answer (its result, or its error
	// document); nil when it is not kept (no destination, or too large).
	Response []byte
}

// Conditions of an invocation record, as Lambda names them.
const (
	ConditionSuccess          = "Success"
	ConditionRetriesExhausted = "RetriesExhausted"
	ConditionEventAgeExceeded = "EventAgeExceeded"
)

// Record is Lambda's invocation record, the payload a destination gets.
type Record struct {
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	RequestContext  RecordRequest    `json:"requestContext"`
	RequestPayload  json.RawMessage  `json:"requestPayload"`
	ResponseContext *RecordResponse  `json:"responseContext,omitempty"`
	ResponsePayload *json.RawMessage `json:"responsePayload,omitempty"`
}

// RecordRequest is a record's requestContext.
type RecordRequest struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// RecordResponse is a record's responseContext.
type RecordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// NewRecord is the record of ev's end; out is nil when it did not run
// (EventAgeExceeded), and invokes is how many times it ran.
func NewRecord(region string, ev *Event, condition string, invokes int, out *Outcome, now time.Time) *Record {
	r := &Record{
		Version:   "1.0",
		Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: RecordRequest{
			RequestID:              ev.RequestID,
			FunctionARN:            invokeapi.FunctionARN(region, ev.Namespace+"."+ev.Name) + ":$LATEST",
			Condition:              condition,
			ApproximateInvokeCount: invokes,
		},
		RequestPayload: asJSON(ev.Payload),
	}
	if out != nil {
		r.ResponseContext = &RecordResponse{StatusCode: out.StatusCode, ExecutedVersion: "$LATEST", FunctionError: out.FunctionError}
		if out.Response != nil {
			p := asJSON(out.Response)
			r.ResponsePayload = &p
		}
	}
	return r
}

// asJSON embeds a payload as it is when it is JSON, as a string otherwise
// (Lambda's payloads are JSON; a route's body may not be).
func asJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// destinationSpace makes the request ids of destination events from the
// source's (uuid.NewSHA1): a redelivered source, acknowledged late, queues
// the same record again under the same id, which the stream's duplicate
// window stores once.
var destinationSpace = uuid.MustParse("0b8f4c1e-5f0a-4d7e-9a55-2f3c8a3d6b10")

// deliver sends the record to d and says whether it got there. A function
// destination is an Event of that function, in the same namespace; a URL
// gets a POST, tried three times at most while it answers 5xx or cannot be
// reached, never following redirects.
func (q *Queue) deliver(ctx context.Context, d *Destination, ev *Event, rec *Record, log *slog.Logger) {
	kind := "url"
	if d.Function != "" {
		kind = "function"
	}
	body, err := json.Marshal(rec)
	if err == nil {
		if d.Function != "" {
			err = q.Publish(ctx, &Event{
				RequestID: uuid.NewSHA1(destinationSpace, []byte(ev.RequestID+"/"+rec.RequestContext.Condition)).String(),
				Namespace: ev.Namespace, Name: d.Function, Attempt: 1, Accepted: time.Now(), TraceID: ev.TraceID,
				Payload: body,
			})
		} else {
			err = q.post(ctx, d.URL, body)
		}
	}
	if err != nil {
		q.m.destinations.WithLabelValues(kind, "failed").Inc()
		log.Warn("event: the invocation record did not reach its destination", "condition", rec.RequestContext.Condition,
			"destination", d.Function+d.URL, "err", err)
		return
	}
	q.m.destinations.WithLabelValues(kind, "delivered").Inc()
	log.Info("event: invocation record delivered", "condition", rec.RequestContext.Condition, "destination", d.Function+d.URL)
}

// destinationClient posts records: no redirects (a destination says where
// it is), a bounded wait.
var destinationClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (q *Queue) post(ctx context.Context, url string, body []byte) error {
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-time.After(time.Duration(try) * time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "lambdapod-activator")
		var resp *http.Response
		resp, err = destinationClient.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return nil
		case resp.StatusCode >= 500:
			err = fmt.Errorf("%s answered %s", url, resp.Status)
			continue
		}
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return err
}

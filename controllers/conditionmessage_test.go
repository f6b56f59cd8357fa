package controllers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/git"
)

// Every condition message, and the events that repeat one, is cut to
// maxConditionMessage bytes at a rune boundary, whatever the step's error
// says.
func TestConditionMessagesAreBounded(t *testing.T) {
	for _, long := range []string{
		strings.Repeat("x", 300<<10),
		// A three-byte rune across the cut.
		strings.Repeat("x", maxConditionMessage-3) + strings.Repeat("€", 100),
	} {
		fn := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: "default", Generation: 1}}
		fn.Status.URL = "http://activator.test/default/fn/"
		s := newScope(fn)
		s.record(stalled(lambdapodv1alpha1.ConditionBuilt, "BuildFailed", errors.New(long)))
		rec := events.NewFakeRecorder(10)
		_, _ = s.summarize(rec)
		close(rec.Events)

		for _, c := range fn.Status.Conditions {
			if len(c.Message) > maxConditionMessage || !utf8.ValidString(c.Message) || !strings.HasSuffix(c.Message, "…") {
				t.Errorf("%s message: %d bytes, valid UTF-8 %v, ends %q", c.Type, len(c.Message), utf8.ValidString(c.Message), c.Message[max(0, len(c.Message)-8):])
			}
		}
		for e := range rec.Events {
			if len(e) > maxConditionMessage+64 {
				t.Errorf("event of %d bytes", len(e))
			}
		}
	}
	if got := conditionMessage("short"); got != "short" {
		t.Errorf("conditionMessage(short) = %q", got)
	}
}

// The attack: a git URL answering 404 with a 300 MiB body. Its error, made
// by the real ls-remote, is what GitUnreachable says: short, and without
// the body.
func TestGitUnreachableSaysNoBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		chunk := []byte(`{"internal":"s3cr3t"}` + strings.Repeat("x", 64<<10))
		for range (300 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	url := srv.URL + "/org/repo.git"
	_, err := git.Resolve(context.Background(), url, "main", git.Credentials{})
	if err == nil {
		t.Fatal("Resolve succeeded")
	}

	fn := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: "default", Generation: 1}}
	s := newScope(fn)
	s.record(waiting(lambdapodv1alpha1.ConditionBuilt, "GitUnreachable", err))
	_, _ = s.summarize(events.NewFakeRecorder(10))
	want := "git server answered 404 Not Found for " + url
	for _, c := range fn.Status.Conditions {
		if c.Message != want {
			t.Errorf("%s message = %.300q, want %q", c.Type, c.Message, want)
		}
	}
}

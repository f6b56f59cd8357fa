package git_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lambdapod/lambdapod/internal/git"
	"github.com/lambdapod/lambdapod/internal/git/gittest"
)

func TestResolve(t *testing.T) {
	repo := gittest.New(t)
	first := repo.Commit(t, map[string]string{"main.go": "package main\n"}, "first")
	repo.Tag(t, "v1")
	repo.AnnotatedTag(t, "v1-annotated")
	repo.Branch(t, "release")
	second := repo.Commit(t, map[string]string{"main.go": "package main // 2\n"}, "second")
	ctx := context.Background()

	cases := []struct {
		revision, commit, ref string
	}{
		{"main", second, "refs/heads/main"},
		{"refs/heads/main", second, "refs/heads/main"},
		{"release", first, "refs/heads/release"},
		{"v1", first, "refs/tags/v1"},
		{"v1-annotated", first, "refs/tags/v1-annotated"},
		{"HEAD", second, "HEAD"},
		{first, first, ""},
	}
	for _, tc := range cases {
		got, err := git.Resolve(ctx, repo.URL, tc.revision, git.Credentials{})
		if err != nil {
			t.Errorf("Resolve(%s): %v", tc.revision, err)
			continue
		}
		if got.Commit != tc.commit || got.Ref != tc.ref {
			t.Errorf("Resolve(%s) = %+v, want commit %s ref %s", tc.revision, got, tc.commit, tc.ref)
		}
	}

	_, err := git.Resolve(ctx, repo.URL, "nope", git.Credentials{})
	var nf *git.NotFoundError
	if !errors.As(err, &nf) {
		t.Errorf("Resolve(nope) error = %v, want NotFoundError", err)
	}
}

func TestResolveWithBasicAuth(t *testing.T) {
	repo := gittest.New(t)
	repo.Username, repo.Password = "bot", "s3cret"
	commit := repo.Commit(t, map[string]string{"a": "b"}, "c")
	ctx := context.Background()

	if _, err := git.Resolve(ctx, repo.URL, "main", git.Credentials{}); err == nil {
		t.Fatal("anonymous ls-remote of a private repository succeeded")
	}
	creds := git.CredentialsFromSecret(map[string][]byte{"username": []byte("bot"), "password": []byte("s3cret")})
	got, err := git.Resolve(ctx, repo.URL, "main", creds)
	if err != nil || got.Commit != commit {
		t.Fatalf("Resolve with credentials = %+v, %v; want %s", got, err, commit)
	}
}

func TestAuthKinds(t *testing.T) {
	if a, err := (git.Credentials{}).Auth("https://git.example/a/b.git"); a != nil || err != nil {
		t.Errorf("anonymous: %v %v", a, err)
	}
	if _, err := (git.Credentials{SSHPrivateKey: []byte("not a key")}).Auth("git@github.com:org/repo.git"); err == nil {
		t.Error("a malformed ssh-privatekey was accepted")
	}
	// Over SSH a missing key is named, not left to go-git's "SSH agent
	// requested but SSH_AUTH_SOCK not-specified".
	if _, err := (git.Credentials{Password: "token"}).Auth("ssh://git@git.example/org/r.git"); err == nil || !strings.Contains(err.Error(), `needs a private key: put it under "ssh-privatekey"`) {
		t.Errorf("SSH without ssh-privatekey: %v", err)
	}
	if a, err := (git.Credentials{Password: "token"}).Auth("https://git.example/a/b.git"); err != nil || a == nil || a.Name() != "http-basic-auth" {
		t.Errorf("token auth = %v, %v", a, err)
	}
	for url, want := range map[string]bool{
		"git@github.com:org/repo.git":     true,
		"ssh://git@git.example/org/r.git": true,
		"https://git.example/org/r.git":   false,
		"file:///tmp/repo":                false,
	} {
		if got := git.IsSSH(url); got != want {
			t.Errorf("IsSSH(%s) = %v", url, got)
		}
	}
}

func TestRefMatches(t *testing.T) {
	cases := []struct {
		pushed, revision string
		want             bool
	}{
		{"refs/heads/main", "main", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"refs/tags/v1", "v1", true},
		{"refs/heads/dev", "main", false},
		{"refs/heads/main", "0123456789012345678901234567890123456789", false},
	}
	for _, tc := range cases {
		if got := git.RefMatches(tc.pushed, tc.revision); got != tc.want {
			t.Errorf("RefMatches(%s, %s) = %v", tc.pushed, tc.revision, got)
		}
	}
}

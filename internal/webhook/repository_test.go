package webhook

import (
	"context"
	"testing"
	"time"
)

func TestRepositoryName(t *testing.T) {
	for _, tc := range []struct{ url, name string }{
		{"https://github.com/org/hello.git", "github.com/org/hello"},
		{"https://github.com/org/hello", "github.com/org/hello"},
		{"https://github.com/org/hello/", "github.com/org/hello"},
		{"https://github.com/org/hello.git/", "github.com/org/hello"},
		{"HTTPS://GitHub.COM/Org/Hello.git", "github.com/org/hello"},
		{"http://github.com:80/org/hello", "github.com/org/hello"},
		{"https://user:token@github.com:443/org/hello.git", "github.com/org/hello"},
		{"git://github.com/org/hello.git", "github.com/org/hello"},
		{"ssh://git@github.com/org/hello.git", "github.com/org/hello"},
		{"ssh://git@github.com:22/org/hello.git", "github.com/org/hello"},
		{"git@github.com:org/hello.git", "github.com/org/hello"},
		{"git@github.com:/org/hello.git", "github.com/org/hello"},
		{"  git@GitHub.com:org/hello  ", "github.com/org/hello"},
		// Another port is another server.
		{"https://gitea.example:3000/org/hello.git", "gitea.example:3000/org/hello"},
		{"ssh://git@gitea.example:2222/org/hello.git", "gitea.example:2222/org/hello"},
		{"https://gitlab.example/group/sub/hello.git", "gitlab.example/group/sub/hello"},
		{"file:///srv/git/hello.git", "/srv/git/hello"},
		// Not repositories.
		{"", ""},
		{"https://github.com/", ""},
		{"https://github.com/.git", ""},
		{"hello", ""},
		{"./dir:x", ""},
		{"https://bad host/x", ""},
	} {
		if got := repositoryName(tc.url); got != tc.name {
			t.Errorf("repositoryName(%q) = %q, want %q", tc.url, got, tc.name)
		}
	}
}

func TestSameRepository(t *testing.T) {
	for _, tc := range []struct {
		want string
		urls []string
		same bool
	}{
		{"https://git.example/org/hello.git", []string{"https://git.example/org/hello"}, true},
		{"git@git.example:org/hello.git", []string{"https://mirror.example/org/hello.git", "https://git.example/org/hello"}, true},
		{"https://git.example/org/hello.git", []string{"https://git.example/org/hello2.git", "https://git.example/other/hello"}, false},
		{"https://git.example/org/hello.git", []string{"https://git.example:8443/org/hello.git"}, false},
		{"https://git.example/org/hello.git", []string{"https://other.example/org/hello.git"}, false},
		{"https://git.example/org/hello.git", nil, false},
		{"", []string{""}, false},
	} {
		if got := sameRepository(tc.want, tc.urls...); got != tc.same {
			t.Errorf("sameRepository(%q, %q) = %v, want %v", tc.want, tc.urls, got, tc.same)
		}
	}
}

func TestBudget(t *testing.T) {
	ctx := context.Background()
	b := newBudget(10)
	if !b.take(ctx, 6, 0) || !b.take(ctx, 4, 0) {
		t.Fatal("could not take what there is")
	}
	if b.take(ctx, 1, 10*time.Millisecond) {
		t.Fatal("took more than there is")
	}
	// A taker waits for bytes to be given back.
	got := make(chan bool)
	go func() { got <- b.take(ctx, 5, time.Minute) }()
	time.Sleep(10 * time.Millisecond)
	b.give(4)
	select {
	case <-got:
		t.Fatal("took 5 of 4")
	case <-time.After(10 * time.Millisecond):
	}
	b.give(6)
	if !<-got {
		t.Fatal("did not take what was given back")
	}
	// ... until its context ends.
	cancelled, cancel := context.WithCancel(ctx)
	go func() { got <- b.take(cancelled, 6, time.Minute) }()
	cancel()
	if <-got {
		t.Fatal("took 6 of 5")
	}
}

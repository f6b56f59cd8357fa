package buildstep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/lambdapod/lambdapod/internal/git"
)

// CloneOptions say what to check out where.
type CloneOptions struct {
	URL, Revision, Commit, Dir string
	Credentials                git.Credentials
	Log                        io.Writer
}

// ReadCredentials reads a mounted Secret: the files username and password,
// or ssh-privatekey and optionally known_hosts. Missing files are fine.
func ReadCredentials(dir string) (git.Credentials, error) {
	data := map[string][]byte{}
	for _, key := range []string{git.KeyUsername, git.KeyPassword, git.KeySSHPrivateKey, git.KeyKnownHosts} {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return git.Credentials{}, fmt.Errorf("reading credentials: %w", err)
		}
		data[key] = b
	}
	return git.CredentialsFromSecret(data), nil
}

// Clone checks out exactly o.Commit into o.Dir and returns it. It fetches
// only the branch or tag that o.Revision names when it can, and everything
// when the commit is not on it (a branch that was force-pushed since).
func Clone(ctx context.Context, o CloneOptions) (string, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if !git.IsCommit(o.Commit) {
		return "", fmt.Errorf("--commit %q is not a 40-hex commit", o.Commit)
	}
	auth, err := o.Credentials.Auth(o.URL)
	if err != nil {
		return "", err
	}
	var ref plumbing.ReferenceName
	if o.Revision != "" && !git.IsCommit(o.Revision) {
		if refs, err := git.List(ctx, o.URL, o.Credentials); err == nil {
			if r, err := git.Match(refs, o.URL, o.Revision); err == nil && r.Ref != "HEAD" {
				ref = plumbing.ReferenceName(r.Ref)
			}
		}
	}
	logf("cloning %s (%s) into %s", o.URL, displayRef(ref), o.Dir)
	repo, err := gogit.PlainCloneContext(ctx, o.Dir, false, &gogit.CloneOptions{
		URL: o.URL, Auth: auth, ReferenceName: ref, SingleBranch: ref != "", NoCheckout: true,
		Tags: gogit.NoTags,
	})
	if err != nil {
		return "", fmt.Errorf("cloning %s: %w", o.URL, err)
	}
	hash := plumbing.NewHash(o.Commit)
	if _, err := repo.CommitObject(hash); err != nil {
		logf("commit %s is not on %s; fetching every branch and tag", o.Commit, displayRef(ref))
		err := repo.FetchContext(ctx, &gogit.FetchOptions{
			Auth: auth, RemoteName: "origin",
			RefSpecs: []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
		})
		if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
			return "", fmt.Errorf("fetching %s: %w", o.URL, err)
		}
		if _, err := repo.CommitObject(hash); err != nil {
			return "", fmt.Errorf("commit %s is not in %s: %w", o.Commit, o.URL, err)
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	if err := wt.Checkout(&gogit.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return "", fmt.Errorf("checking out %s: %w", o.Commit, err)
	}
	if subs, err := wt.Submodules(); err == nil && len(subs) > 0 {
		if err := subs.UpdateContext(ctx, &gogit.SubmoduleUpdateOptions{Init: true, Auth: auth, RecurseSubmodules: gogit.DefaultSubmoduleRecursionDepth}); err != nil {
			return "", fmt.Errorf("updating submodules: %w", err)
		}
	}
	head, err := repo.Head()
	if err != nil {
		return "", err
	}
	logf("checked out %s", head.Hash())
	return head.Hash().String(), nil
}

func displayRef(ref plumbing.ReferenceName) string {
	if ref == "" {
		return "all branches"
	}
	return ref.String()
}

package gittest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"golang.org/x/crypto/ssh"
)

// SSH is a repository served over SSH on loopback, to one client key only.
type SSH struct {
	// URL clones the repository: ssh://git@127.0.0.1:port/repo.git; Addr
	// is its host:port.
	URL, Addr string
	// HostKey is the server's host key (for known_hosts).
	HostKey ssh.PublicKey
	// ClientKey is the PEM private key the server admits.
	ClientKey []byte
}

// ServeSSH serves r over SSH as well, running go-git's upload-pack for
// `git-upload-pack '/repo.git'` as git's sshd does.
func (r *Repo) ServeSSH(t testing.TB) *SSH {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(key.Marshal(), authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostSigner)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go r.serveSSH(conn, cfg)
		}
	}()
	addr := l.Addr().String()
	return &SSH{URL: "ssh://git@" + addr + repoPath, Addr: addr, HostKey: hostSigner.PublicKey(), ClientKey: pem.EncodeToMemory(block)}
}

const repoPath = "/repo.git"

func (r *Repo) serveSSH(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range requests {
				var exec struct{ Command string }
				if req.Type != "exec" || ssh.Unmarshal(req.Payload, &exec) != nil {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				status := uint32(0)
				if exec.Command != transport.UploadPackServiceName+" '"+repoPath+"'" {
					fmt.Fprintf(ch.Stderr(), "fatal: only %s of %s is served\n", transport.UploadPackServiceName, repoPath)
					status = 128
				} else if err := r.uploadPack(ch); err != nil {
					fmt.Fprintf(ch.Stderr(), "fatal: %v\n", err)
					status = 128
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			}
		}()
	}
}

// uploadPack is git-upload-pack on one connection: the advertisement, then
// the pack the client asks for, if it asks (ls-remote hangs up instead).
func (r *Repo) uploadPack(rw io.ReadWriter) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sess, err := server.NewServer(loader{r.st}).NewUploadPackSession(&transport.Endpoint{Protocol: "ssh", Path: repoPath}, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	ctx := context.Background()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	r.peel(ar)
	if err := ar.Encode(rw); err != nil {
		return err
	}
	req := packp.NewUploadPackRequest()
	if err := req.Decode(rw); err != nil {
		return nil
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Close()
	return resp.Encode(rw)
}

package invoketoken

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	pub, err := ParsePublicKey(EncodePublicKey(key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }

	s := NewSigner(key)
	s.now = clock
	v := NewVerifier(pub, "team-a", "hello")
	v.now = clock

	tok := s.Token("team-a", "hello")
	if err := v.Verify(tok); err != nil {
		t.Fatalf("a token the activator signed for the function: %v", err)
	}
	if again := s.Token("team-a", "hello"); again != tok {
		t.Errorf("the signer made a new token before the old one neared its expiry")
	}

	forged := NewSigner(other)
	forged.now = clock
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"no token", "", ErrMissing},
		{"another function's token", s.Token("team-a", "other"), ErrFunction},
		{"another namespace's token", s.Token("team-b", "hello"), ErrFunction},
		{"signed with another key", forged.Token("team-a", "hello"), ErrSignature},
		{"garbage", "not-a-token", ErrMalformed},
		{"bad base64", "!!.??", ErrMalformed},
		{"claims changed", tamper(tok), ErrSignature},
	}
	for _, c := range cases {
		if err := v.Verify(c.token); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}

	// Past its lifetime (and the allowed skew) the token is refused, even
	// though it was accepted before.
	now = now.Add(Lifetime + Skew + time.Second)
	if err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: got %v, want ErrExpired", err)
	}
	// The signer has long since moved on to a fresh one.
	fresh := s.Token("team-a", "hello")
	if fresh == tok {
		t.Fatal("the signer kept an expired token")
	}
	if err := v.Verify(fresh); err != nil {
		t.Errorf("fresh token: %v", err)
	}
}

// tamper changes the expiry in the claims, keeping the signature.
func tamper(tok string) string {
	c, s, _ := strings.Cut(tok, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(c)
	claims[len(claims)-1] ^= 1
	return base64.RawURLEncoding.EncodeToString(claims) + "." + s
}

func TestParsePublicKey(t *testing.T) {
	for _, bad := range []string{"", "abc", EncodePublicKey(make([]byte, 31))} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted it", bad)
		}
	}
}

// The per-request costs: the activator's cached token and the sidecar's
// remembered one (go test -bench . ./internal/invoketoken/).
func BenchmarkPerRequest(b *testing.B) {
	key, _ := GenerateKey()
	s := NewSigner(key)
	v := NewVerifier(key.Public().(ed25519.PublicKey), "team-a", "hello")
	b.Run("activator-token", func(b *testing.B) {
		for b.Loop() {
			_ = s.Token("team-a", "hello")
		}
	})
	tok := s.Token("team-a", "hello")
	b.Run("sidecar-verify", func(b *testing.B) {
		for b.Loop() {
			if err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sidecar-verify-first-sight", func(b *testing.B) {
		for b.Loop() {
			v.accepted = map[string]time.Time{}
			if err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Command devcert makes the self-signed certificate authority and the
// server certificate that make dev's Ingress controller serves:
//
//	devcert -dir bin/dev/tls -host activator.lambdapod.test -host '*.default.lambdapod.test'
//
// It writes ca.crt (the authority: give it to curl --cacert or a client's
// root pool), tls.crt and tls.key (the server's certificate, signed by the
// authority, with every -host as a DNS name; for a kubernetes.io/tls
// Secret). ECDSA P-256 keys; the certificate lasts a year. An authority
// already in dir is reused, and the server certificate is made again only
// when the hosts changed or it expires within 30 days, so a second make dev
// changes nothing that clients trust.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type hosts []string

func (h *hosts) String() string     { return strings.Join(*h, ",") }
func (h *hosts) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	dir := flag.String("dir", "bin/dev/tls", "directory for ca.crt, ca.key, tls.crt and tls.key")
	var names hosts
	flag.Var(&names, "host", "DNS name of the server certificate (repeat)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("devcert: ")
	if len(names) == 0 {
		log.Fatal("at least one -host is needed")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	ca, caKey, err := authority(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if current(*dir, ca, names) {
		log.Printf("%s/tls.crt is current (%s)", *dir, names.String())
		return
	}
	if err := server(*dir, ca, caKey, names); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s/tls.crt for %s", *dir, names.String())
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		log.Fatal(err)
	}
	return n
}

// authority reads the CA of dir, or makes one.
func authority(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err1 := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err1 == nil && err2 == nil {
		cert, key, err := parse(certPEM, keyPEM)
		if err == nil && time.Until(cert.NotAfter) > 30*24*time.Hour {
			return cert, key, nil
		}
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "lambdapod dev CA", Organization: []string{"lambdapod make dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := write(dir, "ca.key", keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := write(dir, "ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	// A new authority invalidates the old server certificate.
	os.Remove(filepath.Join(dir, "tls.crt"))
	return cert, key, nil
}

// current: tls.crt exists, is signed by ca, names exactly these hosts and
// is valid for 30 more days.
func current(dir string, ca *x509.Certificate, names hosts) bool {
	certPEM, err1 := os.ReadFile(filepath.Join(dir, "tls.crt"))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err1 != nil || err2 != nil {
		return false
	}
	cert, _, err := parse(certPEM, keyPEM)
	if err != nil || cert.CheckSignatureFrom(ca) != nil || time.Until(cert.NotAfter) < 30*24*time.Hour {
		return false
	}
	a, b := slices.Clone(cert.DNSNames), slices.Clone([]string(names))
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func server(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names hosts) error {
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"lambdapod make dev"}},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := write(dir, "tls.key", keyPEM, 0o600); err != nil {
		return err
	}
	return write(dir, "tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func parse(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("the key does not match the certificate")
	}
	return cert, key, nil
}

// write replaces a file atomically, so that a failed run leaves the old one.
func write(dir, name string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if old, err := os.ReadFile(filepath.Join(dir, name)); err == nil && bytes.Equal(old, data) {
		return os.Remove(tmp)
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

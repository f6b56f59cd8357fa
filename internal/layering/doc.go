// Package layering has no code: its test checks which of lambdapod's
// packages may import which (see layering_test.go and
// docs/architecture.md).
package layering

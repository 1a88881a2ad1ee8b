package keystore

import (
	"fmt"
	"log/slog"
)

// redacted is what every formatting, marshalling and logging path prints in
// place of a secret value.
const redacted = "[redacted]"

// Secret holds a credential value (an app's client secret).
//
// A Secret never prints its value: String, GoString, Format (every verb,
// including %v %+v %#v %s %q %x %X %d), MarshalJSON, MarshalText and
// slog's LogValue all yield "[redacted]". Only Reveal returns the value, so
// every place that uses the real value is explicit and easy to audit.
//
// The value is held behind a pointer, so even paths that bypass the methods
// above (reflection-based printing of a struct holding a Secret in an
// unexported field, a bad verb such as %p or %w) print an address, never the
// value. Because of that, == compares identity, not value; compare Reveal()
// results instead. The zero Secret is empty.
type Secret struct {
	v *string
}

// NewSecret wraps v. NewSecret("") returns the zero (empty) Secret.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{v: &v}
}

// Reveal returns the secret value. Call it only where the value is handed to
// the party that needs it (the token endpoint, the keyring), never to build a
// log line, error or status.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the Secret is empty.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

// String implements fmt.Stringer; it returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer; it returns "[redacted]".
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb and flag prints "[redacted]".
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler; it returns the JSON string
// "[redacted]". There is deliberately no UnmarshalJSON: a Secret cannot be
// read back from JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler; it returns "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer; it returns "[redacted]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)

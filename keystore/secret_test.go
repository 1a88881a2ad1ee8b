package keystore_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"testing"

	"github.com/tokenbroker/tokenbroker/keystore"
)

func TestSecretRevealAndZero(t *testing.T) {
	v := canary()
	s := keystore.NewSecret(v)
	if s.Reveal() != v {
		t.Fatalf("Reveal = %q, want %q", s.Reveal(), v)
	}
	if s.IsZero() {
		t.Fatal("IsZero of a non-empty secret")
	}
	for _, z := range []keystore.Secret{{}, keystore.NewSecret("")} {
		if !z.IsZero() || z.Reveal() != "" {
			t.Fatalf("empty secret: IsZero %v, Reveal %q", z.IsZero(), z.Reveal())
		}
		if got := fmt.Sprint(z); got != "[redacted]" {
			t.Fatalf("empty secret prints %q", got)
		}
	}
}

func TestSecretFmtExact(t *testing.T) {
	s := keystore.NewSecret(canary())
	if got := s.String(); got != "[redacted]" {
		t.Errorf("String() = %q", got)
	}
	if got := s.GoString(); got != "[redacted]" {
		t.Errorf("GoString() = %q", got)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		if got := fmt.Sprintf(verb, s); got != "[redacted]" {
			t.Errorf("Sprintf(%s) = %q, want [redacted]", verb, got)
		}
		if got := fmt.Sprintf(verb, &s); got != "[redacted]" {
			t.Errorf("Sprintf(%s, &s) = %q, want [redacted]", verb, got)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	v := canary()
	s := keystore.NewSecret(v)
	type exported struct {
		Name string
		S    keystore.Secret
		P    *keystore.Secret
	}
	type unexported struct {
		name string
		s    keystore.Secret // printed by reflection, bypassing Secret's methods
	}
	values := map[string]any{
		"value":      s,
		"pointer":    &s,
		"slice":      []keystore.Secret{s, s},
		"array":      [1]keystore.Secret{s},
		"map value":  map[string]keystore.Secret{"k": s},
		"map key":    map[keystore.Secret]int{s: 1},
		"exported":   exported{"n", s, &s},
		"exported*":  &exported{"n", s, &s},
		"unexported": unexported{"n", s},
		"nested":     struct{ In unexported }{unexported{"n", s}},
		"interface":  []any{s, &s},
	}
	verbs := []string{
		"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%#x", "%d", "%T", "%p",
		"%t", "%b", "%o", "%c", "%U", "%e", "%g", "%w", "%10s", "%-20v", "%08q", "%.3s", "%!",
	}
	for name, val := range values {
		for _, verb := range verbs {
			assertNoLeak(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, val), v)
		}
		assertNoLeak(t, "Sprint "+name, fmt.Sprint(val), v)
		assertNoLeak(t, "Sprintln "+name, fmt.Sprintln(val, val), v)

		var buf bytes.Buffer
		l := log.New(&buf, "", 0)
		l.Printf("%v %+v %#v", val, val, val)
		l.Println(val)
		assertNoLeak(t, "log "+name, buf.String(), v)
	}
}

func TestSecretSlog(t *testing.T) {
	v := canary()
	s := keystore.NewSecret(v)
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		t.Run(h.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(h.new(&buf))
			logger.Info("value", "secret", s)
			logger.Info("pointer", "secret", &s)
			logger.Info("attr", slog.Any("secret", s))
			logger.Info("group", slog.Group("g", "secret", s))
			logger.With("secret", s).Info("with")
			logger.WithGroup("wg").Info("withgroup", "secret", s)
			logger.Info("struct", "cfg", struct {
				Tenant string
				Secret keystore.Secret
			}{"contoso", s})
			logger.Info("unexported", "cfg", struct{ s keystore.Secret }{s})
			logger.Info("slice", "secrets", []keystore.Secret{s})
			logger.Info("error", "err", fmt.Errorf("wrapped: %v", s))
			out := buf.String()
			assertNoLeak(t, h.name+" handler", out, v)
			if !bytes.Contains(buf.Bytes(), []byte("[redacted]")) {
				t.Errorf("%s handler output has no [redacted]: %s", h.name, out)
			}
			t.Log(out)
		})
	}
}

func TestSecretMarshal(t *testing.T) {
	v := canary()
	s := keystore.NewSecret(v)

	b, err := json.Marshal(s)
	if err != nil || string(b) != `"[redacted]"` {
		t.Fatalf("json.Marshal(s) = %s, %v", b, err)
	}
	if b, err := s.MarshalText(); err != nil || string(b) != "[redacted]" {
		t.Fatalf("MarshalText = %s, %v", b, err)
	}
	for name, val := range map[string]any{
		"pointer": &s,
		"struct": struct {
			S keystore.Secret  `json:"s"`
			P *keystore.Secret `json:"p,omitempty"`
		}{s, &s},
		"map":     map[string]keystore.Secret{"k": s},
		"map key": map[keystore.Secret]string{s: "v"},
		"slice":   []keystore.Secret{s},
	} {
		b, err := json.Marshal(val)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", name, err)
		}
		assertNoLeak(t, "json "+name, string(b), v)
		b, err = json.MarshalIndent(val, "", " ")
		if err != nil {
			t.Fatalf("json.MarshalIndent(%s): %v", name, err)
		}
		assertNoLeak(t, "json indent "+name, string(b), v)
	}

	type doc struct {
		S keystore.Secret `xml:"s"`
		A keystore.Secret `xml:"a,attr"`
	}
	x, err := xml.Marshal(doc{s, s})
	if err != nil {
		t.Fatalf("xml.Marshal: %v", err)
	}
	assertNoLeak(t, "xml", string(x), v)

	// There is no way back: a Secret cannot be decoded from JSON.
	var back keystore.Secret
	if err := json.Unmarshal([]byte(`"`+v+`"`), &back); err == nil {
		t.Fatalf("json.Unmarshal into Secret succeeded (Reveal %q); want an error", back.Reveal())
	}
}

func TestSecretInErrors(t *testing.T) {
	v := canary()
	s := keystore.NewSecret(v)
	base := fmt.Errorf("set credential %v (%s, %q, %+v, %#v, %x)", s, s, s, s, s, s)
	wrapped := fmt.Errorf("brokerd: %w", base)
	badVerbs := []string{"bad verb %w %p %d"} // not a constant: vet rightly rejects %w with a non-error
	joined := errors.Join(wrapped, fmt.Errorf(badVerbs[0], s, s, &s))
	for _, err := range []error{base, wrapped, joined} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			assertNoLeak(t, "error "+verb, fmt.Sprintf(verb, err), v)
		}
		assertNoLeak(t, "err.Error()", err.Error(), v)
	}
	if !errors.Is(joined, base) {
		t.Fatal("errors.Join lost the chain")
	}
}

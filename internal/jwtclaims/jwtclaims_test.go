package jwtclaims

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	var c struct {
		TID string `json:"tid"`
	}
	if err := Decode("h."+enc([]byte(`{"tid":"t1"}`))+".s", &c); err != nil || c.TID != "t1" {
		t.Fatalf("Decode = %v, tid %q", err, c.TID)
	}
	secret := "eyJsecret"
	for _, tt := range []struct {
		token string
		want  error
	}{
		{secret, ErrNotJWT},
		{"h.!!" + secret + ".s", ErrNotBase64},
		{"h." + enc([]byte(`["`+secret+`"]`)) + ".s", ErrNotClaims},
	} {
		err := Decode(tt.token, &c)
		if !errors.Is(err, tt.want) {
			t.Errorf("Decode(%q) = %v, want %v", tt.token, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q quotes the token", err)
		}
	}
}

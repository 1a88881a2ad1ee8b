package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/tokenbroker/tokenbroker/internal/jwtclaims"
)

// maxAssertionBytes bounds an assertion file: a Kubernetes service account
// token or a GitHub Actions OIDC token is one or two KB.
const maxAssertionBytes = 16 << 10

// maxExp is the largest exp claim taken as a time (the year 9999).
const maxExp = 253402300799

// assertionCallback returns MSAL's assertion callback for a federated app:
// it reads the app's assertion file again for every token request, as the
// workload identity credentials of the Azure SDKs do, since whatever
// writes it (the kubelet, a CI job, a SPIFFE helper) replaces it before it
// expires. A missing, unreadable, malformed or expired assertion is an
// *Error naming the file, and no request is sent.
func (b *Broker) assertionCallback(a *app) func(context.Context, confidential.AssertionRequestOptions) (string, error) {
	return func(context.Context, confidential.AssertionRequestOptions) (string, error) {
		s, err := readAssertion(a.assertionFile, b.clock.Now())
		if err != nil {
			err.Msg = fmt.Sprintf("app %s: %s", a.name, err.Msg)
			return "", err
		}
		return s, nil
	}
}

// readAssertion reads and checks the assertion in path.
func readAssertion(path string, now time.Time) (string, *Error) {
	bad := func(format string, args ...any) *Error {
		// Transient: whatever writes the file may write a good one soon.
		return &Error{Kind: KindFailedPrecondition, Transient: true, Msg: fmt.Sprintf(format, args...)}
	}
	// Not waited on: the acquisition, and Close, would wait with it.
	raw, err := readRegularFile(path, maxAssertionBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", bad("the assertion file %s does not exist; check assertion_file and whatever writes the file (a projected service account token, the CI job's OIDC token)", path)
	case errors.Is(err, errNotRegular):
		return "", bad("the assertion file %s is not a regular file", path)
	case errors.Is(err, errTooLarge):
		return "", bad("the assertion file %s is larger than %d KiB; it should hold one JWT", path, maxAssertionBytes>>10)
	case err != nil:
		return "", bad("cannot read the assertion file %s: %v", path, unwrapPathError(err))
	}
	tok := string(bytes.TrimSpace(raw))
	if tok == "" {
		return "", bad("the assertion file %s is empty", path)
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if err := jwtclaims.Decode(tok, &claims); err != nil {
		return "", bad("the assertion in %s %v; it must hold one JWT", path, err)
	}
	if claims.Exp == nil {
		return "", bad("the assertion in %s has no exp claim", path)
	}
	if *claims.Exp < 0 || *claims.Exp > maxExp {
		return "", bad("the assertion in %s has an exp claim out of range", path)
	}
	exp := time.Unix(int64(*claims.Exp), 0).UTC()
	if !exp.After(now) {
		return "", bad("the assertion in %s expired at %s (exp); whatever writes the file has stopped replacing it", path, exp.Format(time.RFC3339))
	}
	return tok, nil
}

// unwrapPathError drops the path and operation from an *fs.PathError, which
// the caller's message already names.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// credentialsDirEnv is the variable systemd sets for a unit that has
// LoadCredential=, LoadCredentialEncrypted= or SetCredential= lines.
const credentialsDirEnv = "CREDENTIALS_DIRECTORY"

type systemdStore struct {
	dir string
}

// NewSystemd returns a read-only Store over a systemd credentials directory:
// Get(account) reads the file named account in dir, with one trailing newline
// ("\n" or "\r\n") removed. Set and Delete fail with an error matching
// ErrReadOnly that explains how to provision the credential.
//
// dir "" means $CREDENTIALS_DIRECTORY; it is an error if that is unset, as it
// is when brokerd does not run under a unit with LoadCredential= or
// LoadCredentialEncrypted=. The directory must exist.
func NewSystemd(dir string) (Store, error) {
	if dir == "" {
		dir = os.Getenv(credentialsDirEnv)
		if dir == "" {
			return nil, fmt.Errorf("keystore: systemd backend: $%s is not set: run brokerd as a systemd service with "+
				"LoadCredentialEncrypted=<client-id>:/etc/credstore.encrypted/<client-id> (or LoadCredential=), "+
				"or choose the keyring backend", credentialsDirEnv)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: systemd backend: credentials directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keystore: systemd backend: credentials directory %s is not a directory", dir)
	}
	return &systemdStore{dir: dir}, nil
}

func (s *systemdStore) Name() string { return "systemd" }

func (s *systemdStore) MaxSize() int { return MaxValueSize }

func (s *systemdStore) Get(ctx context.Context, account string) (Secret, error) {
	const op = "get"
	if err := checkAccount(s.Name(), op, account); err != nil {
		return Secret{}, err
	}
	if err := ctx.Err(); err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	path := filepath.Join(s.dir, account)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Secret{}, opError(s.Name(), op, account, fmt.Errorf("%w: no credential file %s; add "+
			"LoadCredentialEncrypted=%s:/etc/credstore.encrypted/%s (or LoadCredential=) to the brokerd unit",
			ErrNotFound, path, account, account))
	}
	if err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	if !fi.Mode().IsRegular() {
		return Secret{}, opError(s.Name(), op, account, fmt.Errorf("%w: %s is not a regular file", ErrInvalidSecret, path))
	}
	v, err := readValue(f, path)
	if err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	return v, nil
}

func (s *systemdStore) Set(ctx context.Context, account string, _ Secret) error {
	if err := checkAccount(s.Name(), "set", account); err != nil {
		return err
	}
	return s.Writable(account)
}

// Writable always fails: systemd passes credentials in, nobody writes them
// back through the daemon.
func (s *systemdStore) Writable(account string) error {
	return opError(s.Name(), "set", account, fmt.Errorf("%w: the systemd backend only reads credentials that systemd "+
		"passes in; provision the secret with `systemd-creds encrypt --name=%s - /etc/credstore.encrypted/%s` "+
		"(secret on stdin), add LoadCredentialEncrypted=%s:/etc/credstore.encrypted/%s to the brokerd unit and restart it",
		ErrReadOnly, account, account, account, account))
}

func (s *systemdStore) Delete(ctx context.Context, account string) error {
	if err := checkAccount(s.Name(), "delete", account); err != nil {
		return err
	}
	return opError(s.Name(), "delete", account, fmt.Errorf("%w: the systemd backend only reads credentials that systemd "+
		"passes in; remove the LoadCredentialEncrypted=%s (or LoadCredential=%s) line from the brokerd unit and "+
		"the encrypted file, then restart it", ErrReadOnly, account, account))
}

// readValue reads a credential file's value: at most MaxValueSize bytes
// after one trailing newline ("\n" or "\r\n") is removed, not empty. Its
// errors name path, never the value.
func readValue(r io.Reader, path string) (Secret, error) {
	// Read at most MaxValueSize plus a trailing "\r\n" plus one byte, to tell
	// "too large" apart without reading an arbitrarily large file.
	b, err := io.ReadAll(io.LimitReader(r, MaxValueSize+3))
	defer clear(b)
	if err != nil {
		return Secret{}, err
	}
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	switch {
	case len(b) == 0:
		return Secret{}, fmt.Errorf("%w: credential file %s is empty", ErrInvalidSecret, path)
	case len(b) > MaxValueSize:
		return Secret{}, fmt.Errorf("%w: credential file %s is larger than %d bytes", ErrInvalidSecret, path, MaxValueSize)
	}
	return NewSecret(string(b)), nil
}

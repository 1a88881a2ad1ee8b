package broker

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Defaults for the keys a configuration may leave out.
const (
	DefaultAuthorityHost   = "https://login.microsoftonline.com"
	DefaultScope           = "https://api.securitycenter.microsoft.com/.default"
	DefaultKeystore        = "keyring"
	DefaultRefreshBefore   = 15 * time.Minute
	DefaultMinValid        = 5 * time.Minute
	DefaultIdPTimeout      = 30 * time.Second
	DefaultKeystoreTimeout = 5 * time.Second
	DefaultPrefetch        = 8
	DefaultPrefetchRate    = 50
	DefaultMaxInFlight     = 32
)

// Config is a validated configuration: ParseConfig and LoadConfig are the
// only ways to build one, so a *Config that New receives is valid by
// construction (the zero Config is refused by New).
type Config struct {
	authorityHost       string        // top level: "https://host", no trailing slash
	keystore            string        // keyring | systemd | directory | memory
	credentialsDir      string        // absolute; set exactly when keystore is directory
	refreshBefore       time.Duration // > 0
	minValid            time.Duration // > 0
	idpTimeout          time.Duration // > 0
	keystoreTimeout     time.Duration // > 0
	prefetchConcurrency int           // 1..1024
	prefetchRate        int           // 1..10000
	maxIdPRequests      int           // 1..4096
	limits              Limits
	access              *Access        // the top-level allow lists (default: daemon uid + root)
	apps                []AppConfig    // sorted by name, at least one
	tenants             []TenantConfig // sorted by name, at least one
}

// AppConfig is one app registration of a Config.
type AppConfig struct {
	Name     string
	ClientID string   // lower-case GUID
	Scopes   []string // validated, at least one (default: the cloud's Defender for Endpoint scope)
	// AllowedScopes are the scopes callers may ask for, besides Scopes:
	// validated /.default scopes, sorted, without duplicates (default
	// Scopes).
	AllowedScopes []string
	// Cloud is the national cloud of the app's tenants: public (the
	// default), usgov, usgovhigh or dod.
	Cloud string
	// AuthorityHost is the Entra ID login host the app's tenants sign in
	// at ("https://" and a host name): the app's authority_host, else the
	// top-level one, else its cloud's.
	AuthorityHost string
	// RequiredRoles are the roles every token of Scopes should carry:
	// validated, sorted, without duplicates.
	RequiredRoles []string
	// AssertionFile is the absolute path of the app's federated assertion
	// (assertion_file); "" when the app's credential is in the keystore.
	AssertionFile string
	// SendX5C sends the certificate chain with each client assertion.
	SendX5C bool
}

// TenantConfig is one customer tenant of a Config.
type TenantConfig struct {
	Name    string
	ID      string   // lower-case GUID
	App     string   // name of an app in Config.apps
	Domains []string // lower-case
	Access  *Access  // the allow lists that apply (its own, else the top level)
}

// AuthorityHost is the top-level Entra ID login host ("https://" and a host
// name): authority_host, or DefaultAuthorityHost when left out. Each app's
// own, which its cloud chooses, is AppConfig.AuthorityHost.
func (c *Config) AuthorityHost() string { return c.authorityHost }

// Keystore names the credential backend: keyring, systemd, directory or
// memory.
func (c *Config) Keystore() string { return c.keystore }

// CredentialsDir is the directory keystore's directory (credentials_dir);
// "" unless Keystore is "directory".
func (c *Config) CredentialsDir() string { return c.credentialsDir }

// RefreshBefore is how long before expiry a token is refreshed (capped at
// half the token's lifetime).
func (c *Config) RefreshBefore() time.Duration { return c.refreshBefore }

// MinValid is the least lifetime a token handed out has left when the
// caller asks for none.
func (c *Config) MinValid() time.Duration { return c.minValid }

// IdPTimeout bounds one token request to Entra ID.
func (c *Config) IdPTimeout() time.Duration { return c.idpTimeout }

// KeystoreTimeout bounds one keystore call (keystore_timeout): brokerd
// passes it to the keystore and to the broker.
func (c *Config) KeystoreTimeout() time.Duration { return c.keystoreTimeout }

// PrefetchConcurrency bounds the scheduled token requests (first fetch,
// refresh, retry) in flight at once.
func (c *Config) PrefetchConcurrency() int { return c.prefetchConcurrency }

// PrefetchRate bounds the scheduled token requests started per second.
func (c *Config) PrefetchRate() int { return c.prefetchRate }

// MaxIdPRequests bounds the token requests in flight to Entra ID at once,
// over all tenants.
func (c *Config) MaxIdPRequests() int { return c.maxIdPRequests }

// Limits are the bounds of [limits].
func (c *Config) Limits() Limits { return c.limits }

// Access is a copy of the top-level allow lists, which apply to tenants
// with none of their own. (A name that matches no tenant is for the
// daemon's uid and root only.)
func (c *Config) Access() *Access { return c.access.clone() }

// Apps is a copy of the app registrations, sorted by name.
func (c *Config) Apps() []AppConfig {
	apps := make([]AppConfig, len(c.apps))
	for i, a := range c.apps {
		a.Scopes = slices.Clone(a.Scopes)
		a.AllowedScopes = slices.Clone(a.AllowedScopes)
		a.RequiredRoles = slices.Clone(a.RequiredRoles)
		apps[i] = a
	}
	return apps
}

// NumTenants is how many tenants the configuration has.
func (c *Config) NumTenants() int { return len(c.tenants) }

// Tenants is a copy of the tenants, sorted by name.
func (c *Config) Tenants() []TenantConfig {
	tenants := make([]TenantConfig, len(c.tenants))
	for i, t := range c.tenants {
		t.Domains = slices.Clone(t.Domains)
		t.Access = t.Access.clone()
		tenants[i] = t
	}
	return tenants
}

// MaxConfigBytes bounds a configuration file: ten thousand tenants take
// about two megabytes.
const MaxConfigBytes = 16 << 20

// LoadConfig reads and validates the configuration file at path: a
// regular file (a FIFO or a device is refused, not waited on) of at most
// MaxConfigBytes.
func LoadConfig(path string) (*Config, error) {
	data, err := readRegularFile(path, MaxConfigBytes)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("config: %s is larger than %d MiB", path, MaxConfigBytes>>20)
	case err != nil:
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// The refusals of readRegularFile.
var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = errors.New("too large")
)

// readRegularFile reads the regular file at path, at most max bytes. It
// opens without blocking, so a FIFO or a device is refused (errNotRegular,
// naming its type), never waited on; a longer file is errTooLarge.
func readRegularFile(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is %w (%s)", path, errNotRegular, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	switch {
	case err != nil:
		return nil, err
	case len(data) > max:
		return nil, errTooLarge
	}
	return data, nil
}

// ParseConfig decodes and validates a configuration document: a strict
// decode against the schema, the defaults, then resolution. Unknown keys,
// values of the wrong kind and bad values are errors naming the file
// (name), the line and the key. Keys the document leaves out get their
// defaults.
func ParseConfig(name string, data []byte) (*Config, error) {
	d, err := parseDocument(name, data)
	if err != nil {
		return nil, err
	}
	d.setDefaults()
	c, err := resolve(d)
	if err != nil {
		return nil, locate(name, data, err)
	}
	return c, nil
}

// locate prefixes a resolution error with the file and, when the key is
// in the document, its line.
func locate(name string, data []byte, err error) error {
	var ke *keyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("%s: %w", name, err)
	}
	if line, ok := keyLines(data)[ke.key]; ok {
		return fmt.Errorf("%s:%d: %s: %s", name, line, ke.key, ke.msg)
	}
	return fmt.Errorf("%s: %s: %s", name, ke.key, ke.msg)
}

// keyError is a validation error about one key, located by ParseConfig.
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.key + ": " + e.msg }

func badKey(key, format string, args ...any) error {
	return &keyError{key: key, msg: fmt.Sprintf(format, args...)}
}

var (
	guidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
)

// IsGUID reports whether s has the form of a GUID (tenant or client id).
func IsGUID(s string) bool { return guidRE.MatchString(s) }

// ValidateScope checks that s is a client-credentials scope: an absolute
// resource URI (or GUID) followed by "/.default".
func ValidateScope(s string) error {
	res, ok := strings.CutSuffix(s, "/.default")
	switch {
	case s == "":
		return errors.New("empty scope")
	case len(s) > maxScopeBytes:
		return fmt.Errorf("scope of %d bytes is longer than the %d a scope may have", len(s), maxScopeBytes)
	case !ok || res == "":
		return fmt.Errorf("scope %q must be a resource's /.default scope (client-credentials tokens carry the app's granted roles), e.g. %q", s, DefaultScope)
	case IsGUID(res):
		return nil
	}
	u, err := url.Parse(res)
	if err != nil || (u.Scheme != "https" && u.Scheme != "api") || u.Host == "" && u.Opaque == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("scope %q must be a resource URI followed by /.default, e.g. %q", s, DefaultScope)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

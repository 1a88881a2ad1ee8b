package broker

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Defaults for the keys a configuration may leave out.
const (
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	DefaultScope         = "https://api.securitycenter.microsoft.com/.default"
	DefaultKeystore      = "keyring"
	DefaultRefreshBefore = 15 * time.Minute
	DefaultMinValid      = 5 * time.Minute
	DefaultIdPTimeout    = 30 * time.Second
	DefaultPrefetch      = 8
	DefaultPrefetchRate  = 50
	DefaultMaxInFlight   = 32
)

// Config is brokerd's configuration file: the apps whose credentials the
// broker holds and the customer tenants it acquires tokens in.
type Config struct {
	// AuthorityHost is the Entra ID login host, e.g.
	// https://login.microsoftonline.com or https://login.microsoftonline.us.
	AuthorityHost string `toml:"authority_host"`
	// Keystore names the credential backend: keyring, systemd or memory.
	Keystore string `toml:"keystore"`
	// RefreshBefore is how long before expiry a token is refreshed (capped
	// at half the token's lifetime).
	RefreshBefore Duration `toml:"refresh_before"`
	// MinValid is the default least lifetime a token handed out has left.
	MinValid Duration `toml:"min_valid"`
	// IdPTimeout bounds one token request to Entra ID.
	IdPTimeout Duration `toml:"idp_timeout"`
	// PrefetchConcurrency bounds the token requests made at start-up.
	PrefetchConcurrency int `toml:"prefetch_concurrency"`
	// PrefetchRate bounds the token requests per second made at start-up
	// (and when a credential changes), so that thousands of tenants reach
	// Entra ID spread out, and so do their later refreshes.
	PrefetchRate int `toml:"prefetch_rate"`
	// MaxIdPRequests bounds the token requests in flight to Entra ID at
	// once, over all tenants: refreshes that fall due together (after a
	// suspend, say) queue instead of storming the IdP.
	MaxIdPRequests int `toml:"max_idp_requests"`
	// AccessLists at the top level are the default for tenants that set
	// none. With none anywhere, only the daemon's uid and root get tokens.
	AccessLists
	// Apps are the Entra ID app registrations, by name.
	Apps map[string]*App `toml:"apps"`
	// Tenants are the customer tenants, by name.
	Tenants map[string]*Tenant `toml:"tenants"`

	access *Access // resolved top-level lists
}

// App is one (multi-tenant) Entra ID app registration.
type App struct {
	// ClientID is the app's application (client) id, a GUID.
	ClientID string `toml:"client_id"`
	// Scopes are requested when a caller names none.
	Scopes []string `toml:"scopes"`
}

// Tenant is one customer tenant that has consented to an app.
type Tenant struct {
	// ID is the tenant id, a GUID.
	ID string `toml:"id"`
	// App names the entry of Config.Apps tokens are acquired with.
	App string `toml:"app"`
	// Domains are the tenant's verified domains (e.g.
	// contoso.onmicrosoft.com), accepted by GetToken in place of the name.
	Domains []string `toml:"domains"`
	// AccessLists say who may get this tenant's tokens; when empty, the
	// top-level lists apply.
	AccessLists

	access *Access // resolved lists that apply to this tenant
}

// Duration is a time.Duration written in TOML as a string such as "15m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"90s\", \"15m\")", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates a configuration document. Unknown keys
// and bad values are errors naming the file, line and key. Defaults are
// filled in for keys the document leaves out.
func ParseConfig(name string, data []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(name, err)
	}
	lines := keyLines(data)
	if err := c.Validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			if line, ok := lines[ke.key]; ok {
				return nil, fmt.Errorf("%s:%d: %s: %s", name, line, ke.key, ke.msg)
			}
			return nil, fmt.Errorf("%s: %s: %s", name, ke.key, ke.msg)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// decodeError turns go-toml's errors into one line per problem, each with
// the file, line and key.
func decodeError(name string, err error) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		msgs := make([]string, 0, len(sm.Errors))
		for _, e := range sm.Errors {
			line, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("%s:%d: unknown key %q", name, line, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := de.Key(); len(k) > 0 {
			return fmt.Errorf("%s:%d: %s: %s", name, line, strings.Join(k, "."), msg)
		}
		return fmt.Errorf("%s:%d: %s", name, line, msg)
	}
	return fmt.Errorf("%s: %w", name, err)
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

// Validate checks every value and fills in defaults. Names, GUIDs and
// domains are normalised to lower case where Entra ID ignores case.
func (c *Config) Validate() error {
	if c.AuthorityHost == "" {
		c.AuthorityHost = DefaultAuthorityHost
	}
	u, err := url.Parse(c.AuthorityHost)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return badKey("authority_host", "%q must be an https URL with no path, e.g. %q", c.AuthorityHost, DefaultAuthorityHost)
	}
	c.AuthorityHost = "https://" + u.Host
	switch c.Keystore {
	case "":
		c.Keystore = DefaultKeystore
	case "keyring", "systemd", "memory":
	default:
		return badKey("keystore", "%q is not a keystore (use keyring, systemd or memory)", c.Keystore)
	}
	if err := durationDefault(&c.RefreshBefore, "refresh_before", DefaultRefreshBefore, 24*time.Hour); err != nil {
		return err
	}
	if err := durationDefault(&c.MinValid, "min_valid", DefaultMinValid, 24*time.Hour); err != nil {
		return err
	}
	if err := durationDefault(&c.IdPTimeout, "idp_timeout", DefaultIdPTimeout, 10*time.Minute); err != nil {
		return err
	}
	switch {
	case c.PrefetchConcurrency == 0:
		c.PrefetchConcurrency = DefaultPrefetch
	case c.PrefetchConcurrency < 0 || c.PrefetchConcurrency > 1024:
		return badKey("prefetch_concurrency", "%d is out of range (1 to 1024)", c.PrefetchConcurrency)
	}
	source := "the default (only the daemon's uid and root)"
	if !c.AccessLists.empty() {
		source = "the top-level allow lists"
	}
	if c.access, err = c.AccessLists.resolve("", source); err != nil {
		return err
	}
	switch {
	case c.PrefetchRate == 0:
		c.PrefetchRate = DefaultPrefetchRate
	case c.PrefetchRate < 0 || c.PrefetchRate > 10000:
		return badKey("prefetch_rate", "%d is out of range (1 to 10000 requests per second)", c.PrefetchRate)
	}
	switch {
	case c.MaxIdPRequests == 0:
		c.MaxIdPRequests = DefaultMaxInFlight
	case c.MaxIdPRequests < 0 || c.MaxIdPRequests > 4096:
		return badKey("max_idp_requests", "%d is out of range (1 to 4096)", c.MaxIdPRequests)
	}
	if len(c.Apps) == 0 {
		return badKey("apps", "no app is configured; add an [apps.NAME] table with client_id")
	}
	for _, name := range sortedKeys(c.Apps) {
		a, key := c.Apps[name], "apps."+name
		if !nameRE.MatchString(name) {
			return badKey(key, "app name %q must be 1-63 letters, digits, '.', '_' or '-'", name)
		}
		if a == nil {
			return badKey(key, "empty app")
		}
		if a.ClientID == "" {
			return badKey(key, "client_id is required")
		}
		if !IsGUID(a.ClientID) {
			return badKey(key+".client_id", "%q is not a GUID (the app's Application (client) ID)", a.ClientID)
		}
		a.ClientID = strings.ToLower(a.ClientID)
		if len(a.Scopes) == 0 {
			a.Scopes = []string{DefaultScope}
		}
		for _, s := range a.Scopes {
			if err := ValidateScope(s); err != nil {
				return badKey(key+".scopes", "%v", err)
			}
		}
	}
	if len(c.Tenants) == 0 {
		return badKey("tenants", "no tenant is configured; add a [tenants.NAME] table with id and app")
	}
	seen := map[string]string{} // name, id or domain -> tenant name
	claim := func(alias, tenant, key string) error {
		if other, dup := seen[alias]; dup && other != tenant {
			return badKey(key, "%q is already used by tenant %q", alias, other)
		}
		seen[alias] = tenant
		return nil
	}
	for _, name := range sortedKeys(c.Tenants) {
		t, key := c.Tenants[name], "tenants."+name
		if !nameRE.MatchString(name) {
			return badKey(key, "tenant name %q must be 1-63 letters, digits, '.', '_' or '-'", name)
		}
		if IsGUID(name) {
			return badKey(key, "tenant name %q must not be a GUID; name the tenant and put the GUID in id", name)
		}
		if t == nil {
			return badKey(key, "empty tenant")
		}
		if t.ID == "" {
			return badKey(key, "id is required (the tenant's Directory (tenant) ID, a GUID)")
		}
		if !IsGUID(t.ID) {
			return badKey(key+".id", "%q is not a GUID (the tenant's Directory (tenant) ID)", t.ID)
		}
		t.ID = strings.ToLower(t.ID)
		if t.App == "" {
			if len(c.Apps) != 1 {
				return badKey(key, "app is required when more than one app is configured")
			}
			t.App = sortedKeys(c.Apps)[0]
		}
		if _, ok := c.Apps[t.App]; !ok {
			return badKey(key+".app", "%q is not a configured app (configured: %s)", t.App, strings.Join(sortedKeys(c.Apps), ", "))
		}
		if err := claim(strings.ToLower(name), name, key); err != nil {
			return err
		}
		if err := claim(t.ID, name, key+".id"); err != nil {
			return err
		}
		t.access = c.access
		if !t.AccessLists.empty() {
			if t.access, err = t.AccessLists.resolve(key, key+" allow lists"); err != nil {
				return err
			}
		}
		for i, d := range t.Domains {
			d = strings.ToLower(d)
			if !domainRE.MatchString(d) {
				return badKey(key+".domains", "%q is not a domain name", t.Domains[i])
			}
			t.Domains[i] = d
			if err := claim(d, name, key+".domains"); err != nil {
				return err
			}
		}
	}
	return nil
}

func durationDefault(d *Duration, key string, def, max time.Duration) error {
	switch {
	case *d == 0:
		*d = Duration(def)
	case *d < 0 || time.Duration(*d) > max:
		return badKey(key, "%s is out of range (more than 0, at most %s)", time.Duration(*d), max)
	}
	return nil
}

// ValidateScope checks that s is a client-credentials scope: an absolute
// resource URI (or GUID) followed by "/.default".
func ValidateScope(s string) error {
	res, ok := strings.CutSuffix(s, "/.default")
	switch {
	case s == "":
		return errors.New("empty scope")
	case len(s) > 512:
		return fmt.Errorf("scope of %d bytes is too long", len(s))
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

// keyLines maps every dotted key path in a TOML document (as Validate
// names them, e.g. "tenants.contoso.id") to the line it is defined on.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			var line int
			table, line = nodeKey(&p, e.Key())
			lines[strings.Join(table, ".")] = line
		case unstable.KeyValue:
			recordKeyValue(&p, lines, table, e)
		}
	}
	return lines
}

// recordKeyValue records the line of a key/value and of every table it
// implies (a dotted key or an inline table), keeping earlier definitions.
func recordKeyValue(p *unstable.Parser, lines map[string]int, prefix []string, kv *unstable.Node) {
	key, line := nodeKey(p, kv.Key())
	path := append(append([]string(nil), prefix...), key...)
	for i := len(prefix) + 1; i <= len(path); i++ {
		k := strings.Join(path[:i], ".")
		if _, ok := lines[k]; !ok {
			lines[k] = line
		}
	}
	if v := kv.Value(); v.Kind == unstable.InlineTable {
		it := v.Children()
		for it.Next() {
			recordKeyValue(p, lines, path, it.Node())
		}
	}
}

// nodeKey returns the parts of a key and the line it starts on.
func nodeKey(p *unstable.Parser, it unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

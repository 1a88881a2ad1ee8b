package broker

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// setDefaults fills in the keys a document leaves out. A tenant that names
// no app gets the only app, when there is exactly one. The authority host
// and an app's scopes depend on its cloud: resolveApp fills them in.
func (d *document) setDefaults() {
	setDefault(&d.Keystore, DefaultKeystore)
	setDefault(&d.RefreshBefore, duration(DefaultRefreshBefore))
	setDefault(&d.MinValid, duration(DefaultMinValid))
	setDefault(&d.IdPTimeout, duration(DefaultIdPTimeout))
	setDefault(&d.KeystoreTimeout, duration(DefaultKeystoreTimeout))
	setDefault(&d.PrefetchConcurrency, DefaultPrefetch)
	setDefault(&d.PrefetchRate, DefaultPrefetchRate)
	setDefault(&d.MaxIdPRequests, DefaultMaxInFlight)
	d.Limits.setDefaults()
	onlyApp := ""
	for name := range d.Apps {
		onlyApp = name
	}
	for _, t := range d.Tenants {
		if t != nil && t.App == "" && len(d.Apps) == 1 {
			t.App = onlyApp
		}
	}
}

func setDefault[T any](p **T, v T) {
	if *p == nil {
		*p = &v
	}
}

// resolve validates a document with its defaults filled in and builds the
// Config: names, GUIDs and domains are normalised to lower case where
// Entra ID ignores case, and user and group names become ids.
func resolve(d *document) (*Config, error) {
	c := &Config{authorityHost: DefaultAuthorityHost}
	var err error
	if d.AuthorityHost != nil {
		if c.authorityHost, err = resolveAuthority("authority_host", *d.AuthorityHost); err != nil {
			return nil, err
		}
	}
	if c.keystore, err = resolveKeystore(*d.Keystore); err != nil {
		return nil, err
	}
	if c.credentialsDir, err = resolveCredentialsDir(c.keystore, d.CredentialsDir); err != nil {
		return nil, err
	}
	if err := resolveScalars(c, d); err != nil {
		return nil, err
	}
	ids := newIDCache()
	source := "the default (only the daemon's uid and root)"
	if !d.AccessLists.empty() {
		source = "the top-level allow lists"
	}
	if c.access, err = d.AccessLists.resolve("", source, ids); err != nil {
		return nil, err
	}
	if c.apps, err = resolveApps(d.Apps, d.AuthorityHost != nil, c.authorityHost); err != nil {
		return nil, err
	}
	if c.tenants, err = resolveTenants(d, c.access, ids); err != nil {
		return nil, err
	}
	return c, nil
}

func resolveAuthority(key, host string) (string, error) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", badKey(key, "%q must be an https URL with no path, e.g. %q", host, DefaultAuthorityHost)
	}
	return "https://" + u.Host, nil
}

func resolveKeystore(name string) (string, error) {
	switch name {
	case "keyring", "systemd", "directory", "memory":
		return name, nil
	}
	return "", badKey("keystore", "%q is not a keystore (use keyring, systemd, directory or memory)", clip(name))
}

// resolveCredentialsDir checks credentials_dir: required with the
// directory keystore, an absolute path, and meaningless with any other.
func resolveCredentialsDir(store string, dir *string) (string, error) {
	switch {
	case store != "directory" && dir != nil:
		return "", badKey("credentials_dir", "is only used with keystore = \"directory\" (keystore is %q)", store)
	case store != "directory":
		return "", nil
	case dir == nil:
		return "", badKey("credentials_dir", "is required with keystore = \"directory\": the directory holding one file per app, named by its client id")
	}
	return absolutePath("credentials_dir", *dir)
}

// absolutePath checks that p is a clean absolute path.
func absolutePath(key, p string) (string, error) {
	if !filepath.IsAbs(p) || strings.ContainsFunc(p, unicode.IsControl) || len(p) > 4096 {
		return "", badKey(key, "%q must be an absolute path", clip(p))
	}
	return filepath.Clean(p), nil
}

// resolveScalars checks the ranges of the durations and numbers.
func resolveScalars(c *Config, d *document) error {
	var err error
	if c.refreshBefore, err = durationIn("refresh_before", *d.RefreshBefore, 24*time.Hour); err != nil {
		return err
	}
	if c.minValid, err = durationIn("min_valid", *d.MinValid, 24*time.Hour); err != nil {
		return err
	}
	if c.idpTimeout, err = durationIn("idp_timeout", *d.IdPTimeout, 10*time.Minute); err != nil {
		return err
	}
	if c.keystoreTimeout, err = durationIn("keystore_timeout", *d.KeystoreTimeout, 5*time.Minute); err != nil {
		return err
	}
	if c.prefetchConcurrency, err = intIn("prefetch_concurrency", *d.PrefetchConcurrency, 1024, ""); err != nil {
		return err
	}
	if c.prefetchRate, err = intIn("prefetch_rate", *d.PrefetchRate, 10000, " requests per second"); err != nil {
		return err
	}
	if c.maxIdPRequests, err = intIn("max_idp_requests", *d.MaxIdPRequests, 4096, ""); err != nil {
		return err
	}
	c.limits, err = d.Limits.resolve()
	return err
}

// durationIn checks 0 < d <= max.
func durationIn(key string, d duration, max time.Duration) (time.Duration, error) {
	if v := time.Duration(d); v > 0 && v <= max {
		return v, nil
	}
	return 0, badKey(key, "%s is out of range (more than 0, at most %s)", time.Duration(d), max)
}

// intIn checks 1 <= v <= max; unit follows max in the error.
func intIn(key string, v, max int, unit string) (int, error) {
	if v >= 1 && v <= max {
		return v, nil
	}
	return 0, badKey(key, "%d is out of range (1 to %d%s)", v, max, unit)
}

// resolveApps validates the apps, sorted by name. top is the top-level
// authority host, which apps without their own use when explicit.
func resolveApps(apps map[string]*appTable, explicit bool, top string) ([]AppConfig, error) {
	if len(apps) == 0 {
		return nil, badKey("apps", "no app is configured; add an [apps.NAME] table with client_id")
	}
	out := make([]AppConfig, 0, len(apps))
	for _, name := range sortedKeys(apps) {
		a, err := resolveApp(name, apps[name], explicit, top)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func resolveApp(name string, a *appTable, explicit bool, top string) (AppConfig, error) {
	key := keyPath("apps", name)
	switch {
	case !nameRE.MatchString(name):
		return AppConfig{}, badKey(key, "app name %q must be 1-63 letters, digits, '.', '_' or '-'", name)
	case a == nil:
		return AppConfig{}, badKey(key, "empty app")
	case a.ClientID == "":
		return AppConfig{}, badKey(key, "client_id is required")
	case !IsGUID(a.ClientID):
		return AppConfig{}, badKey(key+".client_id", "%q is not a GUID (the app's Application (client) ID)", a.ClientID)
	}
	ac, cl, err := resolveCloud(key, a, explicit, top)
	if err != nil {
		return AppConfig{}, err
	}
	if len(a.Scopes) == 0 {
		a.Scopes = []string{cl.scope}
	}
	for _, s := range a.Scopes {
		if err := ValidateScope(s); err != nil {
			return AppConfig{}, badKey(key+".scopes", "%v", err)
		}
	}
	if n := len(canonicalScopes(a.Scopes)); n > 1 {
		return AppConfig{}, badKey(key+".scopes", "%d different scopes: a client-credentials token is for one resource, so name one /.default scope (callers may ask for others in allowed_scopes)", n)
	}
	allowed := a.Scopes
	if a.AllowedScopes != nil {
		allowed = make([]string, 0, len(a.AllowedScopes))
		for _, s := range a.AllowedScopes {
			scope := resourceScope(s)
			if err := ValidateScope(scope); err != nil {
				return AppConfig{}, badKey(key+".allowed_scopes", "%q is neither a resource nor its /.default scope: %v", s, err)
			}
			allowed = append(allowed, scope)
		}
	}
	roles, err := resolveRoles(key+".required_roles", a.RequiredRoles)
	if err != nil {
		return AppConfig{}, err
	}
	ac.Name, ac.ClientID, ac.Scopes, ac.AllowedScopes = name, strings.ToLower(a.ClientID), a.Scopes, canonicalScopes(allowed)
	ac.RequiredRoles = roles
	if a.AssertionFile != nil {
		if ac.AssertionFile, err = absolutePath(key+".assertion_file", *a.AssertionFile); err != nil {
			return AppConfig{}, err
		}
	}
	if a.SendX5C != nil {
		ac.SendX5C = *a.SendX5C
		if ac.AssertionFile != "" {
			return AppConfig{}, badKey(key+".send_x5c", "applies to a certificate credential; the app uses assertion_file")
		}
	}
	return ac, nil
}

// resolveCloud finds an app's cloud and its authority host: the app's
// authority_host, else the top-level one when explicit, else the cloud's.
// A login host of Microsoft's in another cloud than the one the app names
// is an error.
func resolveCloud(key string, a *appTable, explicit bool, top string) (AppConfig, cloud, error) {
	name := DefaultCloud
	if a.Cloud != nil {
		name = *a.Cloud
	}
	cl, ok := cloudNamed(name)
	if !ok {
		return AppConfig{}, cloud{}, badKey(key+".cloud", "%q is not a cloud (use %s)", clip(name), cloudNames())
	}
	ac := AppConfig{Cloud: cl.name, AuthorityHost: cl.authorityHost}
	switch {
	case a.AuthorityHost != nil:
		host, err := resolveAuthority(key+".authority_host", *a.AuthorityHost)
		if err != nil {
			return AppConfig{}, cloud{}, err
		}
		if a.Cloud != nil && otherCloud(cl, host) {
			return AppConfig{}, cloud{}, badKey(key+".authority_host", "%s is the login host of another cloud than %s.cloud = %q (%s); leave it out or set it to %s",
				host, key, cl.name, cl.authorityHost, cl.authorityHost)
		}
		ac.AuthorityHost = host
	case explicit:
		if a.Cloud != nil && otherCloud(cl, top) {
			return AppConfig{}, cloud{}, badKey("authority_host", "%s is the login host of another cloud than %s.cloud = %q (%s); leave authority_host out (each app's cloud then chooses its host) or set %s.authority_host",
				top, key, cl.name, cl.authorityHost, key)
		}
		ac.AuthorityHost = top
	}
	return ac, cl, nil
}

// resourceScope is s when it is a /.default scope, else the /.default
// scope of s, a resource: allowed_scopes takes either.
func resourceScope(s string) string {
	if strings.HasSuffix(s, "/.default") {
		return s
	}
	return strings.TrimSuffix(s, "/") + "/.default"
}

// aliases are the names, ids and domains of the tenants resolved so far,
// each to its tenant: no two tenants may share one.
type aliases map[string]string

func (s aliases) claim(alias, tenant, key string) error {
	if other, dup := s[alias]; dup && other != tenant {
		return badKey(key, "%q is already used by tenant %q", alias, other)
	}
	s[alias] = tenant
	return nil
}

// resolveTenants validates the tenants, sorted by name. top is the
// top-level access, for tenants with no lists of their own.
func resolveTenants(d *document, top *Access, ids *idCache) ([]TenantConfig, error) {
	if len(d.Tenants) == 0 {
		return nil, badKey("tenants", "no tenant is configured; add a [tenants.NAME] table with id and app")
	}
	seen := make(aliases, 3*len(d.Tenants))
	out := make([]TenantConfig, 0, len(d.Tenants))
	for _, name := range sortedKeys(d.Tenants) {
		t, err := resolveTenant(d, name, top, ids, seen)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func resolveTenant(d *document, name string, top *Access, ids *idCache, seen aliases) (TenantConfig, error) {
	t, key := d.Tenants[name], keyPath("tenants", name)
	if err := checkTenant(d, name, key, t); err != nil {
		return TenantConfig{}, err
	}
	tc := TenantConfig{Name: name, ID: strings.ToLower(t.ID), App: t.App, Access: top}
	if err := seen.claim(strings.ToLower(name), name, key); err != nil {
		return TenantConfig{}, err
	}
	if err := seen.claim(tc.ID, name, key+".id"); err != nil {
		return TenantConfig{}, err
	}
	if !t.AccessLists.empty() {
		var err error
		if tc.Access, err = t.AccessLists.resolve(key, key+" allow lists", ids); err != nil {
			return TenantConfig{}, err
		}
	}
	for _, dom := range t.Domains {
		ld := strings.ToLower(dom)
		if !domainRE.MatchString(ld) {
			return TenantConfig{}, badKey(key+".domains", "%q is not a domain name", dom)
		}
		if err := seen.claim(ld, name, key+".domains"); err != nil {
			return TenantConfig{}, err
		}
		tc.Domains = append(tc.Domains, ld)
	}
	return tc, nil
}

// checkTenant checks a tenant's name, id and app.
func checkTenant(d *document, name, key string, t *tenantTable) error {
	switch {
	case !nameRE.MatchString(name):
		return badKey(key, "tenant name %q must be 1-63 letters, digits, '.', '_' or '-'", name)
	case IsGUID(name):
		return badKey(key, "tenant name %q must not be a GUID; name the tenant and put the GUID in id", name)
	case t == nil:
		return badKey(key, "empty tenant")
	case t.ID == "":
		return badKey(key, "id is required (the tenant's Directory (tenant) ID, a GUID)")
	case !IsGUID(t.ID):
		return badKey(key+".id", "%q is not a GUID (the tenant's Directory (tenant) ID)", t.ID)
	case t.App == "":
		return badKey(key, "app is required when more than one app is configured")
	}
	if _, ok := d.Apps[t.App]; !ok {
		return badKey(key+".app", "%q is not a configured app (configured: %s)", t.App, strings.Join(sortedKeys(d.Apps), ", "))
	}
	return nil
}

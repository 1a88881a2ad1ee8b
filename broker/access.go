package broker

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
)

// Caller is who is calling, as the kernel reported it for the connection
// (SO_PEERCRED, SO_PEERGROUPS).
type Caller struct {
	UID, GID uint32
	// Groups are the caller's supplementary groups.
	Groups []uint32
	PID    int32
}

// Access is an allow list: the uids and gids that may get a tenant's
// tokens. The daemon's own uid and root are always allowed: they can read
// the credential itself.
type Access struct {
	// Source names the configuration that produced the list, for audit
	// reasons ("tenants.contoso", "top level", "default").
	Source string
	UIDs   []uint32
	GIDs   []uint32
}

// AccessLists are the allow_* keys of the top level or a tenant.
type AccessLists struct {
	// AllowUIDs are numeric user ids.
	AllowUIDs []int64 `toml:"allow_uids"`
	// AllowUsers are user names, resolved when the configuration loads.
	AllowUsers []string `toml:"allow_users"`
	// AllowGroups are group names, resolved when the configuration loads;
	// a caller whose primary or supplementary group is listed is allowed.
	AllowGroups []string `toml:"allow_groups"`
}

func (l AccessLists) empty() bool {
	return len(l.AllowUIDs) == 0 && len(l.AllowUsers) == 0 && len(l.AllowGroups) == 0
}

// resolve turns names into ids, looking them up through ids. key prefixes
// error keys ("" or "tenants.x").
func (l AccessLists) resolve(key, source string, ids *idCache) (*Access, error) {
	k := func(name string) string {
		if key == "" {
			return name
		}
		return key + "." + name
	}
	a := &Access{Source: source}
	for _, id := range l.AllowUIDs {
		if id < 0 || id > 1<<32-2 {
			return nil, badKey(k("allow_uids"), "%d is not a uid", id)
		}
		a.UIDs = append(a.UIDs, uint32(id))
	}
	for _, name := range l.AllowUsers {
		id, ok := ids.user(name)
		if !ok {
			return nil, badKey(k("allow_users"), "no user %q on this system", name)
		}
		a.UIDs = append(a.UIDs, id)
	}
	for _, name := range l.AllowGroups {
		id, ok := ids.group(name)
		if !ok {
			return nil, badKey(k("allow_groups"), "no group %q on this system", name)
		}
		a.GIDs = append(a.GIDs, id)
	}
	return a, nil
}

// idCache remembers the user and group lookups of one configuration, so
// that thousands of tenants naming the same group read the user and group
// databases once per name.
type idCache struct {
	users, groups map[string]idLookup
}

// idLookup is the result of one lookup: the id, or ok false for no such
// name.
type idLookup struct {
	id uint32
	ok bool
}

func newIDCache() *idCache {
	return &idCache{users: map[string]idLookup{}, groups: map[string]idLookup{}}
}

// user is the uid of the user name.
func (c *idCache) user(name string) (uint32, bool) {
	r, done := c.users[name]
	if !done {
		if u, err := user.Lookup(name); err == nil {
			r = parseID(u.Uid)
		}
		c.users[name] = r
	}
	return r.id, r.ok
}

// group is the gid of the group name.
func (c *idCache) group(name string) (uint32, bool) {
	r, done := c.groups[name]
	if !done {
		if g, err := user.LookupGroup(name); err == nil {
			r = parseID(g.Gid)
		}
		c.groups[name] = r
	}
	return r.id, r.ok
}

// parseID parses a numeric uid or gid as the user database reports it.
func parseID(s string) idLookup {
	id, err := strconv.ParseUint(s, 10, 32)
	return idLookup{id: uint32(id), ok: err == nil}
}

// clone is a copy of a that shares no slice with it.
func (a *Access) clone() *Access {
	if a == nil {
		return nil
	}
	return &Access{Source: a.Source, UIDs: slices.Clone(a.UIDs), GIDs: slices.Clone(a.GIDs)}
}

// Allows reports whether c may get tokens under a, and why.
func (a *Access) Allows(c Caller) (bool, string) {
	switch {
	case c.UID == 0:
		return true, "root"
	case c.UID == daemonUID:
		return true, "the daemon's own uid"
	case slices.Contains(a.UIDs, c.UID):
		return true, fmt.Sprintf("uid %d is allowed by %s", c.UID, a.Source)
	case slices.Contains(a.GIDs, c.GID):
		return true, fmt.Sprintf("gid %d is allowed by %s", c.GID, a.Source)
	}
	for _, g := range c.Groups {
		if slices.Contains(a.GIDs, g) {
			return true, fmt.Sprintf("group %d is allowed by %s", g, a.Source)
		}
	}
	return false, fmt.Sprintf("uid %d is not allowed by %s", c.UID, a.Source)
}

// IsAdmin reports whether c may administer the daemon (set credentials):
// only the daemon's own uid and root.
func IsAdmin(c Caller) bool { return c.UID == 0 || c.UID == daemonUID }

// daemonUID is the uid the daemon runs as; it never changes.
var daemonUID = uint32(os.Getuid())

// Authorize decides whether c may get tokens for the tenant named by
// name (name, id or domain), and why. tenant is the tenant's configured
// name, the same for each of its names, or "" for every name that matches
// no tenant, so a decision can be cached under it whatever the caller
// sends. An unknown name is allowed only to admins (the daemon's uid and
// root), who then learn it is unknown; anyone else is denied it as they are
// denied a tenant they may not use, and learns nothing about which tenants
// exist.
func (b *Broker) Authorize(c Caller, name string) (tenant string, allowed bool, reason string) {
	t := b.world().find(name)
	if t == nil {
		if ok, why := adminsOnly.Allows(c); ok {
			return "", true, "unknown tenant; " + why
		}
		return "", false, fmt.Sprintf("unknown tenant; uid %d is not an admin", c.UID)
	}
	ok, why := t.access.Load().Allows(c)
	return t.name, ok, why
}

// adminsOnly is the allow list of names that match no tenant.
var adminsOnly = &Access{Source: "no list (unknown tenant)"}

// Package users keeps the platform's users in the cluster KV: their class
// of service, their access/secret keys and their admission limits, and the
// limits of each class. The management API (package control) changes them;
// signature checks and the gateway's admission read them through Cache,
// which keeps a KV read off the path of every request.
//
// Records:
//
//	qufop/users/<name>          User (JSON)
//	qufop/access-keys/<AK>      the name of the user the key belongs to
//	qufop/classes/<class>       tenant.Limits (JSON)
//
// Every change is a check-and-set, as ufop.Keeper's, so that two
// control-plane processes never lose each other's updates.
//
// Key rotation replaces the pair at once: the old pair has no grace period
// and stops working as soon as the caches forget it (Cache's TTL, at most
// a second). A rotation is most often made because a key leaked, and a
// grace period would keep the leaked key working.
package users

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// Where the records live in the KV.
const (
	UserPrefix  = "qufop/users/"
	KeyPrefix   = "qufop/access-keys/"
	ClassPrefix = "qufop/classes/"
)

// StatusExists is Qiniu's "target already exists" (as ufop.StatusExists).
const StatusExists = 614

// maxCASRetries bounds the retry loop of an update under contention.
const maxCASRetries = 64

// User is one user of the platform.
type User struct {
	Name  string       `json:"name"`
	Class tenant.Class `json:"class"`
	// Keys holds the current key pair (one: rotation replaces it).
	Keys []auth.Credentials `json:"keys"`
	// Limits override the class's limits field by field.
	Limits    tenant.Limits `json:"limits"`
	CreatedAt time.Time     `json:"created_at"`
}

// AccessKey is the user's current access key ("" if it has none).
func (u *User) AccessKey() string {
	if len(u.Keys) == 0 {
		return ""
	}
	return u.Keys[0].AccessKey
}

// String is for logs: it never shows a secret key.
func (u *User) String() string { return fmt.Sprintf("user %s (%s)", u.Name, u.Class) }

// nameRE is the rule of UFOP names (ufop.CheckName), so that a user name
// can prefix a UFOP name and be a path segment and a Consul key as it is.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$`)

// CheckName validates a user name: 3 to 50 lower-case letters, digits and
// '-', not starting or ending with '-'.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return errs.BadRequest("bad user name %q: want 3-50 of [a-z0-9-], not starting or ending with '-'", name)
	}
	return nil
}

// CheckLimits validates limits as the API takes them.
func CheckLimits(l tenant.Limits) error {
	switch {
	case l.RPS < 0:
		return errs.BadRequest("bad rps %g: want 0 (the class's) or more", l.RPS)
	case l.Burst < 0:
		return errs.BadRequest("bad burst %d: want 0 (the class's) or more", l.Burst)
	case l.RPS > 0 && l.Burst < 1:
		return errs.BadRequest("bad burst %d: a rate of %g/s needs a burst of at least 1", l.Burst, l.RPS)
	}
	for name, n := range l.Commands {
		if strings.TrimSpace(name) == "" {
			return errs.BadRequest("bad command limit: empty command name")
		}
		if n < 1 {
			return errs.BadRequest("bad limit %d for command %s: want at least 1 step at once", n, name)
		}
	}
	return nil
}

// ErrNoSuchUser is the cause of the 404 for an unknown name.
var ErrNoSuchUser = errors.New("no such user")

func noSuch(name string) error {
	return errs.Wrap(http.StatusNotFound, ErrNoSuchUser, "no such user %q", name)
}

// akRE matches the access keys auth.NewCredentials makes (URL-safe base64)
// with room to spare.
var akRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Store keeps users and class limits in a cluster.KV.
type Store struct {
	kv       cluster.KV
	reserved []string
	now      func() time.Time
	newKeys  func() auth.Credentials
}

// NewStore returns a store over kv. reserved names (the admin user, whose
// keys are the platform's and not in the store) cannot be created.
func NewStore(kv cluster.KV, reserved ...string) *Store {
	return &Store{kv: kv, reserved: reserved, now: time.Now, newKeys: auth.NewCredentials}
}

func userKey(name string) string { return UserPrefix + name }
func akKey(ak string) string     { return KeyPrefix + ak }

// Create stores a new user of class with a new key pair, returned once in
// the user's Keys. A taken name is a 614.
func (s *Store) Create(ctx context.Context, name string, class tenant.Class) (*User, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if slices.Contains(s.reserved, name) {
		return nil, errs.New(StatusExists, "user %q already exists (it is the platform's)", name)
	}
	if _, err := tenant.ParseClass(string(class)); err != nil {
		return nil, errs.BadRequest("%v", err)
	}
	if class == "" {
		class = tenant.Free
	}
	if _, _, err := s.get(ctx, name); err == nil {
		return nil, errs.New(StatusExists, "user %q already exists", name)
	} else if !errors.Is(err, ErrNoSuchUser) {
		return nil, err
	}
	creds := s.newKeys()
	// The key's index first: a user record never names a key that lookups
	// cannot find. An index left by a failed create names a user that
	// does not exist (or does not hold the key), which lookups refuse.
	if err := s.putKey(ctx, creds.AccessKey, name); err != nil {
		return nil, err
	}
	u := User{Name: name, Class: class, Keys: []auth.Credentials{creds}, CreatedAt: s.now().UTC()}
	b, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	ok, err := s.kv.CAS(ctx, userKey(name), b, 0)
	if err != nil || !ok {
		_ = s.kv.Delete(ctx, akKey(creds.AccessKey))
	}
	if err != nil {
		return nil, errs.Failed(err, "storing user %q failed", name)
	}
	if !ok {
		return nil, errs.New(StatusExists, "user %q already exists", name)
	}
	return &u, nil
}

func (s *Store) putKey(ctx context.Context, ak, name string) error {
	ok, err := s.kv.CAS(ctx, akKey(ak), []byte(name), 0)
	if err != nil {
		return errs.Failed(err, "storing the keys of user %q failed", name)
	}
	if !ok { // 90 random bits: never, unless the generator is broken
		return errs.New(http.StatusConflict, "access key already in use: retry")
	}
	return nil
}

// Get returns the user called name.
func (s *Store) Get(ctx context.Context, name string) (*User, error) {
	u, _, err := s.get(ctx, name)
	return u, err
}

func (s *Store) get(ctx context.Context, name string) (*User, uint64, error) {
	b, idx, err := s.kv.Get(ctx, userKey(name))
	if errors.Is(err, cluster.ErrNotFound) {
		return nil, 0, noSuch(name)
	}
	if err != nil {
		return nil, 0, errs.Failed(err, "reading user %q failed", name)
	}
	var u User
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, 0, errs.Failed(err, "user %q: corrupt record", name)
	}
	return &u, idx, nil
}

// List returns every user, sorted by name.
func (s *Store) List(ctx context.Context) ([]User, error) {
	pairs, err := s.kv.List(ctx, UserPrefix)
	if err != nil {
		return nil, errs.Failed(err, "listing users failed")
	}
	out := make([]User, 0, len(pairs))
	for _, p := range pairs {
		if strings.Contains(strings.TrimPrefix(p.Key, UserPrefix), "/") {
			continue // not a record
		}
		var u User
		if err := json.Unmarshal(p.Value, &u); err != nil {
			return nil, errs.Failed(err, "%s: corrupt record", p.Key)
		}
		out = append(out, u)
	}
	return out, nil
}

// update applies fn to the user called name with check-and-set, re-reading
// and re-applying fn when another writer got there first.
func (s *Store) update(ctx context.Context, name string, fn func(*User) error) (*User, error) {
	for range maxCASRetries {
		u, idx, err := s.get(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := fn(u); err != nil {
			return nil, err
		}
		b, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		ok, err := s.kv.CAS(ctx, userKey(name), b, idx)
		if err != nil {
			return nil, errs.Failed(err, "storing user %q failed", name)
		}
		if ok {
			return u, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return nil, errs.New(http.StatusConflict, "user %q: too many concurrent updates, retry", name)
}

// Rotate replaces the user's key pair with a new one, returned once. The
// old pair stops working at once (see the package's comment).
func (s *Store) Rotate(ctx context.Context, name string) (auth.Credentials, error) {
	if _, _, err := s.get(ctx, name); err != nil {
		return auth.Credentials{}, err
	}
	creds := s.newKeys()
	if err := s.putKey(ctx, creds.AccessKey, name); err != nil {
		return auth.Credentials{}, err
	}
	var old []auth.Credentials
	if _, err := s.update(ctx, name, func(u *User) error {
		old = u.Keys
		u.Keys = []auth.Credentials{creds}
		return nil
	}); err != nil {
		_ = s.kv.Delete(ctx, akKey(creds.AccessKey))
		return auth.Credentials{}, err
	}
	// A stale index left by a failure here is harmless: lookups check
	// that the record still holds the key.
	for _, c := range old {
		_ = s.kv.Delete(ctx, akKey(c.AccessKey))
	}
	return creds, nil
}

// SetLimits replaces the user's own limits (the zero Limits: the class's).
func (s *Store) SetLimits(ctx context.Context, name string, l tenant.Limits) (*User, error) {
	if err := CheckLimits(l); err != nil {
		return nil, err
	}
	return s.update(ctx, name, func(u *User) error {
		u.Limits = l
		return nil
	})
}

// Delete removes the user and its keys.
func (s *Store) Delete(ctx context.Context, name string) error {
	u, _, err := s.get(ctx, name)
	if err != nil {
		return err
	}
	// The record first: its keys stop working even if removing an index
	// fails (a stale index names no user).
	if err := s.kv.Delete(ctx, userKey(name)); err != nil {
		return errs.Failed(err, "deleting user %q failed", name)
	}
	for _, c := range u.Keys {
		_ = s.kv.Delete(ctx, akKey(c.AccessKey))
	}
	return nil
}

// ByAccessKey returns the user holding access key ak and its credentials;
// a 404 if nobody does.
func (s *Store) ByAccessKey(ctx context.Context, ak string) (*User, auth.Credentials, error) {
	if !akRE.MatchString(ak) {
		// Not a key this store makes: no read, and nothing odd in a KV path.
		return nil, auth.Credentials{}, errs.Wrap(http.StatusNotFound, ErrNoSuchUser, "no such access key")
	}
	b, _, err := s.kv.Get(ctx, akKey(ak))
	if errors.Is(err, cluster.ErrNotFound) {
		return nil, auth.Credentials{}, errs.Wrap(http.StatusNotFound, ErrNoSuchUser, "no such access key")
	}
	if err != nil {
		return nil, auth.Credentials{}, errs.Failed(err, "reading an access key failed")
	}
	u, err := s.Get(ctx, string(b))
	if err != nil {
		return nil, auth.Credentials{}, err
	}
	for _, c := range u.Keys {
		if c.AccessKey == ak {
			return u, c, nil
		}
	}
	return nil, auth.Credentials{}, errs.Wrap(http.StatusNotFound, ErrNoSuchUser, "no such access key")
}

func classKey(c tenant.Class) string { return ClassPrefix + string(c) }

// ClassLimits returns the limits of class (none set: the zero Limits).
func (s *Store) ClassLimits(ctx context.Context, class tenant.Class) (tenant.Limits, error) {
	var l tenant.Limits
	b, _, err := s.kv.Get(ctx, classKey(class))
	if errors.Is(err, cluster.ErrNotFound) {
		return l, nil
	}
	if err != nil {
		return l, errs.Failed(err, "reading the limits of class %s failed", class)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, errs.Failed(err, "class %s: corrupt limits", class)
	}
	return l, nil
}

// SetClassLimits replaces the limits of class.
func (s *Store) SetClassLimits(ctx context.Context, class tenant.Class, l tenant.Limits) error {
	c, err := tenant.ParseClass(string(class))
	if err != nil || class == "" {
		return errs.BadRequest("unknown class %q: want free or paid", class)
	}
	if err := CheckLimits(l); err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	for range maxCASRetries {
		_, idx, err := s.kv.Get(ctx, classKey(c))
		if err != nil && !errors.Is(err, cluster.ErrNotFound) {
			return errs.Failed(err, "reading the limits of class %s failed", c)
		}
		ok, err := s.kv.CAS(ctx, classKey(c), b, idx)
		if err != nil {
			return errs.Failed(err, "storing the limits of class %s failed", c)
		}
		if ok {
			return nil
		}
	}
	return errs.New(http.StatusConflict, "class %s: too many concurrent updates, retry", c)
}

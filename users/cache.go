package users

import (
	"context"
	"errors"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/tenant"
)

// Cache defaults.
const (
	// DefaultTTL is how long an answer is reused: a rotated or deleted key
	// stops working, and a change of limits applies, within it.
	DefaultTTL = time.Second
	// DefaultSize bounds the entries of each of the cache's maps, so that
	// a flood of made-up access keys cannot grow it.
	DefaultSize = 4096
	// readTimeout bounds one KV read made for a lookup (auth.Lookup has
	// no context).
	readTimeout = 5 * time.Second
)

// Cache answers who holds an access key, and a user's class and limits,
// from the Store, reusing each answer for TTL. It is read on every signed
// request and on every request of the gateway's admission: without it,
// each would cost a KV read. Answers that nobody is known (an unknown key,
// a user not in the store) are kept as well, so that made-up keys cost one
// read per TTL each, and the LRU bound keeps their number in check. A
// failed read is not kept: the next call reads again. Concurrent misses of
// one entry make one read (a flood would otherwise send a burst of reads
// each time an entry expires).
type Cache struct {
	store  *Store
	static auth.Lookup
	ttl    time.Duration
	now    func() time.Time

	keys    *lru.Cache[string, keyEntry]
	users   *lru.Cache[string, userEntry]
	classes *lru.Cache[tenant.Class, classEntry]
	reads   singleflight.Group // by "k/"+access key, "u/"+user, "c/"+class
}

type keyEntry struct {
	at       time.Time
	sk, user string
	ok       bool
}

type userEntry struct {
	at   time.Time
	user *User // nil: not in the store
}

type classEntry struct {
	at     time.Time
	limits tenant.Limits
}

// NewCache returns a cache over store. static answers first (the admin's
// keys, which are not in the store and always win); it may be nil.
// ttl ≤ 0 means DefaultTTL, size ≤ 0 DefaultSize.
func NewCache(store *Store, static auth.Lookup, ttl time.Duration, size int) *Cache {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if size <= 0 {
		size = DefaultSize
	}
	keys, _ := lru.New[string, keyEntry](size)
	users, _ := lru.New[string, userEntry](size)
	classes, _ := lru.New[tenant.Class, classEntry](len(tenant.Classes) + 1)
	return &Cache{store: store, static: static, ttl: ttl, now: time.Now, keys: keys, users: users, classes: classes}
}

func (c *Cache) fresh(at time.Time) bool { return c.now().Sub(at) < c.ttl }

// Lookup implements auth.Lookup: the secret key and user name of an
// access key.
func (c *Cache) Lookup(ak string) (string, string, bool) {
	if c.static != nil {
		if sk, user, ok := c.static(ak); ok {
			return sk, user, true
		}
	}
	if e, ok := c.keys.Get(ak); ok && c.fresh(e.at) {
		return e.sk, e.user, e.ok
	}
	v, err, _ := c.reads.Do("k/"+ak, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		at := c.now()
		u, creds, err := c.store.ByAccessKey(ctx, ak)
		switch {
		case errors.Is(err, ErrNoSuchUser):
			e := keyEntry{at: at}
			c.keys.Add(ak, e)
			return e, nil
		case err != nil:
			return nil, err // refused, and read again next time
		}
		e := keyEntry{at: at, sk: creds.SecretKey, user: u.Name, ok: true}
		c.keys.Add(ak, e)
		c.users.Add(u.Name, userEntry{at: at, user: u})
		return e, nil
	})
	if err != nil {
		return "", "", false
	}
	e := v.(keyEntry)
	return e.sk, e.user, e.ok
}

// user returns the stored user called name (nil if none; if the store
// cannot be read, the last answer, else nil: admission then treats it as
// a free user).
func (c *Cache) user(name string) *User {
	if name == "" {
		return nil
	}
	if e, ok := c.users.Get(name); ok && c.fresh(e.at) {
		return e.user
	}
	v, _, _ := c.reads.Do("u/"+name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		at := c.now()
		u, err := c.store.Get(ctx, name)
		switch {
		case errors.Is(err, ErrNoSuchUser):
			c.users.Add(name, userEntry{at: at})
			return (*User)(nil), nil
		case err != nil:
			// The last answer, however old, beats none while the KV is away.
			e, _ := c.users.Peek(name)
			return e.user, nil
		}
		c.users.Add(name, userEntry{at: at, user: u})
		return u, nil
	})
	return v.(*User)
}

// Class returns the class of user: free for anybody not in the store
// (nobody, the admin).
func (c *Cache) Class(user string) tenant.Class {
	if u := c.user(user); u != nil && u.Class != "" {
		return u.Class
	}
	return tenant.Free
}

// Tenant returns user with its class.
func (c *Cache) Tenant(user string) tenant.Tenant {
	return tenant.Tenant{User: user, Class: c.Class(user)}
}

// Limits returns the effective limits of user: its own over its class's.
func (c *Cache) Limits(user string) tenant.Limits {
	u := c.user(user)
	class := tenant.Free
	var own tenant.Limits
	if u != nil {
		own = u.Limits
		if u.Class != "" {
			class = u.Class
		}
	}
	return own.Over(c.ClassLimits(class))
}

// ClassLimits returns the limits of class (if the store cannot be read,
// the last answer, else none).
func (c *Cache) ClassLimits(class tenant.Class) tenant.Limits {
	if e, ok := c.classes.Get(class); ok && c.fresh(e.at) {
		return e.limits
	}
	v, _, _ := c.reads.Do("c/"+string(class), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		at := c.now()
		l, err := c.store.ClassLimits(ctx, class)
		if err != nil {
			e, _ := c.classes.Peek(class) // the last answer, however old
			return e.limits, nil
		}
		c.classes.Add(class, classEntry{at: at, limits: l})
		return l, nil
	})
	return v.(tenant.Limits)
}

package auth

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
)

// NewCredentials generates a random key pair: a 20-character access key
// and a 40-character secret key (the lengths of Qiniu's keys).
func NewCredentials() Credentials {
	return Credentials{AccessKey: randomKey(15), SecretKey: randomKey(30)}
}

func randomKey(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Users is an in-memory key store: access key → user and secret key.
type Users struct {
	mu sync.RWMutex
	m  map[string]userKey
}

type userKey struct{ user, secret string }

// Add registers the credentials of user.
func (u *Users) Add(user string, c Credentials) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]userKey{}
	}
	u.m[c.AccessKey] = userKey{user: user, secret: c.SecretKey}
}

// Lookup implements Lookup.
func (u *Users) Lookup(ak string) (string, string, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	k, ok := u.m[ak]
	return k.secret, k.user, ok
}

package platform

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/cluster/local"
)

// AdminUser owns everything a platform's admin keys manage (Dev's buckets,
// the UFOPs registered with those keys).
const AdminUser = "admin"

// loadAdmin returns the admin keys: given ones, else <data>/admin.json,
// else new ones saved there (0600: only the service's user reads the
// secret). generated says the keys are new. The secret is never printed.
func loadAdmin(data string, given auth.Credentials) (creds auth.Credentials, generated bool, _ error) {
	if given.AccessKey != "" || given.SecretKey != "" {
		if given.AccessKey == "" || given.SecretKey == "" {
			return auth.Credentials{}, false, errors.New("set both the access and the secret key, or neither")
		}
		return given, false, nil
	}
	path := filepath.Join(data, "admin.json")
	b, err := os.ReadFile(path)
	if err == nil {
		// A file copied or made by hand may be readable by others: the
		// secret key is for this user only.
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return auth.Credentials{}, false, fmt.Errorf("%s is readable by other users and cannot be made private: %w", path, err)
			}
		}
		var c auth.Credentials
		if err := json.Unmarshal(b, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return auth.Credentials{}, false, fmt.Errorf("%s is corrupt: remove it to get new keys", path)
		}
		return c, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return auth.Credentials{}, false, err
	}
	c := auth.NewCredentials()
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return auth.Credentials{}, false, err
	}
	return c, true, nil
}

// identity is <data>/platform.json: the id of the platform that keeps its
// state in this folder. Every container, network and image Dev makes on the
// shared Docker daemon carries it (label qufop.platform), so that two
// platforms on one daemon adopt, list and remove only their own.
type identity struct {
	ID string `json:"id"`
}

// loadIdentity reads <data>/platform.json, or makes a new id there.
func loadIdentity(data string) (string, error) {
	path := filepath.Join(data, "platform.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil {
			return "", fmt.Errorf("%s is corrupt (%v): it names the platform whose containers this one adopts", path, err)
		}
		if err := local.CheckPlatformID(id.ID); err != nil {
			return "", fmt.Errorf("%s: %v", path, err)
		}
		return id.ID, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := identity{ID: "dev-" + hex.EncodeToString(r[:])}
	b, _ = json.MarshalIndent(id, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return id.ID, nil
}

// dataLock is a lock on a data folder: two processes writing one file KV
// would lose each other's writes (last writer wins). It is an flock, so the
// kernel releases it however the holder ends; the file says who holds it.
type dataLock struct {
	f    *os.File
	path string
}

// lockHolder is what the lock file says.
type lockHolder struct {
	PID     int       `json:"pid"`
	Addr    string    `json:"addr,omitempty"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// lockData takes <data>/lock for command ("qufop dev"), or says who holds it.
func lockData(data, command string) (*dataLock, error) {
	path := filepath.Join(data, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data folder %s: %w", data, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, inUse(data, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	l := &dataLock{f: f, path: path}
	if err := l.write(lockHolder{PID: os.Getpid(), Command: command, Since: time.Now().UTC()}); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

func inUse(data, path string) error {
	holder := "another process"
	if b, err := os.ReadFile(path); err == nil {
		var h lockHolder
		if json.Unmarshal(b, &h) == nil && h.PID > 0 {
			cmd := h.Command
			if cmd == "" {
				cmd = "qufop"
			}
			holder = fmt.Sprintf("%s (PID %d", cmd, h.PID)
			if h.Addr != "" {
				holder += ", on " + h.Addr
			}
			holder += ")"
		}
	}
	return fmt.Errorf("data folder %s is in use by %s: stop it, or give another --data", data, holder)
}

// note records the address the holder serves on.
func (l *dataLock) note(addr string) error {
	var h lockHolder
	if b, err := os.ReadFile(l.path); err == nil {
		_ = json.Unmarshal(b, &h)
	}
	h.PID, h.Addr = os.Getpid(), addr
	return l.write(h)
}

func (l *dataLock) write(h lockHolder) error {
	b, _ := json.Marshal(h)
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("writing %s: %w", l.path, err)
	}
	return nil
}

// release unlocks; the file stays (removing it would let a third process
// lock a new file while a second still waits on the old one).
func (l *dataLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// closers are what a role must release, released in reverse order.
type closers []func()

func (c *closers) add(f func()) { *c = append(*c, f) }

func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

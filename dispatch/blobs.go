package dispatch

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Blobs holds step inputs for UFOPs that fetch them by URL (the /uop
// protocol): each is reachable for a short time at
// /_blob/<token>?e=<unix>&sign=<hmac>, and only while its step runs. The
// token is random and the URL is signed, so a UFOP can read only the input
// it was given, and only until the deadline.
type Blobs struct {
	key []byte
	ttl time.Duration

	mu sync.Mutex
	m  map[string]blob
}

type blob struct {
	data    []byte
	mime    string
	expires time.Time
}

// NewBlobs returns an empty store whose URLs live for ttl.
func NewBlobs(ttl time.Duration) *Blobs {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Blobs{key: key, ttl: ttl, m: map[string]blob{}}
}

// BlobPath is the route prefix.
const BlobPath = "/_blob/"

// Put stores data and returns the path+query of its signed URL and a
// function that removes it.
func (b *Blobs) Put(data []byte, mime string, now time.Time) (string, func()) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := base64.RawURLEncoding.EncodeToString(tok)
	exp := now.Add(b.ttl)
	b.mu.Lock()
	b.m[token] = blob{data: data, mime: mime, expires: exp}
	// Drop what expired: a UFOP that never fetched leaves nothing behind.
	for k, v := range b.m {
		if now.After(v.expires) {
			delete(b.m, k)
		}
	}
	b.mu.Unlock()
	e := strconv.FormatInt(exp.Unix(), 10)
	return BlobPath + token + "?e=" + e + "&sign=" + b.sign(token, e), func() {
		b.mu.Lock()
		delete(b.m, token)
		b.mu.Unlock()
	}
}

func (b *Blobs) sign(token, e string) string {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(token + "\n" + e))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Len is the number of blobs held.
func (b *Blobs) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// Handler serves GET /_blob/:token.
func (b *Blobs) Handler(c *gin.Context) {
	token, e, sig := c.Param("token"), c.Query("e"), c.Query("sign")
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(b.sign(token, e))) {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"code": 403, "error": "bad blob signature"})
		return
	}
	if time.Now().Unix() > exp {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"code": 403, "error": "blob URL expired"})
		return
	}
	b.mu.Lock()
	v, ok := b.m[token]
	b.mu.Unlock()
	if !ok {
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"code": 404, "error": "no such blob"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, v.mime, v.data)
}

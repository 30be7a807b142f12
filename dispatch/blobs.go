package dispatch

import (
	"container/heap"
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
// protocol): each is reachable at /_blob/<token>?e=<unix>&sign=<hmac> only
// while its step may run (its deadline: the UFOP's timeout, or the
// request's if that comes first), and only until the step ends. The token
// is random and the URL is signed, so a UFOP can read only the input it was
// given, and only until the deadline.
type Blobs struct {
	key []byte
	now func() time.Time // tests move it

	mu       sync.Mutex
	m        map[string]*blob
	byExpiry blobHeap // the blobs of m, soonest to expire first
	examined int      // blobs the sweeps looked at (tests count them)
}

type blob struct {
	token   string
	data    []byte
	mime    string
	expires time.Time
	index   int // in byExpiry
}

// NewBlobs returns an empty store.
func NewBlobs() *Blobs {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Blobs{key: key, now: time.Now, m: map[string]*blob{}}
}

// BlobPath is the route prefix.
const BlobPath = "/_blob/"

// Put stores data until expires and returns the path+query of its signed
// URL and a function that removes it (when the step ends). Put and remove
// cost O(log n) in the blobs held: the sweep of what expired (a UFOP that
// never fetched, a remove never called) looks only at those.
func (b *Blobs) Put(data []byte, mime string, expires time.Time) (string, func()) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := base64.RawURLEncoding.EncodeToString(tok)
	v := &blob{token: token, data: data, mime: mime, expires: expires}
	b.mu.Lock()
	b.sweepLocked(b.now())
	b.m[token] = v
	heap.Push(&b.byExpiry, v)
	b.mu.Unlock()
	// Seconds, rounded down: the URL never outlives the step.
	e := strconv.FormatInt(expires.Unix(), 10)
	return BlobPath + token + "?e=" + e + "&sign=" + b.sign(token, e), func() {
		b.mu.Lock()
		if b.m[token] == v { // not swept already
			delete(b.m, token)
			heap.Remove(&b.byExpiry, v.index)
		}
		b.mu.Unlock()
	}
}

// sweepLocked drops the blobs that expired before now.
func (b *Blobs) sweepLocked(now time.Time) {
	for len(b.byExpiry) > 0 {
		b.examined++
		v := b.byExpiry[0]
		if !now.After(v.expires) {
			return
		}
		heap.Pop(&b.byExpiry)
		delete(b.m, v.token)
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
	now := b.now()
	if now.Unix() > exp {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"code": 403, "error": "blob URL expired"})
		return
	}
	b.mu.Lock()
	v, ok := b.m[token]
	b.mu.Unlock()
	switch {
	case !ok:
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"code": 404, "error": "no such blob"})
		return
	case now.After(v.expires): // e is in seconds: the step's deadline may be in its last one
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"code": 403, "error": "blob URL expired"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, v.mime, v.data)
}

// blobHeap is a min-heap of blobs by expiry (container/heap).
type blobHeap []*blob

func (h blobHeap) Len() int           { return len(h) }
func (h blobHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h blobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *blobHeap) Push(x any) {
	v := x.(*blob)
	v.index = len(*h)
	*h = append(*h, v)
}
func (h *blobHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	old[len(old)-1] = nil // no reference kept to the data
	*h = old[:len(old)-1]
	return v
}

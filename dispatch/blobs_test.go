package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// holdingUOP is a /uop instance that hands the input URL it was given to
// the test and answers once released, without fetching.
func holdingUOP(t *testing.T) (ep cluster.Endpoint, urls <-chan string, release chan<- struct{}) {
	u, r := make(chan string, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var in ufop.UOPRequest
		_ = json.NewDecoder(req.Body).Decode(&in)
		u <- in.Src.URL
		<-r
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("done"))
	}))
	t.Cleanup(srv.Close)
	return cluster.Endpoint{ID: "a", Addr: strings.TrimPrefix(srv.URL, "http://"), Version: 1}, u, r
}

// A blob URL lives as long as its step may run: the UFOP's timeout, or the
// request's deadline when that comes first; no longer.
func TestBlobURLLivesAsLongAsTheStep(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ufopTimeout time.Duration
		reqTimeout  time.Duration // 0: none
		validAt     []time.Duration
		refusedAt   []time.Duration
	}{
		{"an hour's UFOP", time.Hour, 0, []time.Duration{0, 2 * time.Minute, 59 * time.Minute}, []time.Duration{time.Hour + time.Second, 2 * time.Hour}},
		{"the request ends first", time.Hour, 10 * time.Minute, []time.Duration{2 * time.Minute, 9 * time.Minute}, []time.Duration{10*time.Minute + time.Second}},
		{"a short UFOP", 20 * time.Second, 0, []time.Duration{0, 15 * time.Second}, []time.Duration{21 * time.Second, 2 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, urls, release := holdingUOP(t)
			cat := &catalog{eps: map[string][]cluster.Endpoint{}}
			cat.set("long-uop", ep)
			r := rec("long-uop", ufop.Public, ufop.ProtocolUOP, 1)
			r.Versions[0].Spec.Timeout = tc.ufopTimeout
			d := New(NewDefaultConfig(), records{"long-uop": r}, cat, nil)
			var offset atomic.Int64 // fake time: now + offset
			d.Blobs().now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			e := gin.New()
			e.GET(BlobPath+":token", d.Blobs().Handler)
			d.SetBlobBase("http://gateway")

			ctx := context.Background()
			if tc.reqTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.reqTimeout)
				defer cancel()
			}
			p, err := d.Resolve(ctx, cmd("long-uop/x"), "")
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() {
				_, err := p.Process(ctx, cmd("long-uop/x"), fop.Blob{Data: []byte("input"), MIME: "text/plain"})
				done <- err
			}()
			u := strings.TrimPrefix(<-urls, "http://gateway")
			fetch := func(at time.Duration) (int, string) {
				offset.Store(int64(at))
				w := httptest.NewRecorder()
				e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, u, nil))
				return w.Code, w.Body.String()
			}
			for _, at := range tc.validAt {
				code, body := fetch(at)
				assert.Equal(t, 200, code, "at +%s: %s", at, body)
				assert.Equal(t, "input", body)
			}
			for _, at := range tc.refusedAt {
				code, body := fetch(at)
				assert.Equal(t, 403, code, "at +%s: %s", at, body)
				assert.Contains(t, body, "expired", "at +%s", at)
			}
			close(release)
			require.NoError(t, <-done)
			assert.Equal(t, 0, d.Blobs().Len())
		})
	}
}

// Put sweeps what expired, looking at nothing else: with many live blobs
// it examines one entry (the soonest to expire), with k expired ones k+1.
func TestBlobPutDoesNotScan(t *testing.T) {
	b := NewBlobs()
	var offset time.Duration
	base := time.Now()
	b.now = func() time.Time { return base.Add(offset) }
	const live = 10000
	for i := range live {
		b.Put([]byte("x"), "text/plain", base.Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	removes := make([]func(), 0, 10)
	for i := range 10 {
		_, rm := b.Put([]byte("y"), "text/plain", base.Add(time.Duration(i+1)*time.Second))
		removes = append(removes, rm)
	}
	removes[0]() // removed before it expired: out of the sweep's way too
	require.Equal(t, live+9, b.Len())

	before := b.examined
	b.Put([]byte("z"), "text/plain", base.Add(2*time.Hour))
	assert.Equal(t, 1, b.examined-before, "nothing expired: one look")
	assert.Equal(t, live+10, b.Len())

	offset = 30 * time.Second // the 9 short ones that are left expired
	before = b.examined
	b.Put([]byte("z"), "text/plain", base.Add(2*time.Hour))
	assert.Equal(t, 10, b.examined-before, "9 expired, then one live")
	assert.Equal(t, live+2, b.Len())
	for _, rm := range removes {
		rm() // removing what a sweep took is harmless
	}
	assert.Equal(t, live+2, b.Len())
}

func BenchmarkBlobPut(b *testing.B) {
	for _, live := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			bl := NewBlobs()
			exp := time.Now().Add(time.Hour)
			for range live {
				bl.Put([]byte("x"), "text/plain", exp)
			}
			b.ResetTimer()
			for range b.N {
				_, remove := bl.Put([]byte("x"), "text/plain", exp)
				remove()
			}
		})
	}
}

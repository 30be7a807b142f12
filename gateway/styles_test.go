package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
	"github.com/qufop/qufop/tenant"
)

// testStyles are the styles of the buckets of styleServing.
var testStyles = map[string]string{
	"thumb":   "imageView2/2/w/200",
	"info":    "imageInfo",
	"bad":     "imageView2/9/w/200",
	"unknown": "nosuchcmd",
	"who":     "who",
}

// styleServing serves, with the image commands and the UFOP "who", bucket
// "pics" (alice's, public, separators "-", "!" and "/") and "secret" (alice's,
// private, separator "-"), both with the styles of testStyles and a real
// photograph, storm.jpg, beside an object literally named storm.jpg-thumb.
func styleServing(t *testing.T, fast bool) (string, *Server) {
	t.Helper()
	photo, err := os.ReadFile("../testdata/images/storm-1920x1080.jpg")
	require.NoError(t, err)
	var bs []storage.Bucket
	for _, name := range []string{"pics", "secret"} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "storm.jpg"), photo, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "storm.jpg-thumb"), []byte("literal"), 0o644))
		b, err := local.New(name, dir)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	set, err := storage.NewSet(bs...)
	require.NoError(t, err)
	img, err := image.New(image.NewDefaultConfig())
	require.NoError(t, err)
	reg := fop.Registry{}
	img.Register(reg)
	var keys auth.Users
	keys.Add("alice", aliceKeys)
	cfg := NewDefaultConfig()
	cfg.FastFront = fast
	srv, err := New(cfg, set, reg, nil,
		WithUFOPs(seen{}, func(string) string { return "admin" }),
		WithAccess(records{
			"pics":   {Owner: "alice", Separator: "-!/", Styles: testStyles},
			"secret": {Owner: "alice", Private: true, Separator: "-", Styles: testStyles},
		}, keys.Lookup, "admin"),
		WithClasses(classes{"alice": tenant.Paid}))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return "http://" + ln.Addr().String(), srv
}

// answer is a response as compared: status, headers but those that differ
// between any two requests, body.
type answer struct {
	status int
	header http.Header
	body   string
}

// send makes one request on a connection of its own (routed by it alone).
func send(t *testing.T, method, u string) answer {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	req, err := http.NewRequest(method, u, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	h := resp.Header.Clone()
	h.Del("Date")
	h.Del("X-Reqid")
	return answer{resp.StatusCode, h, string(b)}
}

func TestStyledURLsAnswerAsTheirChains(t *testing.T) {
	for _, fast := range []bool{false, true} {
		domain, srv := styleServing(t, fast)
		for _, tc := range []struct {
			name          string
			styled, chain string // paths and queries
			status        int
			front         string // the front a fast gateway serves the styled URL on
		}{
			{"built-in", "/pics/storm.jpg-thumb", "/pics/storm.jpg?imageView2/2/w/200", 200, "std"},
			{"second separator", "/pics/storm.jpg!thumb", "/pics/storm.jpg?imageView2/2/w/200", 200, "std"},
			{"escaped separator", "/pics/storm.jpg%21thumb", "/pics/storm.jpg?imageView2/2/w/200", 200, "std"},
			{"slash as separator", "/pics/storm.jpg/thumb", "/pics/storm.jpg?imageView2/2/w/200", 200, "std"},
			{"info, not cached", "/pics/storm.jpg-info", "/pics/storm.jpg?imageInfo", 200, "std"},
			{"own steps appended", "/pics/storm.jpg-thumb?imageInfo", "/pics/storm.jpg?imageView2/2/w/200|imageInfo", 200, "std"},
			{"download parameters", "/pics/storm.jpg-thumb?attname=small.jpg", "/pics/storm.jpg?imageView2/2/w/200&attname=small.jpg", 200, "std"},
			{"UFOP style on the fast front", "/pics/storm.jpg-who", "/pics/storm.jpg?who", 200, "fast"},
			{"UFOP style, own UFOP step", "/pics/storm.jpg-who?who", "/pics/storm.jpg?who|who", 200, "fast"},
			{"bad parameter", "/pics/storm.jpg-bad", "/pics/storm.jpg?imageView2/9/w/200", 400, "std"},
			{"unknown command", "/pics/storm.jpg-unknown", "/pics/storm.jpg?nosuchcmd", 400, "std"},
			{"missing object", "/pics/gone.jpg-thumb", "/pics/gone.jpg?imageView2/2/w/200", 404, "std"},
			{"bad chain of its own", "/pics/storm.jpg-thumb?imageView2//w", "/pics/storm.jpg?imageView2//w", 400, "std"},
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				t.Run(fmt.Sprintf("fast=%v/%s/%s", fast, tc.name, method), func(t *testing.T) {
					want := send(t, method, domain+tc.chain)
					require.Equal(t, tc.status, want.status, want.body)
					before := conns(t, srv)
					got := send(t, method, domain+tc.styled)
					assert.Equal(t, want, got)
					if tc.status == 200 {
						// Info results are no-store, with no ETag; images have one.
						assert.True(t, got.header.Get("ETag") != "" || got.header.Get("Cache-Control") == "no-store", "%v", got.header)
					}
					if fast {
						assert.Equal(t, before[tc.front]+1, conns(t, srv)[tc.front], "served on the %s front", tc.front)
					}
				})
			}
		}
		t.Run(fmt.Sprintf("fast=%v/revalidated with the chain's ETag", fast), func(t *testing.T) {
			etag := send(t, http.MethodGet, domain+"/pics/storm.jpg?imageView2/2/w/200").header.Get("ETag")
			require.NotEmpty(t, etag)
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
			req, err := http.NewRequest(http.MethodGet, domain+"/pics/storm.jpg-thumb", nil)
			require.NoError(t, err)
			req.Header.Set("If-None-Match", etag)
			resp, err := c.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusNotModified, resp.StatusCode)
			assert.Equal(t, etag, resp.Header.Get("ETag"))
		})
		t.Run(fmt.Sprintf("fast=%v/the style wins over a literal key", fast), func(t *testing.T) {
			got := send(t, http.MethodGet, domain+"/pics/storm.jpg-thumb")
			assert.Equal(t, "image/jpeg", got.header.Get("Content-Type"))
			assert.NotEqual(t, "literal", got.body)
			assert.Less(t, len(got.body), 100_000, "a 200-px thumbnail")
		})
		t.Run(fmt.Sprintf("fast=%v/no such style: the key as is", fast), func(t *testing.T) {
			got := send(t, http.MethodGet, domain+"/pics/storm.jpg-nosuch")
			assert.Equal(t, 404, got.status)
			assert.Contains(t, got.body, `no such object \"storm.jpg-nosuch\"`)
			// A separator of no style's: "!" is not one of secret's.
			got = send(t, http.MethodGet, signed(aliceKeys, domain, "secret/storm.jpg!thumb", time.Now().Add(time.Hour).Unix()))
			assert.Equal(t, 404, got.status)
			assert.Contains(t, got.body, `no such object \"storm.jpg!thumb\"`)
		})
	}
}

// In a private bucket the download token signs the styled URL, as sent.
func TestStyledURLsOfAPrivateBucket(t *testing.T) {
	for _, fast := range []bool{false, true} {
		domain, srv := styleServing(t, fast)
		e := time.Now().Add(time.Hour).Unix()
		t.Run(fmt.Sprintf("fast=%v/built-in", fast), func(t *testing.T) {
			want := send(t, http.MethodGet, signed(aliceKeys, domain, "secret/storm.jpg?imageView2/2/w/200", e))
			require.Equal(t, 200, want.status, want.body)
			got := send(t, http.MethodGet, signed(aliceKeys, domain, "secret/storm.jpg-thumb", e))
			assert.Equal(t, want, got)
		})
		t.Run(fmt.Sprintf("fast=%v/UFOP", fast), func(t *testing.T) {
			before := conns(t, srv)
			got := send(t, http.MethodGet, signed(aliceKeys, domain, "secret/storm.jpg-who", e))
			assert.Equal(t, 200, got.status, got.body)
			assert.Equal(t, "alice/paid/alice", got.body)
			if fast {
				assert.Equal(t, before["fast"]+1, conns(t, srv)["fast"])
			}
		})
		t.Run(fmt.Sprintf("fast=%v/refused", fast), func(t *testing.T) {
			got := send(t, http.MethodGet, domain+"/secret/storm.jpg-thumb")
			assert.Equal(t, 401, got.status)
			assert.Contains(t, got.body, "a download token is required")
			// The token of the chain URL does not open the styled one.
			u, err := url.Parse(signed(aliceKeys, domain, "secret/storm.jpg?imageView2/2/w/200", e))
			require.NoError(t, err)
			_, params, _ := strings.Cut(u.RawQuery, "&")
			for _, styled := range []string{"/secret/storm.jpg-thumb?" + params, "/secret/storm.jpg-who?" + params} {
				got = send(t, http.MethodGet, domain+styled)
				assert.Equal(t, 401, got.status, styled)
				assert.Contains(t, got.body, "signature does not match")
			}
		})
	}
}

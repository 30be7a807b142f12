package main

import (
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestUOP(t *testing.T) {
	input := strings.Repeat("qiniu ", 1000)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/blob" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(input))
	}))
	defer src.Close()
	m, s := md5.Sum([]byte(input)), sha1.Sum([]byte(input))
	for _, tc := range []struct {
		name, cmd, url string
		code           int
		want           string
	}{
		{"md5", "v1fetch", src.URL + "/blob", 200, `{"md5":"` + hex.EncodeToString(m[:]) + `","size":6000}`},
		{"sha1", "v1fetch/sha1", src.URL + "/blob", 200, `{"sha1":"` + hex.EncodeToString(s[:]) + `","size":6000}`},
		{"missing input", "v1fetch", src.URL + "/gone", 400, `404 Not Found`},
		{"no url", "v1fetch", "", 400, `no src.url`},
		{"unknown sub command", "v1fetch/crc", src.URL + "/blob", 400, `unknown command crc`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"cmd":"` + tc.cmd + `","src":{"url":"` + tc.url + `","mimetype":"text/plain","fsize":6000}}`
			w := httptest.NewRecorder()
			uop(w, httptest.NewRequest("POST", "/uop", strings.NewReader(body)))
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body.String(), tc.code, tc.want)
			}
		})
	}
}

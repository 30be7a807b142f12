package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func post(t *testing.T, method, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	uop(w, httptest.NewRequest(method, "/uop", strings.NewReader(body)))
	return w
}

func TestUOP(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"jpeg", `{"cmd":"v1type","src":{"url":"http://x/y","mimetype":"image/jpeg","fsize":760935,"bucket":"b","key":"1.jpg"}}`,
			200, `{"mimetype":"image/jpeg","kind":"image","fsize":760935,"bucket":"b","key":"1.jpg"}`},
		{"kind of text with charset", `{"cmd":"v1type/kind","src":{"mimetype":"text/plain; charset=utf-8"}}`, 200, "text"},
		{"kind of octets", `{"cmd":"v1type/kind","src":{"mimetype":"application/octet-stream"}}`, 200, "other"},
		{"unknown sub command", `{"cmd":"v1type/nope","src":{}}`, 400, `{"error":"unknown command nope"}`},
		{"bad body", `{"cmd":`, 500, `"error":"bad request body`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, "POST", tc.body)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body.String(), tc.code, tc.want)
			}
		})
	}
}

func TestUOPNeedsPost(t *testing.T) {
	w := post(t, "GET", "")
	var e map[string]string
	if w.Code != http.StatusMethodNotAllowed || json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] == "" {
		t.Fatalf("got %d %q", w.Code, w.Body.String())
	}
}

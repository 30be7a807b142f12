package dltoken

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	qauth "github.com/qiniu/go-sdk/v7/auth"
	"github.com/qiniu/go-sdk/v7/storage"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/errs"
)

var (
	alice = auth.Credentials{AccessKey: "alice-ak", SecretKey: "alice-sk"}
	bob   = auth.Credentials{AccessKey: "bob-ak", SecretKey: "bob-sk"}
)

func users() auth.Lookup {
	var u auth.Users
	u.Add("alice", alice)
	u.Add("bob", bob)
	return u.Lookup
}

func sdk(c auth.Credentials) *qauth.Credentials { return qauth.New(c.AccessKey, c.SecretKey) }

// sent returns the request target and Host a Go client sends for rawURL.
func sent(t *testing.T, rawURL string) (string, string) {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.URL.RequestURI(), r.URL.Host
}

func TestCheckAgainstTheSDK(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := now.Add(time.Hour).Unix()
	const domain = "http://127.0.0.1:8080"
	for _, tc := range []struct {
		name string
		url  string
		user string
	}{
		{"plain download", storage.MakePrivateURL(sdk(alice), domain, "photos/cat.jpg", e), "alice"},
		{"chain with a pipe and a UFOP", storage.MakePrivateURL(sdk(alice), domain, "photos/cat.jpg?imageView2/2/w/200|ufop-demo/x/aGVsbG8=", e), "alice"},
		{"chain and attname", storage.MakePrivateURL(sdk(bob), domain, "photos/cat.jpg?imageMogr2/thumbnail/100x&attname=a.jpg", e), "bob"},
		{"v2: escaped key and chain", storage.MakePrivateURLv2WithQueryString(sdk(alice), domain, "photos/a b+c.jpg", "imageView2/2/w/200|ufop-demo", e), "alice"},
		{"https domain (TLS ended by a proxy)", storage.MakePrivateURL(sdk(alice), "https://img.example.com", "photos/cat.jpg?imageView2/1/w/5", e), "alice"},
		{"deadline is now", storage.MakePrivateURL(sdk(alice), domain, "photos/cat.jpg", now.Unix()), "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, host := sent(t, tc.url)
			tok, err := Check("photos", target, host, users(), now)
			if err != nil {
				t.Fatalf("Check(%q) = %v", target, err)
			}
			if tok.User != tc.user {
				t.Fatalf("user %q, want %q", tok.User, tc.user)
			}
			// An absolute-form target (a request through a proxy) is the
			// signed URL itself.
			if !strings.HasSuffix(tc.url, target) {
				t.Fatalf("the client sends %q, not the end of %q", target, tc.url)
			}
			if _, err := Check("photos", tc.url, "other.host", users(), now); err != nil {
				t.Fatalf("absolute form %q: %v", tc.url, err)
			}
		})
	}
}

func TestCheckRefuses(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := now.Add(time.Hour).Unix()
	const domain = "http://127.0.0.1:8080"
	good := storage.MakePrivateURL(sdk(alice), domain, "photos/cat.jpg?imageView2/2/w/200|ufop-demo", e)
	target, host := sent(t, good)
	es := strconv.FormatInt(e, 10)
	for _, tc := range []struct {
		name, target, host string
		want               string // in the message
	}{
		{"no token", "/photos/cat.jpg?imageView2/2/w/200", host, `bucket "photos" is private: a download token is required`},
		{"no token, plain", "/photos/cat.jpg", host, `a download token is required`},
		{"expired", targetOf(t, storage.MakePrivateURL(sdk(alice), domain, "photos/cat.jpg", now.Unix()-1)), host,
			"download token expired at " + time.Unix(now.Unix()-1, 0).UTC().Format(time.RFC3339)},
		{"tampered chain", strings.Replace(target, "w/200", "w/201", 1), host, "signature does not match"},
		{"tampered e", strings.Replace(target, "e="+es, "e="+strconv.FormatInt(e+1, 10), 1), host, "signature does not match"},
		{"tampered key", strings.Replace(target, "cat.jpg", "dog.jpg", 1), host, "signature does not match"},
		{"other host", target, "evil.example.com", "signature does not match"},
		{"unknown access key", strings.Replace(target, "token=alice-ak:", "token=carol-ak:", 1), host, "signature does not match"},
		{"another user's key, same signature", strings.Replace(target, "token=alice-ak:", "token=bob-ak:", 1), host, "signature does not match"},
		{"parameter after token", target + "&attname=x.exe", host, "token= must be the last parameter"},
		{"no e", "/photos/cat.jpg?imageView2/2/w/200&token=alice-ak:x", host, "e=<unix deadline> must come right before token="},
		{"bad token", "/photos/cat.jpg?e=" + es + "&token=alice-ak", host, "want token=<AK>:<sign>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check("photos", tc.target, tc.host, users(), now)
			if errs.Status(err) != http.StatusUnauthorized || !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Check(%q) = %v, want a 401", tc.target, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check(%q) = %q, want it to say %q", tc.target, err, tc.want)
			}
		})
	}
}

func targetOf(t *testing.T, u string) string {
	target, _ := sent(t, u)
	return target
}

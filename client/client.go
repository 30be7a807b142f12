// Package client is the Go client of the management API (/v1, package
// control): every request is signed with the user's access and secret keys
// (package auth), and an error answer becomes an *APIError carrying the
// server's message.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/control/api"
)

// DefaultAddr is where `qufop dev` serves the management API.
const DefaultAddr = "http://127.0.0.1:8080"

// CallTimeout bounds one JSON call (not uploads and streamed logs, which
// only the caller's context bounds).
const CallTimeout = time.Minute

// Client calls the management API of one platform as one user.
type Client struct {
	// Addr is the API's base: "host:port" or "http(s)://host:port[/prefix]".
	Addr  string
	Creds auth.Credentials
	// HTTP is the client used; nil means one without a timeout (logs are
	// streamed), JSON calls being bounded by CallTimeout.
	HTTP *http.Client
	// Now is the clock signatures are dated with; nil means time.Now.
	Now func() time.Time
}

// New returns a client of the API at addr.
func New(addr string, creds auth.Credentials) *Client {
	return &Client{Addr: addr, Creds: creds, HTTP: &http.Client{}}
}

// APIError is an error answer of the API ({"code":N,"error":"..."}).
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	switch {
	case e.Msg == "":
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	case e.Status >= 500 && e.Status < 600:
		return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status)
	}
	return e.Msg
}

// IsStatus reports whether err is an *APIError with the given status.
func IsStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// BaseURL parses an address as the client uses it: "host:port" gets
// "http://"; a trailing "/" is dropped.
func BaseURL(addr string) (*url.URL, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return nil, errors.New("empty API address")
	}
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	u, err := url.Parse(a)
	if err != nil {
		return nil, fmt.Errorf("bad API address %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bad API address %q: want http://host:port or host:port", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad API address %q: no host", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// ufopPath is /v1/ufops/<name><rest>.
func ufopPath(name, rest string) string {
	return "/v1/ufops/" + url.PathEscape(name) + rest
}

// newRequest builds and signs a request. jsonBody (if not nil) is sent
// as JSON and signed; otherwise body is sent unsigned (the caller covers
// it with X-Qiniu-Content-Sha256 in hdr).
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, jsonBody any, body io.Reader, hdr http.Header) (*http.Request, error) {
	base, err := BaseURL(c.Addr)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path = base.Path + path
	u.RawQuery = query.Encode()
	var signed []byte
	if jsonBody != nil {
		signed, err = json.Marshal(jsonBody)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(signed)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if jsonBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "qufop-client")
	auth.SignRequest(req, signed, c.Creds, c.now())
	return req, nil
}

// do sends req and checks the answer's status; the caller closes the body.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && req.Context().Err() == nil {
			return nil, fmt.Errorf("cannot reach the qufop API at %s: %v", c.Addr, ue.Err)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg != "" {
		msg = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg)
	}
	return &APIError{Status: resp.StatusCode, Msg: msg}
}

// call sends a JSON request and decodes the JSON answer into out (when
// not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, query, in, nil, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %v", method, path, err)
	}
	return nil
}

// stream copies a text answer to w.
func (c *Client) stream(ctx context.Context, path string, query url.Values, w io.Writer) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, query, nil, nil, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// WhoAmI returns the user the credentials belong to.
func (c *Client) WhoAmI(ctx context.Context) (string, error) {
	var out api.WhoAmI
	err := c.call(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
	return out.User, err
}

// Register creates a UFOP; mode is "private"/"2" (default) or "public"/"1".
func (c *Client) Register(ctx context.Context, name, mode, desc string) (*api.UFOP, error) {
	var rec api.UFOP
	in := api.RegisterRequest{Name: name, Mode: mode, Description: desc}
	if err := c.call(ctx, http.MethodPost, "/v1/ufops", nil, in, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Unregister stops a UFOP's instances and deletes it, for good, with its
// images; the answer says what was removed and what kept.
func (c *Client) Unregister(ctx context.Context, name string) (*api.Unregistered, error) {
	var out api.Unregistered
	if err := c.call(ctx, http.MethodDelete, ufopPath(name, ""), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns the caller's UFOPs.
func (c *Client) List(ctx context.Context) ([]api.UFOP, error) {
	var out []api.UFOP
	err := c.call(ctx, http.MethodGet, "/v1/ufops", nil, nil, &out)
	return out, err
}

// Info returns the record of a UFOP (of another user's public UFOP: only
// its name, mode and description).
func (c *Client) Info(ctx context.Context, name string) (*api.UFOP, error) {
	var rec api.UFOP
	if err := c.call(ctx, http.MethodGet, ufopPath(name, ""), nil, nil, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Upload sends a tarball (plain or gzip) of size bytes (-1: unknown) whose
// SHA-256 is sha256hex, and returns the new version, whose build then runs
// on the server (see BuildLog and Version). The tarball is not in the
// signing string, so the server requires its SHA-256 in the signed
// X-Qiniu-Content-Sha256: with sha256hex empty, a body that can seek
// (a file, a bytes.Reader) is read once to compute it.
func (c *Client) Upload(ctx context.Context, name, desc string, body io.Reader, size int64, sha256hex string) (int, error) {
	q := url.Values{}
	if desc != "" {
		q.Set("desc", desc)
	}
	if body == nil {
		body = http.NoBody
	}
	if sha256hex == "" {
		var err error
		if sha256hex, err = digestOf(body); err != nil {
			return 0, err
		}
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/x-tar")
	hdr.Set(auth.HeaderSHA256, sha256hex)
	req, err := c.newRequest(ctx, http.MethodPost, ufopPath(name, "/versions"), q, nil, io.NopCloser(body), hdr)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out api.Uploaded
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("upload: bad answer: %v", err)
	}
	return out.Version, nil
}

// digestOf returns the SHA-256 (hex) of what body holds from where it is,
// and seeks back there.
func digestOf(body io.Reader) (string, error) {
	rs, ok := body.(io.ReadSeeker)
	if !ok {
		return "", errors.New("upload: give the tarball's SHA-256 (the server requires it for a body that cannot be read twice)")
	}
	at, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", fmt.Errorf("upload: %v", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, rs); err != nil {
		return "", fmt.Errorf("upload: reading the tarball: %v", err)
	}
	if _, err := rs.Seek(at, io.SeekStart); err != nil {
		return "", fmt.Errorf("upload: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildLog writes the build log of a version to w; with follow it streams
// until the build ends.
func (c *Client) BuildLog(ctx context.Context, name string, version int, follow bool, w io.Writer) error {
	return c.stream(ctx, ufopPath(name, "/versions/"+strconv.Itoa(version)+"/log"), followQuery(follow), w)
}

func followQuery(follow bool) url.Values {
	if !follow {
		return nil
	}
	return url.Values{"follow": {"1"}}
}

// Versions returns every version of a UFOP.
func (c *Client) Versions(ctx context.Context, name string) ([]api.Version, error) {
	var out []api.Version
	err := c.call(ctx, http.MethodGet, ufopPath(name, "/versions"), nil, nil, &out)
	return out, err
}

// Version returns one version of a UFOP.
func (c *Client) Version(ctx context.Context, name string, version int) (*api.Version, error) {
	var v api.Version
	if err := c.call(ctx, http.MethodGet, ufopPath(name, "/versions/"+strconv.Itoa(version)), nil, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Chver makes version the current one (instances change on Upgrade).
func (c *Client) Chver(ctx context.Context, name string, version int) (*api.UFOP, error) {
	var rec api.UFOP
	in := api.VersionRequest{Version: version}
	if err := c.call(ctx, http.MethodPut, ufopPath(name, "/current"), nil, in, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// ResizeResult is the answer of Resize.
type ResizeResult struct {
	api.Resized
	// Started is true when an operation runs in the background (the
	// server answered 202): follow it with State.
	Started bool `json:"-"`
}

// Resize asks for count instances.
func (c *Client) Resize(ctx context.Context, name string, count int) (*ResizeResult, error) {
	var out ResizeResult
	st, err := c.callStatus(ctx, http.MethodPut, ufopPath(name, "/instances"), api.ResizeRequest{Count: count}, &out)
	if err != nil {
		return nil, err
	}
	out.Started = st == http.StatusAccepted
	return &out, nil
}

// UpgradeResult is the answer of Upgrade.
type UpgradeResult struct {
	api.Upgraded
	// Started is true when an operation runs in the background (202);
	// false when there was nothing to do (Message says why).
	Started bool `json:"-"`
}

// Upgrade deploys the current version in place of the running one.
func (c *Client) Upgrade(ctx context.Context, name string) (*UpgradeResult, error) {
	var out UpgradeResult
	st, err := c.callStatus(ctx, http.MethodPost, ufopPath(name, "/upgrade"), nil, &out)
	if err != nil {
		return nil, err
	}
	out.Started = st == http.StatusAccepted
	if !out.Started && out.To == 0 {
		out.To = out.Version
	}
	return &out, nil
}

func (c *Client) callStatus(ctx context.Context, method, path string, in, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, nil, in, nil, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return 0, fmt.Errorf("%s %s: bad answer: %v", method, path, err)
	}
	return resp.StatusCode, nil
}

// State returns the instances of a UFOP and its last operation.
func (c *Client) State(ctx context.Context, name string) (*api.State, error) {
	var st api.State
	if err := c.call(ctx, http.MethodGet, ufopPath(name, "/instances"), nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Logs writes the output of instance index (numbered from 1, as in
// api.Instance) to w; with follow it streams until ctx ends.
func (c *Client) Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error {
	return c.stream(ctx, ufopPath(name, "/instances/"+strconv.Itoa(index)+"/log"), followQuery(follow), w)
}

// ScalePolicyResult is the answer of SetScalePolicy and ScalePolicyOff.
type ScalePolicyResult struct {
	api.ScalePolicySet
	// Started is true when an operation runs in the background (the
	// server answered 202: a deployment, a change of count, or the range
	// carried to the orchestrator): follow it with State.
	Started bool `json:"-"`
}

// SetScalePolicy sets the scaler's policy of a UFOP; empty durations take
// the server's defaults.
func (c *Client) SetScalePolicy(ctx context.Context, name string, p api.ScalePolicy) (*ScalePolicyResult, error) {
	var out ScalePolicyResult
	st, err := c.callStatus(ctx, http.MethodPut, ufopPath(name, "/scale-policy"), p, &out)
	if err != nil {
		return nil, err
	}
	out.Started = st == http.StatusAccepted
	return &out, nil
}

// ScalePolicyOff removes the scaler's policy of a UFOP: its count then
// changes only with Resize, and stays where it is.
func (c *Client) ScalePolicyOff(ctx context.Context, name string) (*ScalePolicyResult, error) {
	var out ScalePolicyResult
	st, err := c.callStatus(ctx, http.MethodDelete, ufopPath(name, "/scale-policy"), nil, &out)
	if err != nil {
		return nil, err
	}
	out.Started = st == http.StatusAccepted
	return &out, nil
}

// Command ufop-demo is an example UFOP: a small program that qufop (or
// Qiniu) runs in a container and calls over HTTP to process files.
//
// It is called as <name>/<sub>[/<args>], where <name> is whatever the UFOP
// was registered as:
//
//	md5, sha1, sha256   {"hash":"<hex>"} of the input (/encoding/base64 for base64)
//	upper, lower        the input text in upper or lower case (text/plain)
//	wc                  {"lines":N,"words":N,"bytes":N}
//	echo                the input unchanged, with its MIME type
//	sleep/<ms>          {"slept_ms":N,"bytes":N} after N ms (0-60000): a slow
//	                    processor, for the scaler's tests and benchmark
//
// It speaks both UFOP protocols:
//
//	POST /handler?cmd=<cmd>&url=<input URL>   (v2; the input is the body when url is empty)
//	POST /uop   {"cmd":..., "src":{"url":...}} (v1)
//	GET  /health                               200 ok
//
// It listens on 0.0.0.0:$PORT_HTTP (9100 by default), logs one line per
// request to stdout, and on SIGTERM finishes the requests in flight and
// exits 0.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Config is what the server needs; tests shrink the limits.
type Config struct {
	// MaxInput caps the input, whether a body or a fetched URL.
	MaxInput int64
	// FetchTimeout bounds the fetch of an input URL.
	FetchTimeout time.Duration
	// Log receives one line per request.
	Log *log.Logger
}

// Defaults.
const (
	DefaultPort         = "9100"
	DefaultMaxInput     = 64 << 20
	DefaultFetchTimeout = 30 * time.Second
	// shutdownGrace is below the kill_timeout of ufop.yaml (10s).
	shutdownGrace = 9 * time.Second
)

func main() {
	port := os.Getenv("PORT_HTTP")
	if port == "" {
		port = DefaultPort
	}
	logger := log.New(os.Stdout, "", log.LstdFlags|log.LUTC)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := Config{MaxInput: DefaultMaxInput, FetchTimeout: DefaultFetchTimeout, Log: logger}
	if err := run(ctx, "0.0.0.0:"+port, cfg, nil); err != nil {
		logger.Printf("ufop-demo: %v", err)
		os.Exit(1)
	}
}

// run serves on addr until ctx is done, then finishes the requests in flight
// and returns nil. ready, if not nil, receives the bound address.
func run(ctx context.Context, addr string, cfg Config, ready chan<- net.Addr) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           NewHandler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
	}
	cfg.Log.Printf("ufop-demo listening on %s", ln.Addr())
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	cfg.Log.Printf("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// NewHandler returns the UFOP's HTTP handler.
func NewHandler(cfg Config) http.Handler {
	if cfg.MaxInput <= 0 {
		cfg.MaxInput = DefaultMaxInput
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Log == nil {
		cfg.Log = log.New(io.Discard, "", 0)
	}
	s := &server{cfg: cfg, client: &http.Client{Timeout: cfg.FetchTimeout}}
	mux := http.NewServeMux()
	mux.HandleFunc("/handler", s.handler)
	mux.HandleFunc("/uop", s.uop)
	mux.HandleFunc("/health", s.health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, &httpError{http.StatusNotFound, "no such path " + strconv.Quote(r.URL.Path)})
	})
	return s.logged(mux)
}

type server struct {
	cfg    Config
	client *http.Client
}

// httpError is an error answered as {"error":msg} with status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status, fmt.Sprintf(format, args...)}
}

func fail(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{http.StatusInternalServerError, err.Error()}
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// input is the data a command works on.
type input struct {
	data []byte
	mime string
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		fail(w, errorf(http.StatusMethodNotAllowed, "use GET"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// handler serves POST /handler?cmd=&url= (v2).
func (s *server) handler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, errorf(http.StatusMethodNotAllowed, "use POST"))
		return
	}
	q := r.URL.Query()
	noteCmd(r, q.Get("cmd"))
	cmd, err := parseCmd(q.Get("cmd"))
	if err != nil {
		fail(w, err)
		return
	}
	declared := r.Header.Get("X-Qiniu-Mimetype")
	var in input
	if u := q.Get("url"); u != "" {
		in, err = s.fetch(r.Context(), u)
	} else {
		in, err = s.readBody(r)
		if declared == "" {
			declared = r.Header.Get("Content-Type")
		}
	}
	if err != nil {
		fail(w, err)
		return
	}
	if declared != "" {
		in.mime = declared
	}
	s.answer(w, cmd, in)
}

// uopRequest is the JSON body of POST /uop (v1).
type uopRequest struct {
	Cmd string `json:"cmd"`
	Src struct {
		URL      string `json:"url"`
		MIMEType string `json:"mimetype"`
		Fsize    int64  `json:"fsize"`
		Bucket   string `json:"bucket"`
		Key      string `json:"key"`
	} `json:"src"`
}

// uop serves POST /uop (v1).
func (s *server) uop(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, errorf(http.StatusMethodNotAllowed, "use POST"))
		return
	}
	var req uopRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		fail(w, errorf(http.StatusInternalServerError, "cannot parse the request body: %v", err))
		return
	}
	noteCmd(r, req.Cmd)
	cmd, err := parseCmd(req.Cmd)
	if err != nil {
		fail(w, err)
		return
	}
	if req.Src.URL == "" {
		fail(w, errorf(http.StatusBadRequest, "src.url is missing"))
		return
	}
	in, err := s.fetch(r.Context(), req.Src.URL)
	if err != nil {
		fail(w, err)
		return
	}
	if req.Src.MIMEType != "" {
		in.mime = req.Src.MIMEType
	}
	s.answer(w, cmd, in)
}

func (s *server) answer(w http.ResponseWriter, cmd command, in input) {
	if in.mime == "" {
		in.mime = http.DetectContentType(in.data)
	}
	out, ctype, err := cmd.run(in)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

func (s *server) readBody(r *http.Request) (input, error) {
	if r.ContentLength > s.cfg.MaxInput {
		return input{}, errorf(http.StatusRequestEntityTooLarge, "input is over %d bytes", s.cfg.MaxInput)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxInput+1))
	if err != nil {
		return input{}, errorf(http.StatusInternalServerError, "cannot read the input: %v", err)
	}
	if int64(len(data)) > s.cfg.MaxInput {
		return input{}, errorf(http.StatusRequestEntityTooLarge, "input is over %d bytes", s.cfg.MaxInput)
	}
	return input{data: data}, nil
}

// fetch downloads an input URL, within the fetch timeout and the size cap.
func (s *server) fetch(ctx context.Context, raw string) (input, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return input{}, errorf(http.StatusBadRequest, "url %q is not an http(s) URL", raw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return input{}, errorf(http.StatusBadRequest, "url %q: %v", raw, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return input{}, errorf(http.StatusBadGateway, "cannot fetch the input: %v", unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return input{}, errorf(http.StatusBadGateway, "cannot fetch the input: status %d", resp.StatusCode)
	}
	if resp.ContentLength > s.cfg.MaxInput {
		return input{}, errorf(http.StatusRequestEntityTooLarge, "input is over %d bytes", s.cfg.MaxInput)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxInput+1))
	if err != nil {
		return input{}, errorf(http.StatusBadGateway, "cannot fetch the input: %v", unwrapURLError(err))
	}
	if int64(len(data)) > s.cfg.MaxInput {
		return input{}, errorf(http.StatusRequestEntityTooLarge, "input is over %d bytes", s.cfg.MaxInput)
	}
	return input{data: data, mime: resp.Header.Get("Content-Type")}, nil
}

// unwrapURLError drops the "Get <url>:" prefix: the URL is signed.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// command is a parsed cmd, without the UFOP name.
type command struct {
	sub  string
	args []string
}

// parseCmd strips the UFOP name (the first token, whatever it is) and
// checks the sub-command and its arguments.
func parseCmd(cmd string) (command, error) {
	if cmd == "" {
		return command{}, errorf(http.StatusBadRequest, "cmd is missing")
	}
	_, rest, ok := strings.Cut(cmd, "/")
	if !ok || rest == "" {
		return command{}, errorf(http.StatusBadRequest, "no sub-command in %q (want <name>/md5|sha1|sha256|upper|lower|wc|echo)", cmd)
	}
	parts := strings.Split(rest, "/")
	c := command{sub: parts[0], args: parts[1:]}
	switch c.sub {
	case "md5", "sha1", "sha256":
		switch {
		case len(c.args) == 0:
		case len(c.args) == 2 && c.args[0] == "encoding" && (c.args[1] == "hex" || c.args[1] == "base64"):
		default:
			return command{}, errorf(http.StatusBadRequest, "bad command %q: %s takes only /encoding/hex or /encoding/base64", cmd, c.sub)
		}
	case "crash":
		// For the platform's own tests of a UFOP that dies mid-request:
		// refused unless the deployment opted in.
		if os.Getenv("UFOP_DEMO_CRASH") != "1" {
			return command{}, errorf(http.StatusBadRequest, "bad command %q: crash is disabled (set UFOP_DEMO_CRASH=1 in ufop.yaml env)", cmd)
		}
	case "sleep":
		if len(c.args) != 1 {
			return command{}, errorf(http.StatusBadRequest, "bad command %q: sleep takes the milliseconds, sleep/<ms>", cmd)
		}
		if ms, err := strconv.Atoi(c.args[0]); err != nil || ms < 0 || ms > 60000 {
			return command{}, errorf(http.StatusBadRequest, "bad command %q: sleep/<ms> wants 0 to 60000 ms", cmd)
		}
	case "upper", "lower", "wc", "echo":
		if len(c.args) > 0 {
			return command{}, errorf(http.StatusBadRequest, "bad command %q: %s takes no arguments", cmd, c.sub)
		}
	default:
		return command{}, errorf(http.StatusBadRequest, "bad command %q: unknown sub-command %q", cmd, c.sub)
	}
	return c, nil
}

// run executes the command; it returns the output and its Content-Type.
func (c command) run(in input) ([]byte, string, error) {
	switch c.sub {
	case "md5", "sha1", "sha256":
		var h hash.Hash
		switch c.sub {
		case "md5":
			h = md5.New()
		case "sha1":
			h = sha1.New()
		default:
			h = sha256.New()
		}
		h.Write(in.data)
		sum := hex.EncodeToString(h.Sum(nil))
		if len(c.args) == 2 && c.args[1] == "base64" {
			sum = base64.URLEncoding.EncodeToString(h.Sum(nil))
		}
		return jsonBody(map[string]string{"hash": sum}), "application/json", nil
	case "upper", "lower":
		if !utf8.Valid(in.data) {
			return nil, "", errorf(http.StatusBadRequest, "%s: the input is not UTF-8 text", c.sub)
		}
		if c.sub == "upper" {
			return bytes.ToUpper(in.data), "text/plain; charset=utf-8", nil
		}
		return bytes.ToLower(in.data), "text/plain; charset=utf-8", nil
	case "wc":
		return jsonBody(map[string]int{
			"lines": bytes.Count(in.data, []byte{'\n'}),
			"words": len(bytes.Fields(in.data)),
			"bytes": len(in.data),
		}), "application/json", nil
	case "sleep":
		ms, _ := strconv.Atoi(c.args[0]) // checked by parseCmd
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return jsonBody(map[string]int{"slept_ms": ms, "bytes": len(in.data)}), "application/json", nil
	case "crash":
		log.Printf("crash: exiting mid-request as asked")
		os.Exit(3)
	case "echo":
		ctype := in.mime
		if _, _, err := mime.ParseMediaType(ctype); err != nil {
			ctype = "application/octet-stream"
		}
		return in.data, ctype, nil
	}
	return nil, "", errorf(http.StatusBadRequest, "unknown sub-command %q", c.sub)
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// statusWriter remembers the status and size of an answer for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type cmdKey struct{}

// noteCmd records the cmd of a request for its log line.
func noteCmd(r *http.Request, cmd string) {
	if p, ok := r.Context().Value(cmdKey{}).(*string); ok {
		*p = cmd
	}
}

// logged logs one line per request: method, path, cmd, status, bytes out,
// duration and request id.
func (s *server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		cmd := "-"
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), cmdKey{}, &cmd)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		reqID := r.Header.Get("X-Reqid")
		if reqID == "" {
			reqID = "-"
		}
		s.cfg.Log.Printf("%s %s cmd=%q status=%d bytes=%d dur=%s reqid=%s",
			r.Method, r.URL.Path, cmd, sw.status, sw.bytes, time.Since(start).Round(time.Microsecond), reqID)
	})
}

package consulfake

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Consul's session limits and texts (recorded on a 1.16.3 -dev agent, see
// shared/reference/api-transcripts/09 and the package doc).
const (
	minSessionTTL = 10 * time.Second
	maxSessionTTL = 24 * time.Hour
	// Consul invalidates a TTL session only once 2 × TTL has passed since
	// its last renewal (measured: 20.2 s for a 10 s TTL renewed 5 s after
	// it ran out).
	sessionTTLMultiplier = 2
	defaultLockDelay     = 15 * time.Second
	// LockDelay numbers below this are seconds, others nanoseconds.
	lockDelaySecondsBelow = 1000
)

// session is one Consul session.
type session struct {
	ID        string
	Name      string
	Node      string
	LockDelay time.Duration
	Behavior  string
	TTL       string // as given
	ttl       time.Duration
	// The checks it is tied to, as shown: NodeChecks (never nil),
	// ServiceChecks and the legacy Checks. Consul looks every ID up among
	// the node's checks, whichever list names it (§13).
	nodeChecks    []string
	serviceChecks []string
	legacyChecks  []string
	// expires is when the TTL timer invalidates the session (zero: no TTL).
	expires     time.Time
	CreateIndex uint64
	ModifyIndex uint64
}

// sessionJSON is a session as Consul 1.16.3 shows it, fields in its order.
type sessionJSON struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []serviceCheckJSON
	Checks        []string `json:",omitempty"`
	CreateIndex   uint64
	ModifyIndex   uint64
}

type serviceCheckJSON struct {
	ID        string
	Namespace string
}

func (se *session) json() sessionJSON {
	out := sessionJSON{
		ID: se.ID, Name: se.Name, Node: se.Node, LockDelay: se.LockDelay, Behavior: se.Behavior,
		TTL: se.TTL, NodeChecks: append([]string{}, se.nodeChecks...),
		Checks:      append([]string(nil), se.legacyChecks...),
		CreateIndex: se.CreateIndex, ModifyIndex: se.ModifyIndex,
	}
	for _, c := range se.serviceChecks {
		out.ServiceChecks = append(out.ServiceChecks, serviceCheckJSON{ID: c})
	}
	return out
}

// allChecks lists every check the session is tied to.
func (se *session) allChecks() []string {
	out := append([]string(nil), se.legacyChecks...)
	out = append(out, se.nodeChecks...)
	return append(out, se.serviceChecks...)
}

// SetClock makes the fake read the time from now instead of time.Now, for
// session TTLs and lock delays. Advance is the simpler way to move it on.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
	s.expireLocked()
}

// Advance moves the fake's clock d ahead of the real time (or of the
// clock given to SetClock): sessions whose 2 × TTL runs out in between
// are invalidated at once, and lock delays end.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	s.expireLocked()
}

func (s *Server) nowLocked() time.Time {
	if s.clock != nil {
		return s.clock().Add(s.offset)
	}
	return time.Now().Add(s.offset)
}

// Sessions returns the IDs of the live sessions, sorted.
func (s *Server) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	out := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// ExpireSession invalidates session id as Consul's TTL timer does when
// the session has not been renewed for 2 × TTL (its process died): the
// locks it holds are released (or their keys deleted, Behavior "delete")
// and their lock delay starts. It reports whether the session existed.
func (s *Server) ExpireSession(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[id]; !ok {
		return false
	}
	s.invalidateLocked(id)
	return true
}

// LockHolder returns the session holding the lock on key ("" if none).
func (s *Server) LockHolder(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	if e, ok := s.kv[key]; ok {
		return e.Session
	}
	return ""
}

// expireLocked runs the agent's TTL checks (a check that ran out
// invalidates its sessions) and invalidates the sessions whose TTL timer
// ran out.
func (s *Server) expireLocked() {
	s.expireChecksLocked()
	now := s.nowLocked()
	var due []string
	for id, se := range s.sessions {
		if !se.expires.IsZero() && !now.Before(se.expires) {
			due = append(due, id)
		}
	}
	sort.Strings(due)
	for _, id := range due {
		s.invalidateLocked(id)
	}
}

// janitor expires sessions as time passes, so that blocking queries
// watching their locks wake up without a request to prompt it.
func (s *Server) janitor() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.mu.Lock()
			s.expireLocked()
			s.mu.Unlock()
		}
	}
}

// invalidateLocked destroys session id: its locks are released (Session
// cleared, value, flags and LockIndex kept) or, with Behavior "delete",
// their keys deleted; each starts a lock delay of the session's LockDelay.
// One raft index for all of it, as in Consul.
func (s *Server) invalidateLocked(id string) {
	se := s.sessions[id]
	idx := s.bumpLocked()
	delete(s.sessions, id)
	s.sessIndex = idx
	until := s.nowLocked().Add(se.LockDelay)
	for k, e := range s.kv {
		if e.Session != id {
			continue
		}
		if se.LockDelay > 0 {
			s.lockDelay[k] = until
		}
		if se.Behavior == "delete" {
			delete(s.kv, k)
			s.tombs[k] = idx
		} else {
			e.Session = ""
			e.ModifyIndex = idx
		}
		s.kvIndex = idx
	}
}

// lockDelayedLocked says whether key is in a lock delay.
func (s *Server) lockDelayedLocked(key string) bool {
	until, ok := s.lockDelay[key]
	if !ok {
		return false
	}
	if !s.nowLocked().Before(until) {
		delete(s.lockDelay, key)
		return false
	}
	return true
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ---- HTTP ----

func (s *Server) serveSession(w http.ResponseWriter, r *http.Request, rest string) {
	op, id, _ := strings.Cut(rest, "/")
	switch {
	case op == "create" && r.Method == http.MethodPut:
		s.sessionCreate(w, r)
	case op == "renew" && r.Method == http.MethodPut:
		s.sessionRenew(w, id)
	case op == "destroy" && r.Method == http.MethodPut:
		s.mu.Lock()
		if _, ok := s.sessions[id]; ok {
			s.invalidateLocked(id)
		}
		s.mu.Unlock()
		writeJSON(w, true) // also for an unknown session
	case (op == "info" || op == "node" || op == "list") && r.Method == http.MethodGet:
		s.sessionRead(w, r, op, id)
	case op == "create" || op == "renew" || op == "destroy":
		methodNotAllowed(w, r.Method, "PUT")
	case op == "info" || op == "node" || op == "list":
		methodNotAllowed(w, r.Method, "GET")
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func serverError(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, format, args...)
}

func (s *Server) sessionCreate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		serverError(w, "%v", err)
		return
	}
	var req struct {
		Name, Behavior, TTL string
		Node                *string
		LockDelay           json.RawMessage
		Checks, NodeChecks  *[]string
		ServiceChecks       []struct{ ID, Namespace string }
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			badRequest(w, "Request decode failed: "+err.Error())
			return
		}
	}
	se := &session{Name: req.Name, Node: nodeName, Behavior: req.Behavior, TTL: req.TTL, LockDelay: defaultLockDelay}
	if req.Node != nil {
		if *req.Node == "" {
			serverError(w, "Must provide Node") // §13c
			return
		}
		se.Node = *req.Node
	}
	if d, msg := parseLockDelay(req.LockDelay); msg != "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		badRequest(w, "Request decode failed: "+msg)
		return
	} else if d != nil {
		se.LockDelay = *d
	}
	switch se.Behavior {
	case "":
		se.Behavior = "release"
	case "release", "delete":
	default:
		serverError(w, "Invalid Behavior setting '%s'", se.Behavior)
		return
	}
	if se.TTL != "" {
		d, err := time.ParseDuration(se.TTL)
		if err != nil {
			serverError(w, "Session TTL '%s' invalid: %v", se.TTL, err)
			return
		}
		if d != 0 && (d < minSessionTTL || d > maxSessionTTL) {
			serverError(w, "Invalid Session TTL '%d', must be between [%v=%v]", d, minSessionTTL, maxSessionTTL)
			return
		}
		se.ttl = d
	}
	// The checks (§13b): NodeChecks default to serfHealth; legacy Checks
	// are kept and shown unless they are just serfHealth, and an empty
	// Checks empties the default NodeChecks.
	se.nodeChecks = []string{serfHealth}
	if req.NodeChecks != nil {
		se.nodeChecks = append([]string{}, *req.NodeChecks...)
	}
	if req.Checks != nil {
		switch c := *req.Checks; {
		case len(c) == 0:
			if req.NodeChecks == nil {
				se.nodeChecks = []string{}
			}
		case len(c) == 1 && c[0] == serfHealth:
		default:
			se.legacyChecks = append([]string(nil), c...)
		}
	}
	for _, c := range req.ServiceChecks {
		se.serviceChecks = append(se.serviceChecks, c.ID)
	}

	s.mu.Lock()
	s.expireLocked()
	for _, c := range se.allChecks() {
		if msg := s.checkForSessionLocked(c); msg != "" {
			s.mu.Unlock()
			serverError(w, "%s", msg)
			return
		}
	}
	idx := s.bumpLocked()
	se.ID = newUUID()
	se.CreateIndex, se.ModifyIndex = idx, idx
	if se.ttl > 0 {
		se.expires = s.nowLocked().Add(sessionTTLMultiplier * se.ttl)
	}
	s.sessions[se.ID] = se
	s.sessIndex = idx
	s.mu.Unlock()
	writeJSON(w, struct{ ID string }{se.ID})
}

// parseLockDelay reads LockDelay as Consul does: a duration string, or a
// number of seconds (below 1000) or nanoseconds. nil: not given.
func parseLockDelay(raw json.RawMessage) (*time.Duration, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		d, err := time.ParseDuration(str)
		if err != nil {
			return nil, err.Error()
		}
		return &d, ""
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, err.Error()
	}
	d := time.Duration(n)
	if n < lockDelaySecondsBelow {
		d = time.Duration(n * float64(time.Second))
	}
	return &d, ""
}

func (s *Server) sessionRenew(w http.ResponseWriter, id string) {
	s.mu.Lock()
	s.expireLocked()
	se, ok := s.sessions[id]
	if !ok {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "Session id '%s' not found", id)
		return
	}
	if se.ttl > 0 {
		se.expires = s.nowLocked().Add(sessionTTLMultiplier * se.ttl)
	}
	out := []sessionJSON{se.json()} // a renewal changes no index
	s.mu.Unlock()
	writeJSON(w, out)
}

func (s *Server) sessionRead(w http.ResponseWriter, r *http.Request, op, id string) {
	b, ok := parseBlocking(w, r)
	if !ok {
		return
	}
	var (
		out []sessionJSON
		idx uint64
	)
	read := func() uint64 {
		s.expireLocked()
		out = []sessionJSON{}
		ids := make([]string, 0, len(s.sessions))
		for sid := range s.sessions {
			ids = append(ids, sid)
		}
		sort.Strings(ids)
		for _, sid := range ids {
			se := s.sessions[sid]
			if op == "list" || (op == "info" && sid == id) || (op == "node" && se.Node == id) {
				out = append(out, se.json())
			}
		}
		idx = s.sessIndex
		return idx
	}
	if !s.block(w, r, b, read) {
		return
	}
	setReadHeaders(w, idx, true, "blocking-query")
	writeJSON(w, out)
}

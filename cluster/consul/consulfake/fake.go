// Package consulfake is an in-process fake of the parts of the Consul HTTP
// API that cluster/consul uses: the KV store (/v1/kv/…) with sessions and
// locks (/v1/session/…, `?acquire=`/`?release=`), the agent's own services
// and TTL checks (/v1/agent/…) that sessions are tied to, and the health
// endpoint (/v1/health/service/…), with blocking queries.
//
// It follows the exchanges recorded against a real Consul 1.16.3 -dev agent
// (shared/reference/api-transcripts/07 and 08): status codes, the
// X-Consul-* headers, JSON indented with 4 spaces plus a trailing newline,
// base64 values, `true`/`false` write answers, 404 with an empty body for a
// missing key, one global modify index bumped on every change, and
// blocking queries (`index` + `wait`) that return when what they watch
// changes or when the wait (default 5 min, capped at 10 min, no jitter)
// runs out. Test controls register service instances, flip their health
// and take the "agent" down.
//
// Sessions and locks follow transcript 09 and exchanges recorded on the
// same agent: create (Name, Node, TTL between 10s and 24h, LockDelay as a
// duration string or a number, default 15 s, Behavior release or delete,
// NodeChecks ["serfHealth"]), renew (the session as a one-element array;
// 404 "Session id '<id>' not found"), destroy (true, even for an unknown
// session), info/node/list (sorted by ID; [] for an unknown session). A TTL
// session is invalidated 2 × TTL after its last renewal, as Consul does;
// invalidation (destroy or TTL) releases its locks (Session cleared, value,
// flags and LockIndex kept) or deletes their keys (Behavior delete), and
// starts the session's lock delay on each of those keys, during which every
// `?acquire=` answers false. `?acquire=<session>` takes a free key
// (LockIndex + 1, Session set, value and flags from the request), re-takes
// one the session holds (value and flags updated, LockIndex kept) and
// answers false for a key another session holds; an unknown session is a
// 500 `raft apply failed: invalid session "<id>"` (after the lock-delay
// check), an empty one `raft apply failed: missing session`.
// `?release=<session>` frees a key the session holds (value and flags from
// the request, no lock delay) and answers false otherwise. A plain PUT on
// a locked key keeps its Session and sets LockIndex to 0, as Consul
// 1.16.3 does. The fake's clock for TTLs and lock delays can be moved on
// (Advance, SetClock), and ExpireSession plays a TTL running out.
//
// The agent's services and checks follow testdata/sessions-1.16.3.md
// §13–§19: `PUT /v1/agent/service/register` with TTL checks (Check,
// Checks; a check without Status starts critical; CheckID defaults to
// "service:<id>", Name to "Service '<name>' check"; DeregisterCriticalServiceAfter,
// at least 1m), `/v1/agent/service/deregister/<id>`,
// `/v1/agent/check/register` (with a ServiceID), `/v1/agent/check/update/<id>`
// (passing, warning or critical, which restarts the TTL),
// `/v1/agent/check/deregister/<id>` and `GET /v1/agent/checks`, with
// Consul's 400 and 404 texts. A TTL check not updated for its TTL turns
// critical ("TTL expired (last output before timeout follows): …"); a
// service critical for its DeregisterCriticalServiceAfter is removed. A
// session may be tied to checks in NodeChecks (default ["serfHealth"]),
// ServiceChecks or the legacy Checks: each must exist and not be critical
// ("apply failed: Missing check '<id>' registration", "apply failed: Check
// '<id>' is in critical state"), and the session is invalidated (with its
// lock delay) the moment one goes critical or is deregistered. The agent
// endpoints answer while SetDown, as a real agent's do; what happened to
// the checks meanwhile reaches the sessions when the servers are back.
// Checks and SetCheck show and set the checks.
//
// Not modelled: ACLs, datacenters, namespaces, `?stale`/`?consistent`, tag
// filters and `?filter=`, the jitter Consul adds to a blocking wait,
// checks other than TTL ones, node checks (refused: on Consul a critical
// one takes every service of the node out of `?passing`, §19), the
// agent's services in the catalog and health endpoints, the 30 s period of
// Consul's reaper, semaphores.
package consulfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute

	nodeID   = "d6e4283c-e1e7-c3b0-284d-380aa1c13f7e"
	nodeName = "vm"
	nodeAddr = "127.0.0.1"

	// DownMessage is the body of the 500 answered while SetDown(true).
	DownMessage = "No cluster leader"
)

// Server is a fake Consul agent on 127.0.0.1.
type Server struct {
	ts *httptest.Server

	requests atomic.Int64
	waiting  atomic.Int64

	mu        sync.Mutex
	index     uint64 // global raft index: bumped on every change
	kvIndex   uint64 // index of the last KV change (the "kvs" table)
	kv        map[string]*kvEntry
	tombs     map[string]uint64 // deleted key -> index of the delete
	svcIndex  map[string]uint64 // service name -> index of its last change
	catIndex  uint64            // index of the last catalog change
	instances map[string]*instance
	changed   chan struct{} // closed and replaced on every change
	down      bool
	hang      chan struct{} // non-nil: SetHang(true), closed by SetHang(false)

	sessions  map[string]*session
	sessIndex uint64                   // index of the last session change
	services  map[string]*agentService // the agent's own (/v1/agent/service/register)
	checks    map[string]*agentCheck   // the agent's TTL checks
	lockDelay map[string]time.Time     // key -> end of its lock delay
	clock     func() time.Time         // nil: time.Now
	offset    time.Duration            // Advance
	quit      chan struct{}            // stops the janitor
}

type kvEntry struct {
	LockIndex   uint64
	Flags       uint64
	Value       []byte
	Session     string
	CreateIndex uint64
	ModifyIndex uint64
}

type instance struct {
	service     string
	id          string
	addr        string
	port        int
	tags        []string
	passing     bool
	createIndex uint64
	modifyIndex uint64 // of the service registration
	checkIndex  uint64 // of the HTTP check's last status change
}

// New starts a fake Consul agent on 127.0.0.1. Close it when done.
func New() *Server {
	s := &Server{
		index:     20, // a -dev agent has done some raft writes already
		catIndex:  20,
		kvIndex:   20,
		kv:        map[string]*kvEntry{},
		tombs:     map[string]uint64{},
		svcIndex:  map[string]uint64{},
		instances: map[string]*instance{},
		changed:   make(chan struct{}),
		sessIndex: 20,
		sessions:  map[string]*session{},
		services:  map[string]*agentService{},
		checks:    map[string]*agentCheck{},
		lockDelay: map[string]time.Time{},
		quit:      make(chan struct{}),
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	go s.janitor()
	return s
}

// URL is the agent's base address ("http://127.0.0.1:PORT").
func (s *Server) URL() string { return s.ts.URL }

// Addr is the agent's host:port (for api.Config.Address).
func (s *Server) Addr() string { return strings.TrimPrefix(s.ts.URL, "http://") }

// Close wakes every held blocking query and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.down = true
	s.bumpLocked()
	s.mu.Unlock()
	s.ts.CloseClientConnections()
	s.ts.Close()
}

// Requests is the number of HTTP requests the server has received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Waiting is the number of blocking queries being held right now.
func (s *Server) Waiting() int64 { return s.waiting.Load() }

// Index is the current global modify index.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// SetDown(true) makes every request (and every held blocking query) fail
// with 500 "No cluster leader", as an agent without a leader does;
// SetDown(false) brings it back with its state intact. The agent's own
// endpoints (/v1/agent/…) still answer meanwhile, as a real agent's do:
// its services and checks live on the agent, and what changed in them
// reaches the servers (sessions tied to a check that went critical are
// invalidated) when they are back.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	s.syncChecksLocked()
	// Wake held queries; they answer 500 while down. No index change.
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetHang(true) makes every request but the agent's own hold without an
// answer, as a Consul whose servers stopped answering (or a network that
// drops the packets) does, until SetHang(false), the client gives up or
// the server closes; then it is served as usual. Requests() counts them.
func (s *Server) SetHang(hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case hang && s.hang == nil:
		s.hang = make(chan struct{})
	case !hang && s.hang != nil:
		close(s.hang)
		s.hang = nil
	}
}

// SetIndex forces the global index to n, as after a snapshot restore; it
// may go backwards. Every table and entry index above n is lowered to n.
// Held blocking queries are woken (and hold on if nothing they watch is
// newer than what they asked for).
func (s *Server) SetIndex(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = n
	s.kvIndex = min(s.kvIndex, n)
	s.catIndex = min(s.catIndex, n)
	s.sessIndex = min(s.sessIndex, n)
	for _, se := range s.sessions {
		se.CreateIndex = min(se.CreateIndex, n)
		se.ModifyIndex = min(se.ModifyIndex, n)
	}
	for k, v := range s.svcIndex {
		s.svcIndex[k] = min(v, n)
	}
	for k, v := range s.tombs {
		s.tombs[k] = min(v, n)
	}
	for _, e := range s.kv {
		e.ModifyIndex = min(e.ModifyIndex, n)
		e.CreateIndex = min(e.CreateIndex, n)
	}
	for _, in := range s.instances {
		in.createIndex = min(in.createIndex, n)
		in.modifyIndex = min(in.modifyIndex, n)
		in.checkIndex = min(in.checkIndex, n)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// bumpLocked advances the global index and wakes blocking queries.
func (s *Server) bumpLocked() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// Register adds (or replaces) a service instance with a passing HTTP check,
// as Nomad does for an allocation.
func (s *Server) Register(service, id, addr string, port int, tags []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.bumpLocked()
	in := &instance{
		service: service, id: id, addr: addr, port: port,
		tags: slices.Clone(tags), passing: true,
		createIndex: idx, modifyIndex: idx, checkIndex: idx,
	}
	if old, ok := s.instances[id]; ok {
		in.createIndex = old.createIndex
		if old.service != service {
			s.svcIndex[old.service] = idx
		}
	}
	s.instances[id] = in
	s.svcIndex[service] = idx
	s.catIndex = idx
}

// SetHealth sets the status of the instance's HTTP check to passing or
// critical. Setting the status it already has changes nothing (no index
// bump), as with a real agent's periodic checks. It reports whether the
// instance exists.
func (s *Server) SetHealth(id string, passing bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return false
	}
	if in.passing == passing {
		return true
	}
	idx := s.bumpLocked()
	in.passing = passing
	in.checkIndex = idx
	s.svcIndex[in.service] = idx
	s.catIndex = idx
	return true
}

// Deregister removes a service instance. It reports whether it existed.
func (s *Server) Deregister(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return false
	}
	idx := s.bumpLocked()
	delete(s.instances, id)
	s.svcIndex[in.service] = idx
	s.catIndex = idx
	return true
}

// serve is the router.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	down := s.down
	hang := s.hang
	s.expireLocked()
	s.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/v1/agent/") {
		s.serveAgent(w, r, strings.TrimPrefix(r.URL.Path, "/v1/agent/"))
		return
	}
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return // the client gave up
		case <-s.quit:
			return
		}
		s.mu.Lock()
		down = s.down
		s.mu.Unlock()
	}
	if down {
		failDown(w)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		s.serveKV(w, r, strings.TrimPrefix(r.URL.Path, "/v1/kv/"))
	case strings.HasPrefix(r.URL.Path, "/v1/session/"):
		s.serveSession(w, r, strings.TrimPrefix(r.URL.Path, "/v1/session/"))
	case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r.Method, "GET")
			return
		}
		s.serveHealth(w, r, strings.TrimPrefix(r.URL.Path, "/v1/health/service/"))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func failDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	io.WriteString(w, DownMessage)
}

func methodNotAllowed(w http.ResponseWriter, method string, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ","))
	w.WriteHeader(http.StatusMethodNotAllowed)
	fmt.Fprintf(w, "method %s not allowed", method)
}

func badRequest(w http.ResponseWriter, msg string) {
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, msg)
}

// writeJSON answers 200 with v as Consul -dev does: 4-space indent and a
// trailing newline.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// blocking is a parsed `index` + `wait`.
type blocking struct {
	index uint64
	wait  time.Duration
}

// parseBlocking reads index and wait as Consul does; on a bad value it
// answers 400 and returns false.
func parseBlocking(w http.ResponseWriter, r *http.Request) (blocking, bool) {
	q := r.URL.Query()
	b := blocking{wait: defaultWait}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			badRequest(w, "Invalid wait time")
			return b, false
		}
		b.wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			badRequest(w, "Invalid index")
			return b, false
		}
		b.index = n
	}
	if b.wait <= 0 {
		b.wait = defaultWait
	}
	b.wait = min(b.wait, maxWait)
	return b, true
}

// block runs read (under s.mu) until it reports an index above b.index, the
// wait runs out, the client goes away or the agent goes down. It returns
// read's last result; ok is false when the agent is down (500 answered).
func (s *Server) block(w http.ResponseWriter, r *http.Request, b blocking, read func() uint64) bool {
	var timer <-chan time.Time
	for {
		s.mu.Lock()
		if s.down {
			s.mu.Unlock()
			failDown(w)
			return false
		}
		idx := read()
		ch := s.changed
		s.mu.Unlock()
		if b.index == 0 || idx > b.index {
			return true
		}
		if timer == nil {
			t := time.NewTimer(b.wait)
			defer t.Stop()
			timer = t.C
			s.waiting.Add(1)
			defer s.waiting.Add(-1)
		}
		select {
		case <-ch:
		case <-timer:
			// Time-out: answer with the current (unchanged) state.
			s.mu.Lock()
			if s.down {
				s.mu.Unlock()
				failDown(w)
				return false
			}
			read()
			s.mu.Unlock()
			return true
		case <-r.Context().Done():
			return false
		}
	}
}

func setReadHeaders(w http.ResponseWriter, index uint64, knownLeader bool, backend string) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	h.Set("X-Consul-Knownleader", strconv.FormatBool(knownLeader))
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", backend)
}

// ---- KV ----

// kvJSON is one entry of a KV read, fields in Consul's order.
type kvJSON struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet:
		s.kvGet(w, r, key)
	case http.MethodPut:
		s.kvPut(w, r, key)
	case http.MethodDelete:
		s.kvDelete(w, r, key)
	default:
		methodNotAllowed(w, r.Method, "GET", "PUT", "DELETE")
	}
}

func has(r *http.Request, param string) bool {
	_, ok := r.URL.Query()[param]
	return ok
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request, key string) {
	recurse, keys := has(r, "recurse"), has(r, "keys")
	if !recurse && !keys && key == "" {
		badRequest(w, "Missing key name")
		return
	}
	b, ok := parseBlocking(w, r)
	if !ok {
		return
	}
	sep := r.URL.Query().Get("separator")
	var (
		idx     uint64
		entries []kvJSON
		names   []string
	)
	read := func() uint64 {
		entries, names = nil, nil
		switch {
		case keys:
			idx, names = s.kvKeysLocked(key, sep)
		case recurse:
			idx, entries = s.kvListLocked(key)
		default:
			idx = s.kvIndex
			if e, ok := s.kv[key]; ok {
				idx = e.ModifyIndex
				entries = []kvJSON{e.json(key)}
			}
		}
		return idx
	}
	if !s.block(w, r, b, read) {
		return
	}
	setReadHeaders(w, idx, true, "blocking-query")
	switch {
	case keys:
		if len(names) == 0 && key != "" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if names == nil {
			names = []string{}
		}
		writeJSON(w, names)
	case len(entries) == 0:
		w.WriteHeader(http.StatusNotFound)
	case has(r, "raw") && !recurse:
		body := entries[0].Value
		h := w.Header()
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Content-Type", "text/plain")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "sandbox")
		w.Write(body)
	default:
		writeJSON(w, entries)
	}
}

func (e *kvEntry) json(key string) kvJSON {
	return kvJSON{
		LockIndex: e.LockIndex, Key: key, Flags: e.Flags, Value: bytes.Clone(e.Value),
		Session: e.Session, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex,
	}
}

// kvListLocked returns the entries under prefix sorted by key, and the
// index Consul reports: the highest modify index (or delete) under the
// prefix, else the KV table index.
func (s *Server) kvListLocked(prefix string) (uint64, []kvJSON) {
	var idx uint64
	var out []kvJSON
	for k, e := range s.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, e.json(k))
			idx = max(idx, e.ModifyIndex)
		}
	}
	for k, t := range s.tombs {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, t)
		}
	}
	if idx == 0 {
		idx = s.kvIndex
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return idx, out
}

func (s *Server) kvKeysLocked(prefix, sep string) (uint64, []string) {
	idx, entries := s.kvListLocked(prefix)
	var out []string
	for _, e := range entries {
		k := e.Key
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				k = k[:len(prefix)+i+len(sep)]
			}
		}
		if len(out) == 0 || out[len(out)-1] != k {
			out = append(out, k)
		}
	}
	return idx, out
}

// conflicting answers 400 as Consul does when more than one of flags is set.
func conflicting(w http.ResponseWriter, r *http.Request, flags ...string) bool {
	n := 0
	for _, f := range flags {
		if has(r, f) {
			n++
		}
	}
	if n > 1 {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "Conflicting flags: %v", r.URL.Query().Encode()) // no newline (recorded on 1.16.3)
		return true
	}
	return false
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, key string) {
	if key == "" {
		badRequest(w, "Missing key name")
		return
	}
	if conflicting(w, r, "cas", "acquire", "release") {
		return
	}
	q := r.URL.Query()
	var flags uint64
	if has(r, "flags") {
		n, err := strconv.ParseUint(q.Get("flags"), 10, 64)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, err.Error())
			return
		}
		flags = n
	}
	cas, useCAS := uint64(0), has(r, "cas")
	if useCAS {
		n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, err.Error())
			return
		}
		cas = n
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, err.Error())
		return
	}
	if len(body) == 0 {
		body = nil // Consul returns "Value": null for an empty value
	}

	s.mu.Lock()
	cur, exists := s.kv[key]
	if useCAS && (cas == 0 && exists || cas != 0 && (!exists || cur.ModifyIndex != cas)) {
		s.mu.Unlock()
		writeJSON(w, false)
		return
	}
	e := &kvEntry{Flags: flags, Value: body}
	switch {
	case has(r, "acquire"):
		id := q.Get("acquire")
		switch {
		case s.lockDelayedLocked(key):
			// Checked before the session (transcript 09.19).
			s.mu.Unlock()
			writeJSON(w, false)
			return
		case id == "":
			s.mu.Unlock()
			serverError(w, "raft apply failed: missing session")
			return
		case s.sessions[id] == nil:
			s.mu.Unlock()
			serverError(w, "raft apply failed: invalid session %q", id)
			return
		case exists && cur.Session != "" && cur.Session != id:
			s.mu.Unlock()
			writeJSON(w, false)
			return
		}
		e.Session, e.LockIndex = id, 1
		if exists {
			e.LockIndex = cur.LockIndex
			if cur.Session != id {
				e.LockIndex++
			}
		}
	case has(r, "release"):
		id := q.Get("release")
		if id == "" {
			s.mu.Unlock()
			serverError(w, "raft apply failed: missing session")
			return
		}
		if !exists || cur.Session != id {
			s.mu.Unlock()
			writeJSON(w, false)
			return
		}
		e.LockIndex = cur.LockIndex // no lock delay for an explicit release
	case exists:
		// A plain write keeps the holder; Consul 1.16.3 answers
		// LockIndex 0 afterwards.
		e.Session = cur.Session
	}
	idx := s.bumpLocked()
	e.CreateIndex, e.ModifyIndex = idx, idx
	if exists {
		e.CreateIndex = cur.CreateIndex
	}
	s.kv[key] = e
	delete(s.tombs, key)
	s.kvIndex = idx
	s.mu.Unlock()
	writeJSON(w, true)
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request, key string) {
	if conflicting(w, r, "recurse", "cas") {
		return
	}
	recurse := has(r, "recurse")
	if !recurse && key == "" {
		badRequest(w, "Missing key name")
		return
	}
	cas, useCAS := uint64(0), has(r, "cas")
	if useCAS {
		n, err := strconv.ParseUint(r.URL.Query().Get("cas"), 10, 64)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, err.Error())
			return
		}
		cas = n
	}

	s.mu.Lock()
	var doomed []string
	if recurse {
		for k := range s.kv {
			if strings.HasPrefix(k, key) {
				doomed = append(doomed, k)
			}
		}
	} else if cur, ok := s.kv[key]; ok {
		if useCAS && cur.ModifyIndex != cas {
			s.mu.Unlock()
			writeJSON(w, false)
			return
		}
		doomed = []string{key}
	} else if useCAS && cas != 0 {
		s.mu.Unlock()
		writeJSON(w, false)
		return
	}
	if len(doomed) > 0 {
		idx := s.bumpLocked()
		for _, k := range doomed {
			delete(s.kv, k)
			s.tombs[k] = idx
		}
		s.kvIndex = idx
	}
	s.mu.Unlock()
	writeJSON(w, true)
}

// ---- health ----

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type addrPort struct {
	Address string
	Port    int
}

type weights struct {
	Passing int
	Warning int
}

type proxyJSON struct {
	Mode        string
	MeshGateway struct{}
	Expose      struct{}
}

type serviceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]addrPort
	Meta              map[string]string
	Port              int
	Weights           weights
	EnableTagOverride bool
	Proxy             proxyJSON
	Connect           struct{}
	PeerName          string
	CreateIndex       uint64
	ModifyIndex       uint64
}

type checkJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string
	Timeout     string
	ExposedPort int
	Definition  struct{}
	CreateIndex uint64
	ModifyIndex uint64
}

type entryJSON struct {
	Node    nodeJSON
	Service serviceJSON
	Checks  []checkJSON
}

func (in *instance) json() entryJSON {
	tags := in.tags
	if tags == nil {
		tags = []string{}
	}
	status, output := "passing", fmt.Sprintf("HTTP GET http://%s:%d/: 200 OK Output: ok\n", in.addr, in.port)
	if !in.passing {
		status = "critical"
		output = fmt.Sprintf("Get \"http://%s:%d/\": dial tcp %s:%d: connect: connection refused", in.addr, in.port, in.addr, in.port)
	}
	return entryJSON{
		Node: nodeJSON{
			ID: nodeID, Node: nodeName, Address: nodeAddr, Datacenter: "dc1",
			TaggedAddresses: map[string]string{
				"lan": nodeAddr, "lan_ipv4": nodeAddr, "wan": nodeAddr, "wan_ipv4": nodeAddr,
			},
			Meta:        map[string]string{"consul-network-segment": "", "consul-version": "1.16.3"},
			CreateIndex: 11, ModifyIndex: 17,
		},
		Service: serviceJSON{
			ID: in.id, Service: in.service, Tags: tags, Address: in.addr,
			TaggedAddresses: map[string]addrPort{
				"lan_ipv4": {in.addr, in.port}, "wan_ipv4": {in.addr, in.port},
			},
			Meta:        map[string]string{"external-source": "nomad"},
			Port:        in.port,
			Weights:     weights{Passing: 1, Warning: 1},
			CreateIndex: in.createIndex, ModifyIndex: in.modifyIndex,
		},
		Checks: []checkJSON{
			{
				Node: nodeName, CheckID: "serfHealth", Name: "Serf Health Status",
				Status: "passing", Output: "Agent alive and reachable",
				ServiceTags: []string{}, CreateIndex: 11, ModifyIndex: 11,
			},
			{
				Node: nodeName, CheckID: "_nomad-check-" + in.id, Name: "http-alive",
				Status: status, Output: output, ServiceID: in.id, ServiceName: in.service,
				ServiceTags: tags, Type: "http", Interval: "2s", Timeout: "1s",
				CreateIndex: in.createIndex, ModifyIndex: in.checkIndex,
			},
		},
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, service string) {
	if service == "" {
		badRequest(w, "Missing service name")
		return
	}
	passingOnly := false
	if has(r, "passing") {
		passingOnly = true
		if v := r.URL.Query().Get("passing"); v != "" {
			p, err := strconv.ParseBool(v)
			if err != nil {
				badRequest(w, "Invalid value for ?passing")
				return
			}
			passingOnly = p
		}
	}
	b, ok := parseBlocking(w, r)
	if !ok {
		return
	}
	var (
		idx uint64
		out []entryJSON
	)
	read := func() uint64 {
		out = []entryJSON{}
		idx = s.catIndex
		if si, ok := s.svcIndex[service]; ok {
			idx = si
		}
		for _, in := range s.instances {
			if in.service == service && (in.passing || !passingOnly) {
				out = append(out, in.json())
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Service.ID < out[j].Service.ID })
		return idx
	}
	if !s.block(w, r, b, read) {
		return
	}
	// A blocking health query is answered by the agent's streaming backend.
	if b.index > 0 {
		setReadHeaders(w, idx, false, "streaming")
	} else {
		setReadHeaders(w, idx, true, "blocking-query")
	}
	w.Header().Set("X-Consul-Effective-Consistency", "leader")
	writeJSON(w, out)
}

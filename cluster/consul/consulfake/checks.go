package consulfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// The agent's own services and TTL checks (/v1/agent/service/…,
// /v1/agent/check/…), as recorded on a Consul 1.16.3 -dev agent
// (testdata/sessions-1.16.3.md §13–§20): what cluster/consul's Elector
// registers so that its session goes when its process dies.

const (
	serfHealth = "serfHealth"
	// minDeregisterCriticalAfter is Consul's floor for
	// DeregisterCriticalServiceAfter.
	minDeregisterCriticalAfter = time.Minute
	// ttlExpiredOutput prefixes the output of a TTL check that ran out.
	ttlExpiredOutput = "TTL expired (last output before timeout follows): "
)

// agentService is a service registered on the agent's HTTP API.
type agentService struct {
	ID     string
	Name   string
	Tags   []string
	Meta   map[string]string
	Port   int
	checks []string
}

// agentCheck is a TTL check registered on the agent, with a service.
type agentCheck struct {
	ID          string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	ttl         time.Duration
	// expires is when the TTL runs out (zero while critical).
	expires time.Time
	// deregisterAfter is DeregisterCriticalServiceAfter (0: never) and
	// criticalSince when the check last went critical.
	deregisterAfter time.Duration
	criticalSince   time.Time
}

// A check as GET /v1/agent/checks shows it (1.16.3) has the fields of the
// health endpoint's checks: checkJSON.

func (c *agentCheck) json() checkJSON {
	tags := c.ServiceTags
	if tags == nil {
		tags = []string{}
	}
	return checkJSON{
		Node: nodeName, CheckID: c.ID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
		ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: tags, Type: "ttl",
	}
}

// Checks returns the agent's checks: ID → status ("passing", "warning",
// "critical").
func (s *Server) Checks() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	out := map[string]string{}
	for id, c := range s.checks {
		out[id] = c.Status
	}
	return out
}

// AgentServices returns the IDs of the services registered on the agent's
// HTTP API (not those of Register), sorted.
func (s *Server) AgentServices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	out := make([]string, 0, len(s.services))
	for id := range s.services {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// SetCheck sets the status of agent check id as `PUT
// /v1/agent/check/update/<id>` does (an operator, or the agent failing
// it): critical invalidates the sessions tied to it. It reports whether
// the check exists.
func (s *Server) SetCheck(id, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.checks[id]
	if !ok {
		return false
	}
	s.setCheckLocked(c, status, c.Output)
	return true
}

// setCheckLocked sets c's status and output and restarts its TTL.
func (s *Server) setCheckLocked(c *agentCheck, status, output string) {
	now := s.nowLocked()
	if status != "critical" {
		c.expires = now.Add(c.ttl)
		c.criticalSince = time.Time{}
	} else if c.Status != "critical" {
		c.expires = time.Time{}
		c.criticalSince = now
	}
	c.Status, c.Output = status, output
	s.syncChecksLocked()
}

// expireChecksLocked turns the TTL checks that ran out critical and reaps
// the services critical for longer than their
// DeregisterCriticalServiceAfter (Consul's reaper runs every 30 s; the
// fake's as time passes).
func (s *Server) expireChecksLocked() {
	now := s.nowLocked()
	changed := false
	for _, c := range s.checks {
		if c.Status != "critical" && !c.expires.IsZero() && !now.Before(c.expires) {
			c.Status, c.Output = "critical", ttlExpiredOutput+c.Output
			c.expires, c.criticalSince = time.Time{}, c.expires
			changed = true
		}
	}
	for _, c := range s.checks {
		if c.Status == "critical" && c.deregisterAfter > 0 && !now.Before(c.criticalSince.Add(c.deregisterAfter)) {
			if _, ok := s.services[c.ServiceID]; ok {
				s.deregisterServiceLocked(c.ServiceID)
				changed = true
			}
		}
	}
	if changed {
		s.syncChecksLocked()
	}
}

// syncChecksLocked is the agent's sync of its checks to the servers: the
// sessions tied to a check that is critical or gone are invalidated. While
// the agent has no leader (SetDown) nothing reaches the servers; the state
// is synced when it is back.
func (s *Server) syncChecksLocked() {
	if s.down {
		return
	}
	var doomed []string
	for id, se := range s.sessions {
		for _, c := range se.allChecks() {
			if c == serfHealth {
				continue
			}
			if ch, ok := s.checks[c]; !ok || ch.Status == "critical" {
				doomed = append(doomed, id)
				break
			}
		}
	}
	sort.Strings(doomed)
	for _, id := range doomed {
		s.invalidateLocked(id)
	}
}

// checkForSessionLocked says why a session cannot be tied to check id ("":
// it can).
func (s *Server) checkForSessionLocked(id string) string {
	if id == serfHealth {
		return ""
	}
	c, ok := s.checks[id]
	switch {
	case !ok:
		return fmt.Sprintf("apply failed: Missing check '%s' registration", id)
	case c.Status == "critical":
		return fmt.Sprintf("apply failed: Check '%s' is in critical state", id)
	}
	return ""
}

func (s *Server) deregisterServiceLocked(id string) {
	svc := s.services[id]
	delete(s.services, id)
	for _, c := range svc.checks {
		delete(s.checks, c)
	}
}

// ---- HTTP ----

func (s *Server) serveAgent(w http.ResponseWriter, r *http.Request, rest string) {
	// "checks", "service/register", "check/update/<id>": the op is the
	// first one or two parts, the ID the rest.
	parts := strings.SplitN(rest, "/", 3)
	op, id := parts[0], ""
	if len(parts) >= 2 {
		op += "/" + parts[1]
	}
	if len(parts) == 3 {
		id = parts[2]
	}
	switch {
	case op == "checks" && r.Method == http.MethodGet:
		s.mu.Lock()
		s.expireLocked()
		out := map[string]checkJSON{}
		for cid, c := range s.checks {
			out[cid] = c.json()
		}
		s.mu.Unlock()
		writeJSON(w, out)
	case op == "service/register" && r.Method == http.MethodPut:
		s.agentServiceRegister(w, r)
	case op == "service/deregister" && r.Method == http.MethodPut:
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.services[id]; !ok {
			notFound(w, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id))
			return
		}
		s.deregisterServiceLocked(id)
		s.syncChecksLocked()
	case op == "check/register" && r.Method == http.MethodPut:
		s.agentCheckRegister(w, r)
	case op == "check/deregister" && r.Method == http.MethodPut:
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.checks[id]
		if !ok {
			notFound(w, unknownCheck(id))
			return
		}
		delete(s.checks, id)
		if svc, ok := s.services[c.ServiceID]; ok {
			svc.checks = remove(svc.checks, id)
		}
		s.syncChecksLocked()
	case op == "check/update" && r.Method == http.MethodPut:
		s.agentCheckUpdate(w, r, id)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func unknownCheck(id string) string {
	return fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
}

func notFound(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, msg)
}

func plainBadRequest(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	badRequest(w, msg)
}

func remove(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// checkDef is a check in a registration.
type checkDef struct {
	CheckID, ID, Name, Notes, Status, TTL string
	ServiceID                             string
	DeregisterCriticalServiceAfter        string
	// Kinds of check the fake does not run.
	HTTP, TCP, UDP, GRPC, H2PING, DockerContainerID string
	Interval                                        string
	ScriptArgs                                      []string
	AliasNode, AliasService                         string
}

// newCheck validates def as the agent does and builds the check (service
// svc; nil for a check registered on its own, def.ServiceID then).
func (s *Server) newCheckLocked(def checkDef, svc *agentService, n, of int) (*agentCheck, string) {
	if def.HTTP != "" || def.TCP != "" || def.UDP != "" || def.GRPC != "" || def.H2PING != "" ||
		def.DockerContainerID != "" || len(def.ScriptArgs) > 0 || def.AliasNode != "" || def.AliasService != "" {
		return nil, "consulfake: only TTL checks are modelled"
	}
	if def.TTL == "" {
		return nil, "consulfake: only TTL checks are modelled (no TTL given)"
	}
	ttl, err := time.ParseDuration(def.TTL)
	if err != nil || ttl <= 0 {
		return nil, fmt.Sprintf("Invalid check: TTL %q", def.TTL)
	}
	c := &agentCheck{ID: def.CheckID, Name: def.Name, Notes: def.Notes, Status: def.Status, ttl: ttl}
	if c.ID == "" {
		c.ID = def.ID
	}
	if svc != nil {
		c.ServiceID, c.ServiceName, c.ServiceTags = svc.ID, svc.Name, svc.Tags
		if c.ID == "" {
			c.ID = "service:" + svc.ID
			if of > 1 {
				c.ID = fmt.Sprintf("service:%s:%d", svc.ID, n+1)
			}
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("Service '%s' check", svc.Name)
		}
	}
	if c.Name == "" {
		return nil, "Missing check name"
	}
	switch c.Status {
	case "":
		c.Status = "critical" // a TTL check starts critical (§13)
	case "passing", "warning", "critical":
	default:
		return nil, fmt.Sprintf("Invalid check status: '%s'", c.Status)
	}
	if def.DeregisterCriticalServiceAfter != "" {
		d, err := time.ParseDuration(def.DeregisterCriticalServiceAfter)
		if err != nil {
			return nil, fmt.Sprintf("Invalid check: DeregisterCriticalServiceAfter %q", def.DeregisterCriticalServiceAfter)
		}
		c.deregisterAfter = max(d, minDeregisterCriticalAfter)
	}
	now := s.nowLocked()
	if c.Status == "critical" {
		c.criticalSince = now
	} else {
		c.expires = now.Add(ttl)
	}
	return c, ""
}

func (s *Server) agentServiceRegister(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID, Name string
		Tags     []string
		Meta     map[string]string
		Port     int
		Check    *checkDef
		Checks   []checkDef
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		plainBadRequest(w, "Request decode failed: "+err.Error())
		return
	}
	if req.Name == "" {
		plainBadRequest(w, "Missing service name")
		return
	}
	svc := &agentService{ID: req.ID, Name: req.Name, Tags: req.Tags, Meta: req.Meta, Port: req.Port}
	if svc.ID == "" {
		svc.ID = svc.Name
	}
	defs := req.Checks
	if req.Check != nil {
		defs = append([]checkDef{*req.Check}, defs...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var checks []*agentCheck
	for i, d := range defs {
		c, msg := s.newCheckLocked(d, svc, i, len(defs))
		if msg != "" {
			plainBadRequest(w, msg)
			return
		}
		checks = append(checks, c)
	}
	if _, ok := s.services[svc.ID]; ok {
		s.deregisterServiceLocked(svc.ID) // re-registered: its checks replaced
	}
	s.services[svc.ID] = svc
	for _, c := range checks {
		s.checks[c.ID] = c
		svc.checks = append(svc.checks, c.ID)
	}
	// The agent syncs a registration before it answers (§13): a session
	// can be tied to the check at once.
	s.syncChecksLocked()
}

func (s *Server) agentCheckRegister(w http.ResponseWriter, r *http.Request) {
	var def checkDef
	if err := json.NewDecoder(r.Body).Decode(&def); err != nil {
		plainBadRequest(w, "Request decode failed: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if def.ServiceID == "" {
		// A node check works on a real agent, but a critical one takes
		// every service of the node out of ?passing (§19), which the fake's
		// health endpoint does not model: refuse rather than mislead.
		plainBadRequest(w, "consulfake: node checks are not modelled (give ServiceID)")
		return
	}
	svc, ok := s.services[def.ServiceID]
	if !ok {
		plainBadRequest(w, fmt.Sprintf("ServiceID %q does not exist", def.ServiceID))
		return
	}
	def.CheckID = def.ID
	c, msg := s.newCheckLocked(def, svc, 0, 1)
	if msg != "" {
		plainBadRequest(w, msg)
		return
	}
	if old, ok := s.checks[c.ID]; ok && old.ServiceID != "" {
		if o, ok := s.services[old.ServiceID]; ok {
			o.checks = remove(o.checks, c.ID)
		}
	}
	s.checks[c.ID] = c
	svc.checks = append(remove(svc.checks, c.ID), c.ID)
	s.syncChecksLocked()
}

func (s *Server) agentCheckUpdate(w http.ResponseWriter, r *http.Request, id string) {
	var req struct{ Status, Output string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && err != io.EOF {
		plainBadRequest(w, "Request decode failed: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	c, ok := s.checks[id]
	if !ok {
		notFound(w, unknownCheck(id))
		return
	}
	switch req.Status {
	case "passing", "warning", "critical":
	default:
		plainBadRequest(w, fmt.Sprintf("Invalid check status: '%s'", req.Status))
		return
	}
	s.setCheckLocked(c, req.Status, req.Output)
}

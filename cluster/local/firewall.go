package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// The firewall of a platform's bridge. Docker's bridge lets a container
// reach every address the host routes to (masquerading it out) and every
// port the host listens on (the bridge's gateway is one of the host's
// addresses, and so are all the others). enable_icc=false only stops
// container-to-container traffic. So each platform's bridge gets two
// chains of its own, named after the bridge interface, and one jump to
// each; nothing else of the host's rules is touched:
//
//	INPUT  -i br-X -j QUFOP-I-br-X   what a container may reach on the host:
//	                                 replies to the host's own connections
//	                                 (the gateway calling the workload port,
//	                                 health probes) and the ports the
//	                                 platform opens (AllowHostPort: the blob
//	                                 listener); nothing else
//	DOCKER-USER -i br-X -j QUFOP-F-br-X  (FORWARD where Docker made no
//	                                 DOCKER-USER): nothing leaves the bridge,
//	                                 neither to another address nor to
//	                                 another container on it
//
// TCP is refused with a reset rather than dropped, so that a program that
// tries fails at once instead of hanging for its connect timeout.
const (
	chainInPrefix  = "QUFOP-I-"
	chainFwdPrefix = "QUFOP-F-"
)

// bridgeOption names a bridge network's interface; without it Docker
// names it "br-" and the first 12 characters of the network's id.
const bridgeOption = "com.docker.network.bridge.name"

// bridgeName is the interface of the bridge network id with options opts.
func bridgeName(id string, opts map[string]string) string {
	if n := opts[bridgeOption]; n != "" {
		return n
	}
	return "br-" + shortID(id)
}

// ipTables is the part of go-iptables the firewall uses (a role, so that
// the rules can be read in tests without a kernel).
type ipTables interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	ListChains(table string) ([]string, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	DeleteById(table, chain string, id int) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	DeleteIfExists(table, chain string, rulespec ...string) error
}

// firewall holds the rules of one bridge.
type firewall struct {
	ipt    ipTables
	bridge string
}

// newIPTables is the host's iptables (the binary Docker uses too), or why
// there is none usable.
func newIPTables() (ipTables, error) {
	ipt, err := iptables.New()
	if err != nil {
		return nil, err
	}
	if _, err := ipt.ListChains("filter"); err != nil {
		return nil, err
	}
	return ipt, nil
}

func (f *firewall) inChain() string  { return chainInPrefix + f.bridge }
func (f *firewall) fwdChain() string { return chainFwdPrefix + f.bridge }

// inRules are the rules of the INPUT chain, allowing TCP to ports.
func inRules(ports []int) [][]string {
	var r [][]string
	for _, p := range ports {
		r = append(r, []string{"-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(p), "-j", "ACCEPT"})
	}
	return append(r,
		[]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		[]string{"-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"},
		[]string{"-j", "DROP"})
}

// fwdRules are the rules of the FORWARD chain: nothing goes through.
func fwdRules() [][]string {
	return [][]string{
		{"-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"},
		{"-j", "DROP"},
	}
}

// forwardHook is where the FORWARD jump goes: DOCKER-USER, which Docker
// puts first in FORWARD and never flushes, else FORWARD itself.
func (f *firewall) forwardHook() string {
	if ok, err := f.ipt.ChainExists("filter", "DOCKER-USER"); err == nil && ok {
		return "DOCKER-USER"
	}
	return "FORWARD"
}

// ensure makes the rules what they must be with ports open, idempotently:
// a chain that exists gets the new rules put in front of its old ones,
// which are removed after, so that there is no moment without them.
func (f *firewall) ensure(ports []int) error {
	if err := f.fill(f.inChain(), inRules(ports)); err != nil {
		return err
	}
	if err := f.fill(f.fwdChain(), fwdRules()); err != nil {
		return err
	}
	// The jumps go in last: a chain is complete before any packet sees it.
	if err := f.hook("INPUT", f.inChain()); err != nil {
		return err
	}
	return f.hook(f.forwardHook(), f.fwdChain())
}

func (f *firewall) fill(chain string, rules [][]string) error {
	ok, err := f.ipt.ChainExists("filter", chain)
	if err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	if !ok {
		if err := f.ipt.NewChain("filter", chain); err != nil {
			return fmt.Errorf("iptables: new chain %s: %w", chain, err)
		}
		for _, r := range rules {
			if err := f.ipt.Append("filter", chain, r...); err != nil {
				return fmt.Errorf("iptables: %s: %w", chain, err)
			}
		}
		return nil
	}
	old, err := f.ipt.List("filter", chain)
	if err != nil {
		return fmt.Errorf("iptables: list %s: %w", chain, err)
	}
	nOld := 0
	for _, l := range old {
		if strings.HasPrefix(l, "-A ") {
			nOld++
		}
	}
	for i, r := range rules {
		if err := f.ipt.Insert("filter", chain, i+1, r...); err != nil {
			return fmt.Errorf("iptables: %s: %w", chain, err)
		}
	}
	for range nOld {
		if err := f.ipt.DeleteById("filter", chain, len(rules)+1); err != nil {
			return fmt.Errorf("iptables: %s: %w", chain, err)
		}
	}
	return nil
}

// hook puts the jump from parent to chain first in parent, once.
func (f *firewall) hook(parent, chain string) error {
	jump := []string{"-i", f.bridge, "-j", chain}
	ok, err := f.ipt.Exists("filter", parent, jump...)
	if err != nil {
		return fmt.Errorf("iptables: %s: %w", parent, err)
	}
	if ok {
		return nil
	}
	if err := f.ipt.Insert("filter", parent, 1, jump...); err != nil {
		return fmt.Errorf("iptables: %s: %w", parent, err)
	}
	return nil
}

// remove takes the bridge's jumps and chains away; what is gone already
// is fine.
func (f *firewall) remove() error {
	var errs []error
	for _, hc := range [][2]string{{"INPUT", f.inChain()}, {"DOCKER-USER", f.fwdChain()}, {"FORWARD", f.fwdChain()}} {
		if ok, err := f.ipt.ChainExists("filter", hc[0]); err != nil || !ok {
			continue
		}
		if err := f.ipt.DeleteIfExists("filter", hc[0], "-i", f.bridge, "-j", hc[1]); err != nil {
			errs = append(errs, fmt.Errorf("iptables: %s: %w", hc[0], err))
		}
	}
	for _, c := range []string{f.inChain(), f.fwdChain()} {
		ok, err := f.ipt.ChainExists("filter", c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			if err := f.ipt.ClearAndDeleteChain("filter", c); err != nil {
				errs = append(errs, fmt.Errorf("iptables: delete %s: %w", c, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeStaleFirewalls removes the chains of bridges that no longer exist
// (a platform whose network went while it was not running, or that was
// killed): they match no packet, but would pile up.
func removeStaleFirewalls(ipt ipTables) {
	chains, err := ipt.ListChains("filter")
	if err != nil {
		return
	}
	var bridges []string
	for _, c := range chains {
		for _, p := range []string{chainInPrefix, chainFwdPrefix} {
			if b, ok := strings.CutPrefix(c, p); ok && !slices.Contains(bridges, b) {
				bridges = append(bridges, b)
			}
		}
	}
	for _, b := range bridges {
		if _, err := os.Stat(filepath.Join("/sys/class/net", b)); errors.Is(err, os.ErrNotExist) {
			_ = (&firewall{ipt: ipt, bridge: b}).remove()
		}
	}
}

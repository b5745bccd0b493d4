package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/keygate/keygate/internal/decision"
)

// Headers a proxy names the client's address in.
const (
	realIPHeader          = "X-Real-IP"
	forwardedForHeader    = "X-Forwarded-For"
	envoyExternalHeader   = "X-Envoy-External-Address"
	maxForwardedForBytes  = 8 << 10
	maxForwardedForCounts = 64
)

// ParseTrustedProxies parses a comma-separated list of CIDRs or addresses
// (the --trusted-proxies flag); an empty list trusts no proxy. Peers are
// compared in their unmapped form, so an IPv4-mapped entry
// (::ffff:10.0.0.0/104, ::ffff:10.0.0.1) is normalised to the IPv4 prefix
// it names (10.0.0.0/8, 10.0.0.1/32); written as is it could never match.
// A zone is refused: a peer's address never carries one.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(f, "/") {
			var err error
			if p, err = netip.ParsePrefix(f); err != nil {
				return nil, err
			}
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("%q: an address with a zone never matches a peer", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() {
			// Masked, an IPv4-mapped address keeps its ::ffff: part only
			// with at least 96 bits: the rest is the IPv4 prefix.
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardClientIP is the client address of a forward-auth request for the IP
// restriction: the peer's own address, unless the peer is a trusted proxy
// (--trusted-proxies); then the address the proxy names in its header, read
// by the --forward-auth-headers convention: X-Real-IP (nginx), the right-most
// X-Forwarded-For hop that is not a trusted proxy (Traefik), Envoy's
// X-Envoy-External-Address; in auto every one present, and they must agree.
// "" means no usable address, which a restricted API denies: a trusted proxy
// that names no client, a header sent twice or unparsable, headers that
// disagree.
func (s *Server) forwardClientIP(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	addr := peer.Addr().Unmap()
	if !s.trusted(addr) {
		return addr.String()
	}
	h := r.Header
	var readers []func(http.Header) (string, bool)
	switch s.fwdHeaders {
	case ForwardNginx:
		readers = append(readers, s.realIP)
	case ForwardTraefik:
		readers = append(readers, s.forwardedFor)
	case ForwardEnvoy:
		readers = append(readers, s.envoyExternal)
	default:
		readers = append(readers, s.realIP, s.forwardedFor, s.envoyExternal)
	}
	found := ""
	for _, read := range readers {
		v, present := read(h)
		switch {
		case !present:
			continue
		case v == "":
			return ""
		case found != "" && v != found:
			return ""
		}
		found = v
	}
	return found
}

// singleAddr reads a header that names one address.
func singleAddr(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		if a, ok := decision.ParseClientAddr(vs[0]); ok {
			return a.String(), true
		}
	}
	return "", true
}

func (s *Server) realIP(h http.Header) (string, bool) { return singleAddr(h, realIPHeader) }

func (s *Server) envoyExternal(h http.Header) (string, bool) {
	return singleAddr(h, envoyExternalHeader)
}

// forwardedFor is the right-most X-Forwarded-For hop that is not a trusted
// proxy: every hop to its right was added by a proxy keygate trusts, and it
// is the address the first of those saw. Hops to its left were sent by the
// client and prove nothing.
func (s *Server) forwardedFor(h http.Header) (string, bool) {
	vs := h.Values(forwardedForHeader)
	if len(vs) == 0 {
		return "", false
	}
	all := strings.Join(vs, ",")
	if len(all) > maxForwardedForBytes {
		return "", true
	}
	hops := strings.Split(all, ",")
	if len(hops) > maxForwardedForCounts {
		return "", true
	}
	var last netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := decision.ParseClientAddr(hops[i])
		if !ok {
			return "", true
		}
		last = a
		if !s.trusted(a) {
			return a.String(), true
		}
	}
	// Every hop is a trusted proxy: the left-most is the first one seen.
	return last.String(), true
}

package adot

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"
)

// RTTBuckets are the upper bounds of the round-trip time histogram buckets.
// The last bucket (index len(RTTBuckets)) counts everything above.
var RTTBuckets = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second,
}

// Histogram is a fixed-bucket, lock-free latency histogram.
type Histogram struct {
	Buckets [len(RTTBuckets) + 1]atomic.Uint64
	Count   atomic.Uint64
	SumNS   atomic.Uint64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(RTTBuckets) && d > RTTBuckets[i] {
		i++
	}
	h.Buckets[i].Add(1)
	h.Count.Add(1)
	if d > 0 {
		h.SumNS.Add(uint64(d))
	}
}

// Metrics holds the counters of a Client or a Server. All fields are safe
// for concurrent use; the zero value is ready. Prometheus wiring reads these.
type Metrics struct {
	Handshakes   atomic.Uint64 // completed TLS handshakes (full or resumed)
	Resumptions  atomic.Uint64 // handshakes that resumed a session
	HandshakeErr atomic.Uint64 // failed TLS handshakes
	Queries      atomic.Uint64 // queries sent (client) or answered (server)
	CacheHits    atomic.Uint64 // client only: answers served from cache
	StaleRetries atomic.Uint64 // client only: retries after an idle-closed connection
	Plaintext    atomic.Uint64 // client only: queries sent in clear text (fallback)
	// Client only: clear-text fallback refused because a server failed TLS
	// (certificate, pin, handshake), or because the (name, type) was never
	// answered over TLS.
	FallbackRefusedTLS        atomic.Uint64
	FallbackRefusedUnanswered atomic.Uint64
	Padded                    atomic.Uint64 // answers received (client) or sent (server) with EDNS(0) padding
	IdleCloses                atomic.Uint64 // client only: idle connections closed by the client before the server's timeout
	Dials                     atomic.Uint64 // client only: TCP connections attempted
	BackoffSkips              atomic.Uint64 // client only: servers skipped while in back-off
	OpenConns                 atomic.Int64  // currently open connections
	Rejected                  atomic.Uint64 // server only: connections refused by a limit
	Failures                  [numCauses]atomic.Uint64
	RTT                       Histogram
	// Answers counts DNS answers by RCODE (client: received, over TLS or
	// the fallback; server: sent). NXDOMAIN is an answer, not a failure.
	Answers [16]atomic.Uint64
	// RateLimited: server only, connections reset at accept because new
	// handshakes came faster than MaxHandshakesPerSecond (also in Rejected).
	RateLimited atomic.Uint64
	// Server only, zone transfers (xfr.go): transfers served by kind
	// (AXFR, IXFR), transfer queries refused (not an allowed secondary,
	// not over ALPN dot, not the zone), NOTIFY datagrams sent, targets
	// that answered, retries, targets given up after NotifyAttempts, and
	// the SOA serial being served.
	Transfers        [2]atomic.Uint64
	TransfersRefused atomic.Uint64
	NotifySent       atomic.Uint64
	NotifyAcked      atomic.Uint64
	NotifyRetries    atomic.Uint64
	NotifyFailed     atomic.Uint64
	Serial           atomic.Uint64

	tlsMu sync.Mutex
	tls   map[TLSParams]uint64
}

// TLSParams are the negotiated parameters of a handshake with one peer:
// for a client the server's address, for a server its listen address.
type TLSParams struct {
	Server  string
	Version uint16
	Cipher  uint16
	Group   tls.CurveID
}

// handshake counts one completed handshake with server's parameters.
func (m *Metrics) handshake(server string, cs tls.ConnectionState) {
	k := TLSParams{Server: server, Version: cs.Version, Cipher: cs.CipherSuite, Group: cs.CurveID}
	m.tlsMu.Lock()
	if m.tls == nil {
		m.tls = map[TLSParams]uint64{}
	}
	if len(m.tls) < 1024 || m.tls[k] > 0 { // bounded: a server is one entry per parameter set
		m.tls[k]++
	}
	m.tlsMu.Unlock()
}

// TLSHandshakes returns the completed handshakes by server and negotiated
// version, cipher suite and key-exchange group.
func (m *Metrics) TLSHandshakes() map[TLSParams]uint64 {
	m.tlsMu.Lock()
	defer m.tlsMu.Unlock()
	out := make(map[TLSParams]uint64, len(m.tls))
	for k, v := range m.tls {
		out[k] = v
	}
	return out
}

func (m *Metrics) answer(rcode int) {
	if rcode >= 0 && rcode < len(m.Answers) {
		m.Answers[rcode].Add(1)
	}
}

// Failure returns the number of failures counted for cause c.
func (m *Metrics) Failure(c Cause) uint64 {
	if c < 0 || c >= numCauses {
		return 0
	}
	return m.Failures[c].Load()
}

// TotalFailures sums failures over all causes.
func (m *Metrics) TotalFailures() uint64 {
	var n uint64
	for i := range m.Failures {
		n += m.Failures[i].Load()
	}
	return n
}

func (m *Metrics) fail(c Cause) {
	if c > CauseNone && c < numCauses {
		m.Failures[c].Add(1)
	}
}

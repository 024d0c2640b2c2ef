package rpki

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// fakeCache is a scripted RTR cache on loopback: the test reads the
// client's PDUs and writes the cache's, byte for byte.
type fakeCache struct {
	t     *testing.T
	ln    net.Listener
	conns chan net.Conn
}

func newFakeCache(t *testing.T) *fakeCache {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCache{t: t, ln: ln, conns: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(f.conns)
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (f *fakeCache) accept() *peer {
	f.t.Helper()
	select {
	case c := <-f.conns:
		f.t.Cleanup(func() { c.Close() })
		return &peer{t: f.t, c: c, br: bufio.NewReader(c)}
	case <-time.After(5 * time.Second):
		f.t.Fatal("client did not connect")
	}
	return nil
}

func (p *peer) read() (PDU, []byte, error) {
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return ReadPDU(p.br)
}

func (p *peer) expect(version, typ uint8) PDU {
	p.t.Helper()
	got, _, err := p.read()
	if err != nil {
		p.t.Fatalf("reading %s: %v", typeName(typ), err)
	}
	if got.Type != typ || got.Version != version {
		p.t.Fatalf("got %s v%d (%+v), want %s v%d", typeName(got.Type), got.Version, got, typeName(typ), version)
	}
	return got
}

// expectClosed checks the client closed the connection (after anything
// already queued).
func (p *peer) expectClosed() {
	p.t.Helper()
	got, _, err := p.read()
	if !errors.Is(err, io.EOF) {
		p.t.Fatalf("want EOF, got %+v, %v", got, err)
	}
}

func (p *peer) send(pdus ...PDU) {
	p.t.Helper()
	var b []byte
	for i := range pdus {
		b = pdus[i].Append(b)
	}
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

func prefixPDU(v uint8, announce bool, p string, maxLen uint8, asn uint32) PDU {
	pfx := netip.MustParsePrefix(p)
	typ := TypeIPv4Prefix
	if pfx.Addr().Is6() {
		typ = TypeIPv6Prefix
	}
	return PDU{Version: v, Type: typ, Announce: announce, Prefix: pfx, MaxLen: maxLen, ASN: asn}
}

func eod(session uint16, serial uint32) PDU {
	return PDU{Version: 1, Type: TypeEndOfData, SessionID: session, Serial: serial, Refresh: 3600, Retry: 1, Expire: 600}
}

// startClient runs a client against f and returns it, a channel of
// published snapshots and Run's result channel.
func startClient(t *testing.T, f *fakeCache, mod func(*Config)) (*Client, chan *Validator, chan error) {
	t.Helper()
	updates := make(chan *Validator, 16)
	cfg := Config{Addr: f.ln.Addr().String(), Retry: 100 * time.Millisecond,
		OnUpdate: func(v *Validator) { updates <- v }}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop")
		}
	})
	return c, updates, done
}

func waitUpdate(t *testing.T, ch chan *Validator) *Validator {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot published")
	}
	return nil
}

func mustState(t *testing.T, v *Validator, asn uint32, p string, want State) {
	t.Helper()
	if got := v.State(asn, netip.MustParsePrefix(p)); got != want {
		t.Errorf("State(AS%d, %s) = %v, want %v", asn, p, got, want)
	}
}

func TestClientSession(t *testing.T) {
	f := newFakeCache(t)
	c, updates, _ := startClient(t, f, nil)
	if c.Validator() != nil {
		t.Fatal("Validator before any data")
	}
	p := f.accept()
	p.expect(1, TypeResetQuery)
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 7},
		prefixPDU(1, true, "192.0.2.0/24", 24, 64500),
		prefixPDU(1, true, "2001:db8::/32", 48, 64500),
		PDU{Version: 1, Type: TypeRouterKey, Announce: true, ASN: 64500, SPKI: []byte{1, 2, 3}},
		eod(7, 1))
	v := waitUpdate(t, updates)
	if c.Validator() != v || v.Serial() != 1 || v.SessionID() != 7 || v.Version() != 1 || v.Len() != 2 {
		t.Fatalf("snapshot %+v", v)
	}
	mustState(t, v, 64500, "192.0.2.0/24", Valid)
	mustState(t, v, 64500, "2001:db8:5::/48", Valid)
	if time.Until(v.Expires()) < 590*time.Second {
		t.Errorf("Expires %v: want now + 600 s", v.Expires())
	}

	// Serial Notify → Serial Query → incremental update with a withdrawal.
	p.send(PDU{Version: 1, Type: TypeSerialNotify, SessionID: 7, Serial: 2})
	q := p.expect(1, TypeSerialQuery)
	if q.SessionID != 7 || q.Serial != 1 {
		t.Fatalf("Serial Query %+v", q)
	}
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 7},
		prefixPDU(1, false, "192.0.2.0/24", 24, 64500),
		prefixPDU(1, true, "203.0.113.0/24", 24, 64500),
		eod(7, 2))
	v2 := waitUpdate(t, updates)
	if v2.Serial() != 2 || v2.Len() != 2 {
		t.Fatalf("snapshot %+v", v2)
	}
	mustState(t, v2, 64500, "192.0.2.0/24", NotFound)
	mustState(t, v2, 64500, "203.0.113.0/24", Valid)
	mustState(t, v, 64500, "192.0.2.0/24", Valid) // the old snapshot is immutable

	// Cache Reset → Reset Query → full set.
	p.send(PDU{Version: 1, Type: TypeSerialNotify, SessionID: 7, Serial: 3})
	p.expect(1, TypeSerialQuery)
	p.send(PDU{Version: 1, Type: TypeCacheReset})
	p.expect(1, TypeResetQuery)
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 7},
		prefixPDU(1, true, "198.51.100.0/24", 24, 64501),
		eod(7, 3))
	v3 := waitUpdate(t, updates)
	if v3.Serial() != 3 || v3.Len() != 1 {
		t.Fatalf("snapshot %+v", v3)
	}
	mustState(t, v3, 64500, "203.0.113.0/24", NotFound)
	mustState(t, v3, 64501, "198.51.100.0/24", Valid)

	// A notify for the serial we hold is ignored; a poll with no change
	// still publishes (new serial, renewed expiry) sharing the data.
	p.send(PDU{Version: 1, Type: TypeSerialNotify, SessionID: 7, Serial: 3},
		PDU{Version: 1, Type: TypeSerialNotify, SessionID: 7, Serial: 4})
	q = p.expect(1, TypeSerialQuery)
	if q.Serial != 3 {
		t.Fatalf("Serial Query %+v", q)
	}
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 7}, eod(7, 4))
	v4 := waitUpdate(t, updates)
	if v4.Serial() != 4 || v4.Len() != 1 || v4.byOrigin == nil {
		t.Fatalf("snapshot %+v", v4)
	}

	// Duplicate announcement: Error Report 7 with the PDU, session dropped,
	// last good data still served, reconnect after Retry (1 s from EOD).
	p.send(PDU{Version: 1, Type: TypeSerialNotify, SessionID: 7, Serial: 5})
	p.expect(1, TypeSerialQuery)
	dup := prefixPDU(1, true, "198.51.100.0/24", 24, 64501)
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 7}, dup)
	er := p.expect(1, TypeErrorReport)
	if er.Code != ErrDuplicateAnnouncement || string(er.Encapsulated) != string(dup.Encode()) || er.Text == "" {
		t.Fatalf("Error Report %+v", er)
	}
	p.expectClosed()
	if got := c.Validator(); got != v4 {
		t.Fatalf("Validator after error = %+v, want the serial-4 snapshot", got)
	}
	p2 := f.accept()
	p2.expect(1, TypeResetQuery)
	st := c.Status()
	if st.ErrorsSent != 1 || st.Updates != 4 || st.Resets != 3 || st.Notifies != 5 || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
}

func TestClientFallbackV0(t *testing.T) {
	f := newFakeCache(t)
	c, updates, _ := startClient(t, f, nil)
	p := f.accept()
	rq := p.expect(1, TypeResetQuery)
	p.send(PDU{Version: 0, Type: TypeErrorReport, Code: ErrUnsupportedVersion, Encapsulated: rq.Encode(), Text: "v0 only"})
	p.expectClosed()
	p = f.accept()
	p.expect(0, TypeResetQuery)
	p.send(PDU{Version: 0, Type: TypeCacheResponse, SessionID: 9},
		prefixPDU(0, true, "192.0.2.0/24", 24, 64500),
		PDU{Version: 0, Type: TypeEndOfData, SessionID: 9, Serial: 1})
	v := waitUpdate(t, updates)
	if v.Version() != 0 || v.Len() != 1 || c.Status().Version != 0 {
		t.Fatalf("snapshot %+v", v)
	}
	mustState(t, v, 64500, "192.0.2.0/24", Valid)
	// v0 has no intervals: the default expiry (7200 s) applies.
	if d := time.Until(v.Expires()); d < 7100*time.Second {
		t.Errorf("expiry in %v", d)
	}
}

func TestClientProtocolErrors(t *testing.T) {
	resp := PDU{Version: 1, Type: TypeCacheResponse, SessionID: 1}
	cases := []struct {
		name string
		send []PDU
		raw  []byte
		code ErrorCode
	}{
		{"withdraw unknown", []PDU{resp, prefixPDU(1, false, "192.0.2.0/24", 24, 1)}, nil, ErrWithdrawalUnknownRecord},
		{"prefix before response", []PDU{prefixPDU(1, true, "192.0.2.0/24", 24, 1)}, nil, ErrCorruptData},
		{"end of data before response", []PDU{eod(1, 1)}, nil, ErrCorruptData},
		{"cache reset answering reset", []PDU{{Version: 1, Type: TypeCacheReset}}, nil, ErrCorruptData},
		{"version change", []PDU{resp, prefixPDU(0, true, "192.0.2.0/24", 24, 1)}, nil, ErrUnexpectedVersion},
		{"eod wrong session", []PDU{resp, eod(2, 1)}, nil, ErrCorruptData},
		{"reset query to router", []PDU{{Version: 1, Type: TypeResetQuery}}, nil, ErrUnsupportedPDUType},
		{"host bits", []PDU{resp}, unhex(t, "01 04 0000 00000014 01 18 18 00 c0000201 0000fbf4"), ErrCorruptData},
		{"unknown type", []PDU{resp}, unhex(t, "01 05 0000 00000008"), ErrUnsupportedPDUType},
		{"version 2", nil, unhex(t, "02 03 0000 00000008"), ErrUnsupportedVersion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCache(t)
			c, _, _ := startClient(t, f, nil)
			p := f.accept()
			p.expect(1, TypeResetQuery)
			p.send(tc.send...)
			if tc.raw != nil {
				p.c.Write(tc.raw)
			}
			er := p.expect(1, TypeErrorReport)
			if er.Code != tc.code {
				t.Fatalf("Error Report code %v (%q), want %v", er.Code, er.Text, tc.code)
			}
			p.expectClosed()
			if c.Validator() != nil {
				t.Fatal("data published from a failed session")
			}
		})
	}
}

func TestClientReceivesErrorReport(t *testing.T) {
	f := newFakeCache(t)
	c, _, _ := startClient(t, f, nil)
	p := f.accept()
	p.expect(1, TypeResetQuery)
	p.send(PDU{Version: 1, Type: TypeErrorReport, Code: ErrNoDataAvailable, Text: "not ready"})
	p.expectClosed() // no Error Report in answer to an Error Report
	p = f.accept()   // retried after Config.Retry
	p.expect(1, TypeResetQuery)
	if st := c.Status(); st.ErrorsReceived != 1 || st.ErrorsSent != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestClientResponseTimeout(t *testing.T) {
	f := newFakeCache(t)
	startClient(t, f, func(cfg *Config) { cfg.ResponseTimeout = 200 * time.Millisecond })
	p := f.accept()
	p.expect(1, TypeResetQuery)
	p.expectClosed()
	f.accept().expect(1, TypeResetQuery)
}

func TestValidatorExpiry(t *testing.T) {
	c, err := NewClient(Config{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	v := NewValidator(nil)
	v.expires = time.Now().Add(-time.Second)
	c.snap.Store(v)
	if c.Validator() != nil {
		t.Fatal("expired snapshot served")
	}
	v2 := NewValidator(nil) // static: never expires
	c.snap.Store(v2)
	if c.Validator() != v2 {
		t.Fatal("static snapshot not served")
	}
	if _, err := NewClient(Config{Addr: "nohost"}); err == nil {
		t.Fatal("bad Addr accepted")
	}
}

// A cache that answers a version 1 query with a version 0 Cache Response
// (StayRTR -protocol 0 does) gets version 0 for the session and after.
func TestClientInBandDowngrade(t *testing.T) {
	f := newFakeCache(t)
	c, updates, _ := startClient(t, f, nil)
	p := f.accept()
	p.expect(1, TypeResetQuery)
	p.send(PDU{Version: 0, Type: TypeCacheResponse, SessionID: 3},
		prefixPDU(0, true, "192.0.2.0/24", 24, 64500),
		PDU{Version: 0, Type: TypeEndOfData, SessionID: 3, Serial: 1})
	v := waitUpdate(t, updates)
	if v.Version() != 0 || v.Len() != 1 {
		t.Fatalf("snapshot %+v", v)
	}
	p.send(PDU{Version: 0, Type: TypeSerialNotify, SessionID: 3, Serial: 2})
	p.expect(0, TypeSerialQuery)
	p.send(PDU{Version: 1, Type: TypeCacheResponse, SessionID: 3}) // now a mismatch
	if er := p.expect(0, TypeErrorReport); er.Code != ErrUnexpectedVersion {
		t.Fatalf("Error Report %+v", er)
	}
	p.expectClosed()
	f.accept().expect(0, TypeResetQuery) // the next session offers version 0
	if c.Status().Version != 0 {
		t.Fatalf("status %+v", c.Status())
	}
}

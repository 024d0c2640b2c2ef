package adot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Cause classifies why a query failed.
type Cause int

// Failure causes. CauseNone is the zero value and never appears in an *Error.
const (
	CauseNone     Cause = iota
	CauseRefused        // server answered REFUSED (or refused the TCP connection)
	CauseTLS            // handshake failed: version, certificate, name, pin
	CauseTimeout        // dial, handshake or query deadline exceeded
	CauseServfail       // server answered SERVFAIL
	CauseNXDomain       // authoritative NXDOMAIN
	CauseNetwork        // I/O error, connection reset, unreachable
	CauseProtocol       // malformed answer, ID/question mismatch, other RCODE
	numCauses
)

var causeNames = [...]string{"none", "refused", "tls", "timeout", "servfail", "nxdomain", "network", "protocol"}

func (c Cause) String() string {
	if c >= 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", int(c))
}

// Error is the error type returned by the client. Use errors.As or CauseOf.
type Error struct {
	Cause  Cause
	Server string // server address the failure was seen on ("" when not specific)
	Name   string // query name
	Err    error  // underlying error, may be nil
}

func (e *Error) Error() string {
	s := "adot: " + e.Cause.String()
	if e.Name != "" {
		s += " for " + e.Name
	}
	if e.Server != "" {
		s += " via " + e.Server
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// CauseOf returns the Cause of err, or CauseNone if err is not an *Error.
func CauseOf(err error) Cause {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause
	}
	return CauseNone
}

// classify maps a transport-level error to a Cause.
func classify(err error) Cause {
	if err == nil {
		return CauseNone
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Cause
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return CauseTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CauseTimeout
	}
	var (
		rec  tls.RecordHeaderError
		alrt tls.AlertError
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		hne  x509.HostnameError
		cie  x509.CertificateInvalidError
	)
	if errors.As(err, &rec) || errors.As(err, &alrt) || errors.As(err, &cve) ||
		errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.Is(err, errPin) || errors.Is(err, errHandshake) {
		return CauseTLS
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return CauseRefused
	}
	return CauseNetwork
}

// isStaleConnErr reports whether err on a reused connection looks like the
// server having closed it while it sat idle (so a retry on a fresh
// connection is warranted and the failure is not counted).
func isStaleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

var errPin = errors.New("server public key does not match any configured SPKI pin")

var errHandshake = errors.New("TLS handshake aborted by the server")

// errBackoff: the server is remembered dead; it was not tried.
var errBackoff = errors.New("server in back-off after failures")
